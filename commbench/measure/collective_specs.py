"""One spec per collective for measuring: its buffers per placement, its known inputs and the values
they must produce, the placements each backend can run, and its kind in the compiled loop. The sweep
(commbench.measure.sweeps), the replay (commbench.measure.replays) and the correctness check read it
here; its S and busbw factor are commbench.collectives'. nccl-tests keeps the same one struct per
collective (getCollByteCount, initData, getBw, runColl).

Known inputs (deterministic data, as nccl-tests): the member at position g of an n-member group fills
its input with g + 1, so
    all_reduce, reduce_scatter   the op over 1..n (sum n(n+1)/2, prod n!, max n, min 1, avg (n+1)/2);
                                 reduce_scatter's result is the first per-rank block of `out`
    all_gather, all_to_all       slot j holds j + 1
    broadcast                    the root holds 1, the others 0: 1 everywhere after the call
    send_recv                    one-way: the sender holds 1, the receiver 0: 1 at the receiver
    send_recv_bidir              ring shift: the left neighbour's value, ((g - 1) mod n) + 1
`wrong` counts the elements that differ. Every call goes through the backend's one call shape,
`bound(collective, out, inp, op, in_place, peer)` (peer: a broadcast's root, a send's (src, dst)).

Placements (nccl-tests prints both where they exist): in place, `out` is also the input (all_gather:
this rank's slot of `out`; reduce_scatter: the whole input, the result in its first block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from commbench.collectives import Collective, get_collective

PLACEMENTS = ("in_place", "out_of_place")
ONE = {"gloo": ("in_place",), "nccl": ("in_place",), "mpi": PLACEMENTS, "cupy": PLACEMENTS}


@dataclass(frozen=True)
class CollectiveSpec:
    name: str
    reduces: bool = False  # takes a reduction op (-o)
    placements: dict = field(default_factory=dict)
    """backend -> the placements its sweep can run. torch.distributed's API reduces all_reduce in place
    and takes two tensors for all_gather / reduce_scatter (*_single); MPI has both through
    MPI_IN_PLACE; CuPy's raw NCCL pointers both for all_reduce and all_gather, reduce_scatter out of
    place (NCCL's in-place result sits in block r, not the block 0 the check reads)."""
    c_loop_kind: int | None = None  # mpi_loop.c's enum, for --timing c-loop

    @property
    def collective(self) -> Collective:
        """S and the busbw factor (commbench.collectives)."""
        return get_collective(self.name)

    def buffers(self, backend, per_rank: int, n: int, g: int, dtype: str, in_place: bool, peer=None):
        """(out, inp) of this member's part (inp is out where they alias). An in-place buffer starts at 0
        (repeated timed reductions of zeros stay finite: a growing sum would reach inf in float16), a
        separate input at its known value; the check refills both."""
        fill = float(g + 1)
        if self.name == "all_reduce":
            out = backend.buffer(per_rank, 0, dtype)
            return out, out if in_place else backend.buffer(per_rank, fill, dtype)
        if self.name in ("all_gather", "all_to_all"):
            out = backend.buffer(per_rank * n, 0, dtype)
            return out, out if in_place else backend.buffer(per_rank * (n if self.name == "all_to_all" else 1), fill,
                                                            dtype)
        if self.name == "reduce_scatter":
            out = backend.buffer(per_rank * n if in_place else per_rank, 0, dtype)
            return out, out if in_place else backend.buffer(per_rank * n, fill, dtype)
        if self.name == "send_recv_bidir":
            return backend.buffer(per_rank, 0, dtype), backend.buffer(per_rank, fill, dtype)
        buf = backend.buffer(per_rank, self.input_value(g, backend.rank, peer), dtype)  # broadcast, send_recv
        return buf, buf

    def input_value(self, g: int, rank: int, peer) -> float:
        """What this member's input holds before the call (broadcast: 1 at the root; send: 1 at the sender)."""
        if self.name == "broadcast":
            return 1.0 if rank == peer else 0.0
        if self.name == "send_recv":
            return 1.0 if rank == peer[0] else 0.0
        return float(g + 1)

    def expected(self, per_rank: int, n: int, g: int, op: str):
        """What the checked part of `out` must hold after the call (a number or an array)."""
        if self.name in ("all_reduce", "reduce_scatter"):
            return reduction(op, n)
        if self.name in ("all_gather", "all_to_all"):
            return np.repeat(np.arange(1, n + 1, dtype=np.float64), per_rank)
        if self.name == "send_recv_bidir":
            return float((g - 1) % n + 1)
        return 1.0  # broadcast, send_recv (at the receiver)

    def checked(self, out: np.ndarray, per_rank: int) -> np.ndarray:
        """The part of `out` the check reads."""
        return out[:per_rank] if self.name == "reduce_scatter" else out

    def takes_part(self, rank: int, peer) -> bool:
        """Whether this rank's result is checked (a send's bystanders have none)."""
        return self.name != "send_recv" or rank == peer[1]


SPECS = {s.name: s for s in (
    CollectiveSpec("all_reduce", reduces=True, placements={"gloo": ("in_place",), "nccl": ("in_place",),
                                                           "mpi": PLACEMENTS, "cupy": PLACEMENTS}, c_loop_kind=0),
    CollectiveSpec("all_gather", placements={"gloo": ("out_of_place",), "nccl": ("out_of_place",), "mpi": PLACEMENTS,
                                             "cupy": PLACEMENTS}, c_loop_kind=1),
    CollectiveSpec("reduce_scatter", reduces=True, placements={"gloo": ("out_of_place",), "nccl": ("out_of_place",),
                                                               "mpi": PLACEMENTS, "cupy": ("out_of_place",)},
                   c_loop_kind=2),
    CollectiveSpec("all_to_all", placements=dict.fromkeys(ONE, ("out_of_place",))),
    CollectiveSpec("broadcast", placements=dict.fromkeys(ONE, ("in_place",))),
    CollectiveSpec("send_recv", placements=dict.fromkeys(ONE, ("out_of_place",))),
    CollectiveSpec("send_recv_bidir", placements=dict.fromkeys(ONE, ("out_of_place",))),
)}
"""Every collective commbench measures, in nccl-tests' order."""


def reduction(op: str, n: int) -> float:
    """The op over the members' inputs 1..n."""
    return {"sum": n * (n + 1) / 2, "prod": float(np.prod(np.arange(1, n + 1))), "max": float(n), "min": 1.0,
            "avg": (n + 1) / 2}[op]


def prepared(backend, bound, spec: CollectiveSpec, per_rank: int, n: int, g: int, dtype: str, op: str = "sum",
             in_place: bool = False, peer=None, buffers: dict | None = None):
    """(call, verify) for this member's part of one call: `call` the zero-argument op to time, `verify()`
    refills the known inputs, runs it once and returns the wrong elements this rank sees. `bound` is the
    group's call shape (backend.bound, or a subgroup's); `buffers` caches (out, inp) by their shape and
    type across calls of one replayed step."""
    key = (spec.name, per_rank, n, dtype, in_place, g, peer)
    if buffers is None or key not in buffers:
        made = spec.buffers(backend, per_rank, n, g, dtype, in_place, peer)
        if buffers is not None:
            buffers[key] = made
    out, inp = buffers[key] if buffers is not None else made
    call = bound(spec.name, out, inp, op, in_place, peer)
    value = spec.input_value(g, backend.rank, peer)
    expected = spec.expected(per_rank, n, g, op)
    checks = spec.takes_part(backend.rank, peer)

    def verify() -> int:
        if spec.name not in ("broadcast", "send_recv") and not in_place:
            backend.fill(out, 0)
        backend.fill(inp, value)
        call()
        backend.synchronize()
        if not checks:
            return 0
        got = np.asarray(backend.to_numpy(out), dtype=np.float64)
        return int(np.count_nonzero(spec.checked(got, per_rank) - expected))

    return call, verify
