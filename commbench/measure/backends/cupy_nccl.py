"""CuPy's NCCL binding (cupy.cuda.nccl) on CUDA device arrays; same protocol as TorchBackend.

Every datatype of the sweep's -d but bfloat16 (CuPy arrays follow numpy's types, which have no
bfloat16) in NCCL's own type (NCCL_TYPES, read off each buffer's dtype), every -o op (avg where the
installed CuPy exposes NCCL_AVG, else refused naming it), all_reduce and all_gather in place or out
of place through the raw pointers (NCCL is in place when the send pointer is the receive pointer,
or this rank's slot of it), reduce_scatter out of place only (NCCL's in-place result lands in block
r of the input, where the sweep's check reads MPI's block 0).

The NCCL unique id is shared through a torch.distributed TCPStore at MASTER_ADDR:MASTER_PORT+1
(torchrun's variables) or through MPI under mpiexec. All calls are issued on one CUDA stream;
timing uses CUDA events on that stream. NCCL has no per-call timeout here: the launcher's
wall-clock limit (and the rendezvous timeout) bounds a run with a dead peer.
"""

from __future__ import annotations

import functools

import datetime
import os
import socket

import numpy as np

from commbench import CommbenchError


#: numpy/CuPy dtype name -> cupy.cuda.nccl's constant (NCCL's ncclDataType_t); bfloat16 has no CuPy dtype
NCCL_TYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "float16": "NCCL_FLOAT16", "int8": "NCCL_INT8",
              "uint8": "NCCL_UINT8", "int32": "NCCL_INT32", "int64": "NCCL_INT64"}
#: sweep -o name -> cupy.cuda.nccl's constant (ncclRedOp_t; ncclAvg since NCCL 2.10)
NCCL_OPS = {"sum": "NCCL_SUM", "prod": "NCCL_PROD", "max": "NCCL_MAX", "min": "NCCL_MIN", "avg": "NCCL_AVG"}


class CupyNcclBackend:
    name = "cupy"
    needs_sync = True
    events = True  # CUDA events on the backend's stream

    def __init__(self, timeout_s: float = 60.0):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError:
            raise CommbenchError("the cupy backend needs CuPy with NCCL: pip install cupy-cuda12x "
                                 "(the wheel matching your CUDA)") from None
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise CommbenchError("the cupy backend needs a CUDA device; on CPU use --backend gloo or mpi")
        self.cp, self.nccl = cupy, nccl
        from commbench.measure.launcher import detect

        launch = detect()
        if launch is None:
            raise CommbenchError("the cupy backend needs a launcher: torchrun, srun or mpiexec (RANK/WORLD_SIZE not set)")
        self.rank, self.world_size, local = launch.rank, launch.size, launch.local_rank
        cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
        uid = self._share_unique_id(timeout_s)
        self.comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._f64, self._sum, self._max = nccl.NCCL_FLOAT64, nccl.NCCL_SUM, nccl.NCCL_MAX
        self._one = cupy.zeros(1, dtype=cupy.float32)

    def _share_unique_id(self, timeout_s: float):
        if "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ:
            from mpi4py import MPI

            uid = self.nccl.get_unique_id() if self.rank == 0 else None
            return MPI.COMM_WORLD.bcast(uid, root=0)
        from torch.distributed import TCPStore

        store = TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500")) + 1,
                         self.world_size, self.rank == 0, timeout=datetime.timedelta(seconds=timeout_s))
        if self.rank == 0:
            store.set("commbench_cupy_nccl_id", ",".join(map(str, self.nccl.get_unique_id())))
        return tuple(int(x) for x in store.get("commbench_cupy_nccl_id").decode().split(","))

    def self_group(self):
        """None: no one-rank NCCL communicator is made for the harness floor (its call_us is n/a)."""
        return None

    def enable_c_loop(self) -> None:
        raise CommbenchError("--timing c-loop is the mpi backend's compiled loop; --backend cupy has none "
                             "(use back-to-back)")

    def subgroup(self, ranks):
        raise CommbenchError("the cupy backend replays only plans whose collectives span the whole world; "
                             "use --backend nccl for tp x pp plans")

    # ---- buffers and clocks
    def buffer(self, elements: int, fill: float, dtype: str = "float32"):
        return self.cp.full((elements,), fill, dtype=self.cp.dtype(dtype))

    def _type(self, buf) -> int:
        """NCCL's datatype for a buffer's dtype (NCCL_TYPES)."""
        return getattr(self.nccl, NCCL_TYPES[buf.dtype.name])

    def _op(self, op: str) -> int:
        code = getattr(self.nccl, NCCL_OPS[op], None)
        if code is None:
            raise CommbenchError(f"this CuPy's NCCL binding has no {NCCL_OPS[op]} (-o {op}); use sum, prod, max or min")
        return code

    def bound(self, collective: str, out, inp, op: str = "sum", in_place: bool = False, peer=None):
        """The one call shape (backends.Backend.bound): all_reduce (in place: `out` is the buffer),
        all_gather (in place: `out`, this rank's slot the input), reduce_scatter (out of place) with the
        buffers' datatype and `op`; all_to_all, broadcast from `peer`, send_recv along `peer` = (src,
        dst) and send_recv_bidir through this backend's own calls."""
        if collective == "all_to_all" or collective == "send_recv_bidir":
            return functools.partial(getattr(self, collective), out, inp)
        if collective == "broadcast":
            return functools.partial(self.broadcast, out, peer)
        if collective == "send_recv":
            return functools.partial(self.send_recv, out, *peer)
        kind, code, stream = self._type(out), self._op(op), self.stream
        if collective == "all_reduce":
            src = out if in_place else inp
            return functools.partial(self.comm.allReduce, src.data.ptr, out.data.ptr, out.size, kind, code, stream.ptr)
        if collective == "all_gather":
            count = out.size // self.world_size
            src = out[self.rank * count:] if in_place else inp
            return functools.partial(self.comm.allGather, src.data.ptr, out.data.ptr, count, kind, stream.ptr)
        if in_place:
            raise CommbenchError("reduce_scatter on the cupy backend runs out of place only")
        return functools.partial(self.comm.reduceScatter, inp.data.ptr, out.data.ptr, out.size, kind, code, stream.ptr)

    @staticmethod
    def fill(buf, value: float):
        buf.fill(value)

    def to_numpy(self, buf) -> np.ndarray:
        self.stream.synchronize()
        return self.cp.asnumpy(buf)

    def new_event(self):
        event = self.cp.cuda.Event()
        stream = self.stream
        return _StreamEvent(event, stream)

    def elapsed_s(self, start, end) -> float:
        return self.cp.cuda.get_elapsed_time(start.event, end.event) / 1e3

    # ---- collectives (nccl-tests semantics, in each buffer's datatype)
    def all_reduce(self, buf):
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), self._sum, self.stream.ptr)

    def all_gather(self, out, inp):
        self.comm.allGather(inp.data.ptr, out.data.ptr, inp.size, self._type(inp), self.stream.ptr)

    def reduce_scatter(self, out, inp):
        self.comm.reduceScatter(inp.data.ptr, out.data.ptr, out.size, self._type(out), self._sum, self.stream.ptr)

    def all_to_all(self, out, inp):
        n = self.world_size
        chunk = inp.size // n
        self.nccl.groupStart()
        kind = self._type(inp)
        for peer in range(n):
            self.comm.send(inp[peer * chunk:].data.ptr, chunk, kind, peer, self.stream.ptr)
            self.comm.recv(out[peer * chunk:].data.ptr, chunk, kind, peer, self.stream.ptr)
        self.nccl.groupEnd()

    def broadcast(self, buf, root: int):
        self.comm.broadcast(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), root, self.stream.ptr)

    def send_recv(self, buf, src: int, dst: int):
        if self.rank == src:
            self.comm.send(buf.data.ptr, buf.size, self._type(buf), dst, self.stream.ptr)
        elif self.rank == dst:
            self.comm.recv(buf.data.ptr, buf.size, self._type(buf), src, self.stream.ptr)

    def send_recv_bidir(self, out, inp):
        n, r = self.world_size, self.rank
        self.nccl.groupStart()
        self.comm.send(inp.data.ptr, inp.size, self._type(inp), (r + 1) % n, self.stream.ptr)
        self.comm.recv(out.data.ptr, out.size, self._type(out), (r - 1) % n, self.stream.ptr)
        self.nccl.groupEnd()

    def barrier(self):
        self.all_reduce(self._one)
        self.stream.synchronize()

    def synchronize(self):
        self.stream.synchronize()

    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray:
        buf = self.cp.asarray(samples.astype(np.float64))
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._f64, self._max, self.stream.ptr)
        return self.to_numpy(buf)

    def sum_over_ranks(self, value: int) -> int:
        buf = self.cp.asarray(np.array([value], dtype=np.float64))
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, 1, self._f64, self._sum, self.stream.ptr)
        return int(self.to_numpy(buf)[0])

    def hostnames(self) -> list[str]:
        """Hosts in rank order, each as its characters summed through an int64 all-gather."""
        name = socket.gethostname().encode()[:64].ljust(64, b"\0")
        mine = self.cp.asarray(np.frombuffer(name, dtype=np.uint8).astype(np.float32))
        out = self.cp.zeros(64 * self.world_size, dtype=self.cp.float32)
        self.all_gather(out, mine)
        raw = self.cp.asnumpy(out).astype(np.uint8).reshape(self.world_size, 64)
        return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in raw]

    def close(self):
        self.stream.synchronize()
        self.comm.destroy()


class _StreamEvent:
    """A CUDA event that records on the backend's stream (the timing loop calls record())."""

    def __init__(self, event, stream):
        self.event, self.stream = event, stream

    def record(self):
        self.event.record(self.stream)
