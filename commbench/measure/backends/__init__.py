"""Backends, one file each behind one protocol (see torch_dist.TorchBackend): gloo and NCCL through
torch.distributed, mpi4py, CuPy's NCCL. commbench.measure.world.make_backend builds one by name."""

from typing import Any, Protocol

import numpy as np

from commbench import CommbenchError


class Backend(Protocol):
    """What every backend offers the timing loop, the sweep and the replay (one rank's view).

    Buffers are the backend's own arrays (torch tensors, numpy arrays, CuPy arrays) of float32.
    Device backends (NCCL, CuPy) add new_event() and elapsed_s(start, end) for CUDA-event timing.
    """

    name: str
    rank: int
    world_size: int
    needs_sync: bool  # a returned call may still be running on a device

    def buffer(self, elements: int, fill: float) -> Any: ...
    def fill(self, buf: Any, value: float) -> None: ...
    def to_numpy(self, buf: Any) -> np.ndarray: ...
    def all_reduce(self, buf: Any) -> None: ...
    def all_gather(self, out: Any, inp: Any) -> None: ...
    def reduce_scatter(self, out: Any, inp: Any) -> None: ...
    def all_to_all(self, out: Any, inp: Any) -> None: ...
    def broadcast(self, buf: Any, root: int) -> None: ...
    def send_recv(self, buf: Any, src: int, dst: int) -> None: ...  # one-way, src to dst
    def send_recv_bidir(self, out: Any, inp: Any) -> None: ...  # ring shift, both directions
    def subgroup(self, ranks) -> Any: ...  # all_reduce and all_gather within ranks; None for non-members
    def barrier(self) -> None: ...
    def synchronize(self) -> None: ...
    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray: ...
    def sum_over_ranks(self, value: int) -> int: ...
    def hostnames(self) -> list[str]: ...
    def close(self) -> None: ...

BACKENDS = ("gloo", "mpi", "nccl", "cupy")
GPU_BACKENDS = ("nccl", "cupy")


def check_backend(name: str) -> None:
    """Raise a one-line error naming a bad backend and the valid choices."""
    if name not in BACKENDS:
        raise CommbenchError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
