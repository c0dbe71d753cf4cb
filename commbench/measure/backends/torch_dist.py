"""torch.distributed backend: gloo on CPU tensors, NCCL on CUDA tensors.

Protocol (shared by every backend): rank, world_size, buffer(elements, fill), fill, to_numpy,
all_reduce(buf), all_gather(out, inp), reduce_scatter(out, inp), all_to_all(out, inp),
broadcast(buf, root), send_recv(buf, src, dst) one-way, send_recv_bidir(out, inp) ring shift,
barrier(), synchronize(), max_over_ranks(array), sum_over_ranks(int), hostnames(), close(); device backends add new_event() and
elapsed_s(start, end) for CUDA-event timing.
Every collective inherits the process group's timeout, so a dead peer ends the run with an error.
"""

from __future__ import annotations

import datetime
import functools
import os
import socket
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist

from commbench import CommbenchError


class TorchBackend:
    def __init__(self, timeout_s: float = 60.0, name: str = "gloo", store_path: str | None = None,
                 buffers: str = "host"):
        """store_path: a FileStore rendezvous (the embedded world: no listening socket); else env://.
        buffers "cuda" with gloo: device tensors (gloo stages them through the host), timed with CUDA events."""
        self.name = name
        if name == "nccl" or buffers == "cuda":
            if name == "nccl" and (not torch.cuda.is_available() or not dist.is_nccl_available()):
                raise CommbenchError("the nccl backend needs CUDA and a torch build with NCCL; on CPU use --backend gloo")
            if not torch.cuda.is_available():
                raise CommbenchError(f"--buffers cuda on {name} needs a CUDA device; on CPU use host buffers")
            local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.needs_sync = self.device.type == "cuda"
        if not dist.is_initialized():
            kwargs = {"device_id": self.device} if name == "nccl" else {}
            if store_path:
                world = int(os.environ["WORLD_SIZE"])
                kwargs.update(store=dist.FileStore(store_path, world), rank=int(os.environ["RANK"]), world_size=world)
            dist.init_process_group(name, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.events = self.needs_sync  # CUDA tensors: CUDA events on the current stream
        # the library's own functions, so a timed op is the same call a raw torch.distributed loop makes
        self.all_reduce = dist.all_reduce
        self.barrier = dist.barrier

    def self_group(self):
        """A one-rank communicator of this rank (every rank creates every rank's, in order), with
        all_reduce() of one element: the harness floor's per-call cost."""
        groups = [dist.new_group([r]) for r in range(self.world_size)]
        buf = self.buffer(1, 0.0)
        return SimpleNamespace(all_reduce=functools.partial(dist.all_reduce, buf, group=groups[self.rank]), c_loop=None)

    def enable_c_loop(self) -> None:
        raise CommbenchError(f"--timing c-loop is the mpi backend's compiled loop; --backend {self.name} has none "
                             "(use back-to-back)")

    def new_event(self):
        if not self.events:
            raise CommbenchError(f"the {self.name} backend on host tensors times with the host clock, not device events")
        return torch.cuda.Event(enable_timing=True)

    def subgroup(self, ranks):
        """Collectives within `ranks` (every rank must call this in the same order); None for non-members."""
        group = dist.new_group(list(ranks))
        if self.rank not in ranks:
            return None
        return SimpleNamespace(bound=functools.partial(self.bound, group=group))

    @staticmethod
    def elapsed_s(start, end) -> float:
        return start.elapsed_time(end) / 1e3

    def buffer(self, elements: int, fill: float, dtype: str = "float32") -> torch.Tensor:
        return torch.full((elements,), fill, dtype=getattr(torch, dtype), device=self.device)

    def bound(self, collective: str, out, inp, op: str = "sum", in_place: bool = False, peer=None, group=None):
        """The one call shape (backends.Backend.bound): torch.distributed's own call with its arguments
        bound. all_reduce reduces `out` in place; all_gather, reduce_scatter, all_to_all take two tensors;
        broadcast from rank `peer`; send_recv one-way along `peer` = (src, dst) (a no-op elsewhere);
        send_recv_bidir the ring shift. `group`: a subgroup's process group (global ranks, as torch's)."""
        reduce_op = {"sum": dist.ReduceOp.SUM, "prod": dist.ReduceOp.PRODUCT, "max": dist.ReduceOp.MAX,
                     "min": dist.ReduceOp.MIN, "avg": dist.ReduceOp.AVG}[op]
        where = {} if group is None else {"group": group}  # a keyword costs ~0.1 us: only where needed
        if collective == "all_reduce":
            return functools.partial(dist.all_reduce, out, reduce_op, **where)
        if collective == "all_gather":
            return functools.partial(self._all_gather, out, inp, **where)
        if collective == "reduce_scatter":
            return functools.partial(self._reduce_scatter, out, inp, reduce_op, **where)
        if collective == "all_to_all":
            return functools.partial(dist.all_to_all_single, out, inp, **where)
        if collective == "broadcast":
            return functools.partial(dist.broadcast, out, peer, **where)
        if collective == "send_recv":
            src, dst = peer
            return functools.partial(dist.send, out, dst) if self.rank == src else \
                functools.partial(dist.recv, out, src) if self.rank == dst else _nothing
        return functools.partial(self.send_recv_bidir, out, inp)

    @staticmethod
    def fill(buf, value: float):
        buf.fill_(value)

    @staticmethod
    def to_numpy(buf) -> np.ndarray:
        # numpy has no bfloat16: checks read every datatype as float64 (exact for the sweep's small integers)
        return (buf if buf.dtype == torch.float32 else buf.double()).cpu().numpy()

    # torch 2.13 renamed the *_tensor collectives *_single; older releases only have the former
    _all_gather = staticmethod(getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor)
    _reduce_scatter = staticmethod(getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor)

    def all_gather(self, out, inp):
        self._all_gather(out, inp)

    def reduce_scatter(self, out, inp):
        self._reduce_scatter(out, inp)

    def all_to_all(self, out, inp):
        dist.all_to_all_single(out, inp)

    def broadcast(self, buf, root: int):
        dist.broadcast(buf, src=root)

    def send_recv(self, buf, src: int, dst: int):
        if self.rank == src:
            dist.send(buf, dst)
        elif self.rank == dst:
            dist.recv(buf, src)

    def send_recv_bidir(self, out, inp):
        n, r = self.world_size, self.rank
        for req in dist.batch_isend_irecv([dist.P2POp(dist.isend, inp, (r + 1) % n),
                                            dist.P2POp(dist.irecv, out, (r - 1) % n)]):
            req.wait()

    def synchronize(self):
        if self.needs_sync:
            torch.cuda.synchronize(self.device)

    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(samples.astype(np.float64)).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.cpu().numpy()

    def sum_over_ranks(self, value: int) -> int:
        t = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def hostnames(self) -> list[str]:
        names = [None] * self.world_size
        dist.all_gather_object(names, socket.gethostname())
        return names

    def close(self):
        dist.destroy_process_group()


def _nothing():
    """A send's bystander: no part in the call."""
