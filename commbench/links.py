"""Link profiles, named and sourced (docs/sources.md#links), and wire-time theory.

Bandwidths are per direction in bytes/s (GB = 1e9). `bandwidth_Bps` is the rate theory divides by;
`measured_Bps` is the best published point-to-point figure where one exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from commbench import CommbenchError
from commbench.collectives import get_collective


@dataclass(frozen=True)
class LinkProfile:
    name: str
    bandwidth_Bps: float  # theoretical per-direction rate, bytes/s
    latency_s: float  # one-way small-message latency assumed by theory, s
    source: str
    measured_Bps: float | None = None

    @property
    def bandwidth_gbps(self) -> float:
        return self.bandwidth_Bps / 1e9


PCIE5_LANE_Bps = 32e9 * 128 / 130 / 8  # 32 GT/s, 128b/130b encoding -> ~3.94 GB/s per lane per direction

LINKS = {
    p.name: p
    for p in (
        LinkProfile("200gbe", 200e9 / 8, 5e-6, "spec line rate 200 Gb/s; RDMA write 92.57+97.28 Gb/s measured "
                    "(NVIDIA dgx-spark-playbooks connect-two-sparks)", measured_Bps=189.85e9 / 8),
        LinkProfile("100gbe", 100e9 / 8, 5e-6, "spec line rate 100 Gb/s"),
        LinkProfile("10gbe", 10e9 / 8, 10e-6, "spec line rate 10 Gb/s (a DGX Spark's management port)"),
        LinkProfile("pcie5x4", 4 * PCIE5_LANE_Bps, 1e-6, "PCIe Gen5: 32 GT/s x4, 128b/130b (~15.75 GB/s)"),
        LinkProfile("pcie5x16", 16 * PCIE5_LANE_Bps, 1e-6, "PCIe Gen5: 32 GT/s x16, 128b/130b (~63 GB/s)"),
        LinkProfile("nvlink-h100", 450e9, 2e-6, "NVLink 4 on H100 SXM: 450 GB/s per direction (docs/sources.md#links)"),
        LinkProfile("loopback", 10e9, 10e-6, "nominal 10 GB/s for same-host TCP; measure it, do not trust it"),
    )
}


def parse_link(text: str) -> LinkProfile:
    """A named profile, a rate such as '1gbit', '400Mbit', '12.5GB/s', '25GBps', or a link .toml file.

    A link file holds name, bandwidth_gbps (GB/s per direction), latency_us and source.
    """
    key = text.strip().lower()
    if key in LINKS:
        return LINKS[key]
    if key.endswith(".toml"):
        from pathlib import Path

        path = Path(text.strip())
        if not path.is_file():
            raise CommbenchError(f"link file {text!r} not found")
        from commbench.data import number, read_toml

        raw = read_toml(path, "link")
        try:
            return LinkProfile(str(raw.get("name", path.stem)), number(raw["bandwidth_gbps"], f"link file {path}: bandwidth_gbps") * 1e9,
                               number(raw.get("latency_us", 10.0), f"link file {path}: latency_us", inclusive=True) * 1e-6,
                               str(raw.get("source", str(path))))
        except (KeyError, TypeError) as exc:
            raise CommbenchError(f"link file {text}: needs bandwidth_gbps (and optionally latency_us) ({exc})") from None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(k|m|g|t)?(bit/s|bit|b/s|bps|B)", text.strip(), re.IGNORECASE)
    if m:
        value, prefix, unit = float(m.group(1)), (m.group(2) or "").lower(), m.group(3)
        scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[prefix]
        is_bytes = unit in ("B/s", "Bps", "B")
        rate = value * scale / (1 if is_bytes else 8)
        if rate > 0:
            return LinkProfile(text.strip(), rate, 10e-6, f"user-given rate {text.strip()}")
    raise CommbenchError(
        f"unknown link {text!r}; valid: {', '.join(LINKS)}, a rate like 1gbit, 400Mbit, 12.5GB/s, or a link .toml"
    )


def wire_time_s(collective: str, msg_bytes: float, n: int, link: LinkProfile) -> float:
    """Bandwidth-only time of one call: S * busbw_factor(n) / B (ring algorithms, nccl-tests S)."""
    return get_collective(collective).wire_bytes(msg_bytes, n) / link.bandwidth_Bps


def theory_time_s(collective: str, msg_bytes: float, n: int, link: LinkProfile, algorithm: str = "ring") -> float:
    """Latency + bandwidth time of one call on `link` for n ranks.

    ring all_reduce: 2(n-1) steps of S/n: 2(n-1) * alpha + 2(n-1)/n * S / B
    tree all_reduce: reduce + broadcast over log2 n levels, pipelined: 2*ceil(log2 n) * alpha + 2 * S / B
    all_gather / reduce_scatter / all_to_all (ring): (n-1) * alpha + (n-1)/n * S / B
    broadcast / send_recv: alpha + S / B
    """
    alpha = link.latency_s
    coll = get_collective(collective)
    if collective == "all_reduce" and algorithm == "tree":
        levels = max(1, (n - 1).bit_length())
        return 2 * levels * alpha + 2 * msg_bytes / link.bandwidth_Bps
    steps = {"allreduce": 2 * (n - 1), "gather": n - 1, "one": 1}[coll.bus_factor_kind]
    return steps * alpha + wire_time_s(collective, msg_bytes, n, link)
