"""commbench's own overhead: its backend + timing loop against a raw loop of the same library.

Run in a 2-rank world; rank 0 prints the medians and their ratio at 8 B and 64 KiB:
    mpiexec -n 2 --oversubscribe .venv/bin/python benchmarks/overhead.py --backend mpi
    .venv/bin/torchrun --nproc-per-node 2 benchmarks/overhead.py --backend gloo
Both loops time one all-reduce after a barrier on the host clock and keep, per iteration, the
maximum over ranks (what commbench reports); they alternate in blocks, each
going first in half of them, so drift and warm-up on a busy machine hit both alike.
"""

import argparse
import functools
import time

import numpy as np

from commbench.measure.world import make_backend
from commbench.measure.timing import time_calls


def raw_mpi(nbytes, iters):
    from mpi4py import MPI

    comm, buf = MPI.COMM_WORLD, np.ones(nbytes // 4, dtype=np.float32)
    out = np.empty(iters)
    for i in range(iters):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        out[i] = time.perf_counter() - t
    comm.Allreduce(MPI.IN_PLACE, out, op=MPI.MAX)  # the same aggregation commbench reports: max over ranks
    return out


def raw_gloo(nbytes, iters):
    import torch
    import torch.distributed as dist

    buf, out = torch.ones(nbytes // 4), np.empty(iters)
    for i in range(iters):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(buf)
        out[i] = time.perf_counter() - t
    worst = torch.from_numpy(out)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # the same aggregation commbench reports: max over ranks
    return worst.numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["mpi", "gloo"], required=True)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON line per size instead of text")
    args = parser.parse_args()
    backend = make_backend(args.backend, 60)
    raw = raw_mpi if args.backend == "mpi" else raw_gloo
    for nbytes in (8, 65536):
        buf = backend.buffer(nbytes // 4, 1.0)
        ours, theirs = [], []
        for block in range(args.blocks):  # alternate which loop runs first: no order bias
            runs = [lambda: ours.append(time_calls(functools.partial(backend.all_reduce, buf), backend, args.iters,
                                                   warmup=5)),
                    lambda: theirs.append(raw(nbytes, args.iters))]
            for run in runs if block % 2 == 0 else runs[::-1]:
                run()
        if backend.rank == 0:
            a, b = np.median(np.concatenate(ours)) * 1e6, np.median(np.concatenate(theirs)) * 1e6
            if args.json:
                import json

                print(json.dumps({"backend": args.backend, "msg_bytes": nbytes, "commbench_us": a, "raw_us": b,
                                  "ratio": a / b}))
            else:
                print(f"{args.backend} all_reduce {nbytes:>6} B: commbench {a:9.2f} us  raw {b:9.2f} us  ratio {a / b:.3f}")
    backend.close()


if __name__ == "__main__":
    main()
