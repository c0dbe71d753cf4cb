"""torch.distributed backend: gloo on CPU (NCCL on CUDA is not wired up yet).

Protocol: rank, world_size, all_reduce(buf), all_gather(out, inp), send_recv(buf, src, dst),
barrier(), synchronize(), max_over_ranks(array), buffer(elements, fill).
Every collective inherits the process group's timeout, so a dead peer ends the run with an error.
"""

from __future__ import annotations

import datetime

import numpy as np
import torch
import torch.distributed as dist


class TorchBackend:
    name = "gloo"
    needs_sync = False  # CPU tensors: a returned call is a finished call

    def __init__(self, timeout_s: float = 60.0):
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def buffer(self, elements: int, fill: float) -> torch.Tensor:
        return torch.full((elements,), fill, dtype=torch.float32)

    @staticmethod
    def fill(buf, value: float):
        buf.fill_(value)

    @staticmethod
    def to_numpy(buf) -> np.ndarray:
        return buf.numpy()

    def all_reduce(self, buf):
        dist.all_reduce(buf)

    def all_gather(self, out, inp):
        dist.all_gather_single(out, inp) if hasattr(dist, "all_gather_single") else dist.all_gather_into_tensor(out, inp)

    def send_recv(self, buf, src: int, dst: int):
        if self.rank == src:
            dist.send(buf, dst)
        elif self.rank == dst:
            dist.recv(buf, src)

    def barrier(self):
        dist.barrier()

    def synchronize(self):
        pass

    def max_over_ranks(self, samples: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(samples.copy())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.numpy()

    def close(self):
        dist.destroy_process_group()
