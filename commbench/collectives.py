"""The collectives table: each collective's algbw byte count and busbw factor, in one place.

nccl-tests conventions (NVIDIA/nccl-tests doc/PERFORMANCE.md; docs/sources.md#collectives), n ranks:
    S (msg_bytes) = count * typesize             all_reduce, broadcast, send_recv
    S (msg_bytes) = count * typesize * n         all_gather, reduce_scatter, all_to_all
                    (count here = elements each rank contributes)
    algbw = S / t
    busbw = algbw * factor(n):  all_reduce 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n;
                                broadcast, send_recv 1
busbw is also the bytes each rank must move over its busiest link divided by time, which is why
wire time = S * factor / link_bandwidth for the bandwidth-optimal (ring) algorithms.
`send_recv` is one-way (PP traffic: rank 0 sends, rank 1 receives); `send_recv_bidir` is
nccl-tests' sendrecv (ring shift, every rank sends and receives S at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from commbench import CommbenchError


@dataclass(frozen=True)
class Collective:
    name: str
    gathers: bool  # S counts every rank's contribution (count * typesize * n)
    bus_factor_kind: str  # "allreduce" | "gather" | "one"

    def busbw_factor(self, n: int) -> float:
        if self.bus_factor_kind == "allreduce":
            return 2 * (n - 1) / n
        if self.bus_factor_kind == "gather":
            return (n - 1) / n
        return 1.0

    def msg_bytes(self, count: int, typesize: int, n: int) -> int:
        """nccl-tests' S for `count` elements (per rank for gathering collectives)."""
        return count * typesize * (n if self.gathers else 1)

    def algbw_gbps(self, msg_bytes: float, time_s: float) -> float:
        return msg_bytes / time_s / 1e9

    def busbw_gbps(self, msg_bytes: float, time_s: float, n: int) -> float:
        return self.algbw_gbps(msg_bytes, time_s) * self.busbw_factor(n)

    def wire_bytes(self, msg_bytes: float, n: int) -> float:
        """Bytes each rank puts on its link with the bandwidth-optimal algorithm: S * busbw factor."""
        return msg_bytes * self.busbw_factor(n)


COLLECTIVES = {
    c.name: c
    for c in (
        Collective("all_reduce", gathers=False, bus_factor_kind="allreduce"),
        Collective("all_gather", gathers=True, bus_factor_kind="gather"),
        Collective("reduce_scatter", gathers=True, bus_factor_kind="gather"),
        Collective("all_to_all", gathers=True, bus_factor_kind="gather"),
        Collective("broadcast", gathers=False, bus_factor_kind="one"),
        Collective("send_recv", gathers=False, bus_factor_kind="one"),
        Collective("send_recv_bidir", gathers=False, bus_factor_kind="one"),
    )
}


def get_collective(name: str) -> Collective:
    if name not in COLLECTIVES:
        raise CommbenchError(f"unknown collective {name!r}; valid: {', '.join(COLLECTIVES)}")
    return COLLECTIVES[name]
