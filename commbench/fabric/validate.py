"""`fabric validate`: preflight the environment, sweep, and judge each size band against a link.

Bands (nccl-tests S of an all_reduce; NCCL's protocols change near these sizes):
    latency-bound     S <= 64 KiB          median over sizes of (fastest call - wire time) vs a latency budget
    middle            64 KiB < S < 4 MiB   best busbw in the band vs MIDDLE_MIN_FRACTION x link
    bandwidth-bound   S >= 4 MiB           median busbw in the band vs BANDWIDTH_MIN_FRACTION x link
A failing band gets a diagnosis: the measured rate is matched against the rates a misconfigured
fabric typically runs at (one PCIe half of a NIC, a slower interface, TCP sockets).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from commbench.collectives import get_collective
from commbench.links import LINKS, LinkProfile

LATENCY_MAX_BYTES = 64 * 2**10
BANDWIDTH_MIN_BYTES = 4 * 2**20

BANDWIDTH_MIN_FRACTION = 0.85
"""Large-message busbw must reach this fraction of the expected link rate. nccl-tests' own gate is
avg busbw >= 0.9 x a reference; 0.85 leaves room for framing (1500-byte MTU TCP: ~95%) and for a
well-configured 200GbE pair reaching 20-24 GB/s of 25 (docs/sources.md#nccl-two-sparks)."""

MIDDLE_MIN_FRACTION = 0.40
"""Mid-size messages (64 KiB..4 MiB) pay a few latencies per call; their best busbw must still
reach this fraction of the link. Below it, protocol or buffer settings (NCCL_PROTO, NCCL_BUFFSIZE)
or per-message host staging are the usual cause."""

LATENCY_BUDGET_US = {"nccl": 50.0, "cupy": 50.0, "mpi": 300.0, "gloo": 1500.0}
"""Small-message p50 budget per backend, microseconds, on top of the link's own latency. NCCL on a
Spark pair: 30-70 us at 8-64 KB (dgx-spark-playbooks PR #103); MPI over TCP: ~50-100 us; gloo's
TCP rendezvous per call: ~270 us on loopback, ~450 us across a veth pair (measured here)."""

# Rates a mis-set fabric commonly runs at, bytes/s, with what that usually means.
SUSPECT_RATES = (
    (1e9 / 8, "a 1 GbE interface: the traffic is not on the fast link (check NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME)"),
    (10e9 / 8, "a 10 GbE interface, e.g. a Spark's management port: check NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME"),
    (3e9, "NCCL over TCP sockets instead of RDMA (~3 GB/s on Spark, dgx-spark-playbooks PR #103): check NCCL_IB_HCA, "
          "the RoCE GID and NCCL_IB_DISABLE"),
    (12e9, "one PCIe Gen5 x4 half of the NIC (NCCL busbw ~12 GB/s with one HCA, dgx-spark-playbooks issue #102): "
           "check NCCL_IB_HCA lists both (rocep1s0f0, roceP2p1s0f0 on a Spark)"),
    (25e9 / 8, "a 25 GbE link or port speed"),
    (100e9 / 8, "a 100 GbE link or port speed"),
)


@dataclass
class Finding:
    check: str
    value: str
    status: str  # ok | warn | fail
    note: str


@dataclass
class BandVerdict:
    band: str
    sizes: str
    metric: str
    measured: float
    expected: float
    threshold: float
    status: str  # PASS | FAIL | SKIP
    diagnosis: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def preflight(expect: LinkProfile, backend: str, env: dict | None = None, sys_net: Path = Path("/sys/class/net")) -> list[Finding]:
    """Interface variables, then each named (or every up, non-loopback) interface's state, MTU and speed."""
    env = dict(os.environ if env is None else env)
    findings = []
    present = sorted(p.name for p in sys_net.iterdir()) if sys_net.is_dir() else []
    named = []
    for var in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        value = env.get(var)
        if not value:
            relevant = (var.startswith("GLOO") and backend == "gloo") or (var.startswith("NCCL") and backend in ("nccl", "cupy"))
            findings.append(Finding(var, "unset", "warn" if relevant else "ok",
                                    "the library picks an interface itself; name the fast link's" if relevant else "not used by this backend"))
            continue
        for name in value.split(","):
            name = name.strip()
            if not name or name[0] in "^=":
                continue
            if present and not any(p == name or p.startswith(name) for p in present):
                findings.append(Finding(var, value, "fail", f"no interface {name!r} here; present: {', '.join(present)}"))
            else:
                findings.append(Finding(var, value, "ok", "interface present"))
                named.append(name)
    hca = env.get("NCCL_IB_HCA")
    if backend in ("nccl", "cupy"):
        if not hca:
            findings.append(Finding("NCCL_IB_HCA", "unset", "warn", "NCCL picks HCAs itself; on a Spark list both NIC halves"))
        elif expect.bandwidth_Bps > LINKS["pcie5x4"].bandwidth_Bps and len([h for h in hca.split(",") if h.strip()]) < 2:
            findings.append(Finding("NCCL_IB_HCA", hca, "warn", f"one HCA: a Spark NIC half sits behind PCIe Gen5 x4 "
                                    f"(~15.75 GB/s), below {expect.name}; list both halves"))
        else:
            findings.append(Finding("NCCL_IB_HCA", hca, "ok", ""))
    interfaces = [p for p in present if any(p == n or p.startswith(n) for n in named)] if named else \
        [p for p in present if p != "lo" and _read(sys_net / p / "operstate") == "up"]
    for name in interfaces:
        state = _read(sys_net / name / "operstate") or "unknown"
        mtu = _read(sys_net / name / "mtu") or "?"
        speed = _read(sys_net / name / "speed")
        status, notes = "ok", []
        if state not in ("up", "unknown"):
            status, notes = "fail", [f"link is {state}"]
        if mtu.isdigit() and int(mtu) < 9000 and expect.bandwidth_Bps >= 100e9 / 8:
            status = "warn" if status == "ok" else status
            notes.append("MTU below 9000: jumbo frames are needed near 100-200 Gb/s")
        if speed and speed.lstrip("-").isdigit() and int(speed) > 0 and int(speed) * 1e6 / 8 < 0.95 * expect.bandwidth_Bps:
            status = "warn" if status == "ok" else status
            notes.append(f"port reports {int(speed) / 1000:g} Gb/s, below {expect.name}")
        findings.append(Finding(f"interface {name}", f"state {state}, mtu {mtu}, speed {speed or '?'} Mb/s", status,
                                "; ".join(notes)))
    return findings


def _diagnose_rate(measured_Bps: float, expect: LinkProfile) -> str:
    pct = measured_Bps / expect.bandwidth_Bps * 100
    head = f"busbw {measured_Bps / 1e9:.3g} GB/s = {pct:.0f}% of {expect.name}"
    near = [(abs(math.log(measured_Bps / rate)), meaning) for rate, meaning in SUSPECT_RATES
            if rate < expect.bandwidth_Bps and 0.8 * rate <= measured_Bps <= 1.05 * rate]
    if near:
        return f"{head}: consistent with {min(near)[1]}"
    for name, link in LINKS.items():
        if link.bandwidth_Bps < expect.bandwidth_Bps and 0.8 * link.bandwidth_Bps <= measured_Bps <= 1.05 * link.bandwidth_Bps:
            return f"{head}: consistent with a {name} path"
    if pct >= 100 * BANDWIDTH_MIN_FRACTION * 0.5:
        return f"{head}: check MTU (9000 on fast links), competing traffic and CPU affinity of the ranks"
    return f"{head}: far below the link; check that traffic uses the expected interface and both NIC halves"


def judge(sweep: pd.DataFrame, expect: LinkProfile, backend: str) -> list[BandVerdict]:
    """PASS/FAIL per band of an all_reduce (or any collective's) sweep table."""
    S = sweep["msg_bytes"]
    out = []
    lat = sweep[S <= LATENCY_MAX_BYTES]
    budget_us = LATENCY_BUDGET_US.get(backend, 1000.0) + expect.latency_s * 1e6
    # The fastest call of each size is what the transport can do; the host only adds to it (a busy
    # 2-core machine puts gloo's p50 on a 3-4 ms scheduler mode while its floor stays ~0.4 ms), so a
    # verdict on p50 flips with the scheduler and a verdict on the floor does not. A transport that is
    # wrong (TCP where RDMA was meant) raises the floor as much as the median. Sweeps saved without
    # time_us_min (e.g. hand-written for `fabric fit`) fall back to the p50.
    column = "time_us_min" if "time_us_min" in sweep.columns else "time_us_p50"
    metric = f"median over sizes of {'fastest call' if column == 'time_us_min' else 'p50'} minus wire time, us"
    if lat.empty:
        out.append(BandVerdict("latency-bound", "-", metric, float("nan"), budget_us, budget_us, "SKIP",
                               "no sizes <= 64 KiB swept"))
    else:
        # the latency left once each size's wire time on the expected link is taken off; the median
        # over sizes, so one size's tail (TCP delayed ACKs, a tbf burst) does not decide the band
        coll = str(lat["collective"].iloc[0]) if "collective" in lat else "all_reduce"
        n = int(lat["ranks"].iloc[0]) if "ranks" in lat else 2
        wire_us = lat.msg_bytes * get_collective(coll).busbw_factor(n) / expect.bandwidth_Bps * 1e6
        t = float(np.median(lat[column] - wire_us))
        ok = t <= budget_us
        out.append(BandVerdict("latency-bound", f"{int(lat.msg_bytes.min())}-{int(lat.msg_bytes.max())} B", metric, t,
                               budget_us, budget_us, "PASS" if ok else "FAIL",
                               "" if ok else f"small-message latency {t:.0f} us is above the {budget_us:.0f} us budget for "
                               f"{backend}: typical of TCP sockets or host-staged copies; check the transport "
                               "(RDMA/GPUDirect) and NCCL_PROTO"))
    rate_gbps = expect.bandwidth_Bps / 1e9
    for band, rows, fraction, how in (
        ("middle", sweep[(S > LATENCY_MAX_BYTES) & (S < BANDWIDTH_MIN_BYTES)], MIDDLE_MIN_FRACTION, "max"),
        ("bandwidth-bound", sweep[S >= BANDWIDTH_MIN_BYTES], BANDWIDTH_MIN_FRACTION, "median"),
    ):
        if rows.empty:
            out.append(BandVerdict(band, "-", f"{how} busbw, GB/s", float("nan"), rate_gbps, fraction * rate_gbps, "SKIP",
                                   "no sizes in this band swept"))
            continue
        busbw = float(rows["busbw_gbps"].max() if how == "max" else rows["busbw_gbps"].median())
        ok = busbw >= fraction * rate_gbps
        out.append(BandVerdict(band, f"{int(rows.msg_bytes.min())}-{int(rows.msg_bytes.max())} B", f"{how} busbw, GB/s",
                               busbw, rate_gbps, fraction * rate_gbps, "PASS" if ok else "FAIL",
                               "" if ok else _diagnose_rate(busbw * 1e9, expect)))
    return out


def verdict(findings: list[Finding], bands: list[BandVerdict]) -> str:
    if any(f.status == "fail" for f in findings) or any(b.status == "FAIL" for b in bands):
        return "FAIL"
    return "PASS"


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([asdict(f) for f in findings], columns=["check", "value", "status", "note"])


def bands_frame(bands: list[BandVerdict]) -> pd.DataFrame:
    return pd.DataFrame([asdict(b) for b in bands])


@dataclass
class Assessment:
    """What `fabric validate` concludes: per-band verdicts, the alpha-beta fit, the overall verdict."""

    bands: list[BandVerdict]
    fitted: pd.DataFrame | None
    verdict: str
    warnings: tuple[str, ...] = ()  # fit segments without an interval (commbench.fabric.trust.fit_notes)
    reasons: tuple[str, ...] = ()  # why a FAIL is a FAIL: each failed band, preflight check and wrong value


def fail_reasons(findings: list[Finding], bands: list[BandVerdict], frame: pd.DataFrame | None) -> list[str]:
    """One line per cause of a FAIL: the band (its sizes, the measured value against the threshold and
    the diagnosis), the preflight check, or the wrong values of the correctness pass."""
    reasons = [f"preflight {f.check}={f.value}: {f.note}" for f in findings if f.status == "fail"]
    for b in bands:
        if b.status == "FAIL":
            side = "above" if b.band == "latency-bound" else "below"
            reasons.append(f"band {b.band} ({b.sizes}): {b.metric} {b.measured:.4g} is {side} the threshold "
                           f"{b.threshold:.4g}" + (f": {b.diagnosis}" if b.diagnosis else ""))
    if frame is not None and "wrong" in frame and frame["wrong"].sum():
        bad = frame[frame["wrong"] > 0]
        reasons.append(f"{int(bad['wrong'].sum())} wrong values in the correctness pass at "
                       f"{', '.join(f'{int(s):,} B' for s in bad['msg_bytes'][:5])}{' ...' if len(bad) > 5 else ''}: "
                       "the transfer delivers wrong data, whatever its speed")
    return reasons


def assess(frame: pd.DataFrame | None, findings: list[Finding], link: LinkProfile, backend: str) -> Assessment:
    """Judge a sweep (None: preflight only) against `link`: bands, the fit of t(S), and the verdict,
    FAIL on any failed preflight check, failed band or wrong value."""
    bands = judge(frame, link, backend) if frame is not None else []
    fitted, notes = None, []
    if frame is not None and len(frame) >= 3:
        from commbench.fabric.fit import fit_sweep
        from commbench.fabric.trust import fit_notes

        model = fit_sweep(frame, name="measured")
        fitted, notes = model.to_frame().query("collective != 'any'").drop(columns=["fabric"]), fit_notes(model)
    result = verdict(findings, bands)
    reasons = fail_reasons(findings, bands, frame)
    if reasons:
        result = "FAIL"
    return Assessment(bands, fitted, result, tuple(notes), tuple(reasons))


@dataclass
class Validation:
    """What validate() returns: the sweep it judged (None when a failed preflight stopped it), the
    preflight findings, the judgement (bands, fit, verdict, reasons) and where the sweep ran."""

    frame: pd.DataFrame | None
    findings: list[Finding]
    assessment: Assessment
    launcher: str


def validate(expect, spec=None, table: pd.DataFrame | None = None, env: dict | None = None, world=None,
             on_row=None) -> Validation | None:
    """`fabric validate` as a library call: preflight this host for `spec`'s backend, run the sweep
    (commbench.measure.sweep; a SweepSpec, e.g. SweepSpec("all_reduce", max_bytes=64 * 2**20, iters=5))
    unless a preflight check failed, and judge it against `expect` (a LinkProfile or a name/rate
    commbench.links.parse_link reads). With `table` (a saved sweep, checked by the caller) no sweep
    runs and no preflight is made. None on a launched world's non-reporting ranks; WorldFailed (with
    the finished rows) when the sweep ends early: no verdict on a partial run."""
    from commbench.links import parse_link

    link = parse_link(expect) if isinstance(expect, str) else expect
    if table is not None:
        return Validation(table, [], assess(table, [], link, spec.backend if spec else "gloo"), "file")
    from commbench.measure import sweep

    findings = preflight(link, spec.backend, env)
    frame, launcher = None, "none"
    if not any(f.status == "fail" for f in findings):
        frame = sweep(spec, world, on_row)
        if frame is None:
            return None
        launcher = frame.attrs.get("launcher", "embedded")
    return Validation(frame, findings, assess(frame, findings, link, spec.backend), launcher)
