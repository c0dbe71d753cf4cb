"""Backends, one file each behind one protocol (see torch_dist.TorchBackend): gloo and NCCL through
torch.distributed, mpi4py, CuPy's NCCL. commbench.measure.world.make_backend builds one by name."""

from typing import Any, Protocol

import numpy as np

from commbench import CommbenchError
from commbench.dtypes import sizes_of
from commbench.measure.collective_specs import PLACEMENTS, SPECS


class Clock(Protocol):
    """What the timing loop (commbench.measure.timing) needs of the world it times in: a backend, or
    measure/compute's LocalDevice for one process."""

    needs_sync: bool  # a returned call may still be running on a device
    events: bool  # time with device events (new_event, elapsed_s) instead of the host clock

    def barrier(self) -> None: ...
    def synchronize(self) -> None: ...
    def new_event(self) -> Any: ...  # an event to record() on the device's stream; only where events
    def elapsed_s(self, start: Any, end: Any) -> float: ...  # seconds between two recorded events
    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray: ...
    def sum_over_ranks(self, value: int) -> int: ...


class Backend(Clock, Protocol):
    """What every backend offers the timing loop, the sweep and the replay (one rank's view); every
    method callers use is declared here and defined by every backend (a backend without the thing
    raises CommbenchError naming it, or returns None where said), so no caller probes with getattr.

    Buffers are the backend's own arrays (torch tensors, numpy arrays, CuPy arrays) of the datatype asked.
    """

    name: str
    rank: int
    world_size: int

    def buffer(self, elements: int, fill: float, dtype: str = "float32") -> Any: ...
    def fill(self, buf: Any, value: float) -> None: ...
    def to_numpy(self, buf: Any) -> np.ndarray: ...
    def all_reduce(self, buf: Any) -> None: ...  # the raw in-place all-reduce (benchmarks/overhead.py's baseline)
    # THE call shape of every collective (measure/collective_specs): a zero-argument call of `collective` on
    # this rank's buffers with the datatype they hold, `op` (reducing ones), the placement (in place: `out` is
    # also the input) and `peer` (broadcast: the root's world rank; send_recv: (src, dst), a no-op elsewhere)
    def bound(self, collective: str, out: Any, inp: Any, op: str = "sum", in_place: bool = False,
              peer: Any = None) -> Any: ...
    # a group of `ranks` (every rank calls this in the same order) with .bound() of the same shape; None for
    # non-members
    def subgroup(self, ranks) -> Any: ...
    # a one-rank communicator of this rank: .all_reduce() of one element, .c_loop(iters) once the compiled
    # loop is enabled (else None); None where the backend has no one-rank communicator (timing.harness_floor)
    def self_group(self) -> Any: ...
    def enable_c_loop(self) -> None: ...  # mpi: bound() calls then carry .c_loop; others refuse (--timing c-loop)
    def hostnames(self) -> list[str]: ...
    def close(self) -> None: ...

BACKENDS = ("gloo", "mpi", "nccl", "cupy")
GPU_BACKENDS = ("nccl", "cupy")

#: The datatypes a sweep can run (-d), nccl-tests' names where it has them, with their bytes (commbench.dtypes).
DTYPE_BYTES = sizes_of("float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64")
REDUCE_OPS = ("sum", "prod", "max", "min", "avg")

#: What each backend's sweep path offers, checked before any rank starts: its datatypes and reduction
#: ops here, the placements of each collective from that collective's spec (measure/collective_specs,
#: copied in under "placements" for the collectives that have two).
#:   gloo/nccl: torch.distributed's dtypes; AVG is an NCCL-only ReduceOp.
#:   mpi: numpy buffers (no bfloat16 or float16: MPI has no standard 16-bit float), no average op.
#:   cupy: every datatype but bfloat16 (CuPy arrays have no bfloat16 dtype), every op; not yet run on a GPU here.
_OFFERS = {
    "gloo": {"dtypes": tuple(DTYPE_BYTES), "ops": ("sum", "prod", "max", "min")},
    "nccl": {"dtypes": tuple(DTYPE_BYTES), "ops": REDUCE_OPS},
    "mpi": {"dtypes": ("float32", "float64", "int8", "uint8", "int32", "int64"), "ops": ("sum", "prod", "max", "min")},
    "cupy": {"dtypes": tuple(d for d in DTYPE_BYTES if d != "bfloat16"), "ops": REDUCE_OPS},
}
CAPABILITIES = {backend: {**offers, "placements": {name: spec.placements[backend] for name, spec in SPECS.items()
                                                   if len(set(spec.placements.values())) > 1}}
                for backend, offers in _OFFERS.items()}


def check_backend(name: str) -> None:
    """Raise a one-line error naming a bad backend and the valid choices."""
    if name not in BACKENDS:
        raise CommbenchError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")


def check_datatype(dtype: str, backend: str) -> None:
    """A one-line error naming a datatype that does not exist, or that `backend` lacks, and the valid ones."""
    if dtype not in DTYPE_BYTES:
        raise CommbenchError(f"unknown datatype {dtype!r}; valid: {', '.join(DTYPE_BYTES)}")
    if dtype not in CAPABILITIES[backend]["dtypes"]:
        raise CommbenchError(f"the {backend} backend has no {dtype}; valid: {', '.join(CAPABILITIES[backend]['dtypes'])}")
