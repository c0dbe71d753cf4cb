"""The report plots, each a PNG with the plotted data beside it as CSV (report.common._save):

    tokps_vs_batch      output tok/s vs batch, TP and PP, per workload, published points as markers
    breakdown           stacked time per output token by term, TP vs PP
    busbw_vs_size       a fabric's busbw curve against 200GbE, PCIe Gen5 x4/x16 lines, with markers
    replay_sites        per-site communication time of a replay
    busbw_measured      measured sweeps with their fits
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from commbench.collectives import get_collective
from commbench.fabric import FabricModel
from commbench.links import LINKS
from commbench.predict.explain import TERM_COLUMNS, TERM_LABELS
from commbench.report.common import _plt, _save
from commbench.traffic.workload import SCENARIOS



MODE_COLORS = {"tp": "tab:blue", "pp": "tab:orange"}

TERM_COLORS = dict(zip(TERM_LABELS, ("tab:blue", "tab:cyan", "tab:green", "tab:red", "tab:pink", "tab:purple",
                                      "tab:gray", "tab:olive")))

def plot_tokps(grid: pd.DataFrame, out: Path, title: str, alt: pd.DataFrame | None = None) -> str:
    plt = _plt()
    scenarios = list(dict.fromkeys(grid.scenario))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.2), squeeze=False)
    for ax, scen in zip(axes[0], scenarios):
        sub = grid[grid.scenario == scen]
        for mode in ("tp", "pp"):
            rows = sub[sub["mode"] == mode].sort_values("batch")
            if rows.empty:
                continue
            label = f"{mode.upper()}={int(rows.tp.iloc[0] * rows.pp.iloc[0])} predicted"
            ax.plot(rows.batch, rows.output_tok_s, "o-", color=MODE_COLORS[mode], label=label)
            if alt is not None:
                other = alt[(alt.scenario == scen) & (alt["mode"] == mode)].sort_values("batch")
                ax.plot(other.batch, other.output_tok_s, "--", color=MODE_COLORS[mode], alpha=0.6,
                        label=f"{mode.upper()} on {other.fabric.iloc[0]}")
            pub = rows.dropna(subset=["published_tok_s"])
            if not pub.empty:
                ax.plot(pub.batch, pub.published_tok_s, "*", ms=14, color=MODE_COLORS[mode], mec="black",
                        label=f"{mode.upper()} published (predicted, not tuned on)")
        isl, osl = SCENARIOS.get(scen, (sub.isl.iloc[0], sub.osl.iloc[0]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sub.batch.unique()), [str(b) for b in sorted(sub.batch.unique())])
        ax.set_xlabel("concurrent requests (batch)")
        ax.set_ylabel("output tokens/s (whole system)")
        ax.set_title(f"{scen}: ISL {isl} / OSL {osl}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    cols = ["model", "scenario", "mode", "tp", "pp", "batch", "fabric", "output_tok_s", "ttft_ms", "tpot_ms", "published_tok_s"]
    data = grid[cols] if alt is None else pd.concat([grid[cols], alt[cols]], ignore_index=True)
    return _save(fig, data, out, "tokps_vs_batch")

def plot_breakdown(grid: pd.DataFrame, out: Path, scenario: str, batches: tuple[int, ...], title: str) -> str:
    plt = _plt()
    rows = grid[(grid.scenario == scenario) & grid.batch.isin(batches)].copy()
    rows["label"] = rows["mode"].str.upper() + " b" + rows.batch.astype(str)
    rows = rows.sort_values(["batch", "mode"], ascending=[True, False])
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 4.4), squeeze=False)
    for ax, b in zip(axes[0], batches):
        sub = rows[rows.batch == b]
        bottom = np.zeros(len(sub))
        for term, col in zip(TERM_LABELS, TERM_COLUMNS):
            values = sub[col].to_numpy(float)
            if values.sum() <= 0:
                continue
            ax.bar(sub["mode"].str.upper(), values, bottom=bottom, color=TERM_COLORS[term], label=TERM_LABELS[term])
            bottom += values
        ax.set_title(f"batch {b}")
        ax.set_ylabel("ms per output token")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(title)
    return _save(fig, rows[["mode", "batch", "output_tok_s", *TERM_COLUMNS]], out, "breakdown")

def _busbw_axes(ax, title: str, ylabel: str, x0: float, links=("200gbe", "pcie5x4", "pcie5x16"), top=None) -> None:
    """Log-log busbw axes with labelled horizontal lines at the named links' rates."""
    styles = {"200gbe": "--", "pcie5x4": ":", "pcie5x16": "-.", "loopback": (0, (1, 3))}
    for name in links:
        rate = LINKS[name].bandwidth_gbps
        if top is None or rate < 50 * top:
            ax.axhline(rate, ls=styles.get(name, "--"), color="gray", lw=1)
            ax.text(x0, rate * 1.06, f"{name} {rate:.3g} GB/s", fontsize=8, color="dimgray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("message size S (bytes, nccl-tests convention)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right")

def plot_busbw(fabric: FabricModel, out: Path, title: str, marks: list[tuple[str, float]] = (),
               sweep: pd.DataFrame | None = None, n: int = 2, compare: tuple[FabricModel, ...] = ()) -> str:
    plt = _plt()
    sizes = np.logspace(3, 27 * np.log10(2), 200)
    factor = get_collective("all_reduce").busbw_factor(n)
    model_busbw = np.array([s * factor / fabric.time_s("all_reduce", s, n) / 1e9 for s in sizes])
    fig, ax = plt.subplots(figsize=(8.5, 5))
    ax.plot(sizes, model_busbw, "-", color="black", lw=2, label=f"{fabric.name} model (alpha-beta)")
    data = pd.DataFrame({"msg_bytes": sizes, "model_busbw_gbps": model_busbw})
    for other in compare:
        curve = np.array([s * factor / other.time_s("all_reduce", s, n) / 1e9 for s in sizes])
        ax.plot(sizes, curve, "--", color="tab:green", lw=1.5, label=f"{other.name} model")
        data[f"{other.name}_busbw_gbps"] = curve
    if sweep is not None and len(sweep):
        ax.plot(sweep.msg_bytes, sweep.busbw_gbps, "o", color="tab:green", label="measured (p50)")
    for i, (label, s) in enumerate(marks):
        b = s * factor / fabric.time_s("all_reduce", s, n) / 1e9
        ax.plot([s], [b], "D", ms=8, color=f"C{i + 3}", label=f"{label}: {s / 1e3:,.0f} KB")
    _busbw_axes(ax, title, "all_reduce busbw (GB/s)", sizes[0])
    return _save(fig, data, out, "busbw_vs_size")

def plot_replay(replay: pd.DataFrame, out: Path, title: str) -> str:
    """Per-site time inside the replayed step, beside the same calls timed alone and the wire time."""
    plt = _plt()
    wire_col = next(c for c in replay.columns if c.startswith("wire_us_per_step"))
    rows = replay[replay.site != "step"].sort_values(["phase", "measured_us_per_step"])
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 2))
    y = np.arange(len(rows))
    labels = rows["phase"] + " " + rows["site"] + " x" + rows["calls"].astype(str)
    ax.barh(y - 0.27, rows.measured_us_per_step / 1e3, height=0.27, label="measured inside the step", color="tab:blue")
    ax.barh(y, rows.isolated_us_per_step / 1e3, height=0.27, label="same calls timed alone", color="tab:orange")
    ax.barh(y + 0.27, rows[wire_col] / 1e3, height=0.27, label=f"wire time ({wire_col.rsplit('_', 1)[-1]})", color="tab:gray")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms per engine step (log)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, replay, out, "replay_sites")

def plot_measured(sweeps: list[tuple[str, pd.DataFrame, FabricModel]], out: Path, title: str, expect=None) -> str:
    """Measured busbw (p50) of one or more sweeps with their fitted alpha-beta curves and link lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    data = []
    for i, (label, frame, fitted) in enumerate(sweeps):
        n = int(frame["ranks"].iloc[0])
        coll = str(frame["collective"].iloc[0])
        factor = get_collective(coll).busbw_factor(n)
        sizes = np.logspace(np.log10(frame.msg_bytes.min()), np.log10(frame.msg_bytes.max()), 120)
        curve = np.array([s * factor / fitted.time_s(coll, s, n) / 1e9 for s in sizes])
        ax.plot(frame.msg_bytes, frame.busbw_gbps, "o", color=f"C{i}", label=f"{label}: measured p50")
        ax.plot(sizes, curve, "-", color=f"C{i}", alpha=0.7, label=f"{label}: alpha-beta fit")
        data.append(frame.assign(sweep=label)[["sweep", "collective", "msg_bytes", "time_us_p50", "busbw_gbps"]])
    if expect is not None:
        ax.axhline(expect.bandwidth_gbps, ls="--", color="tab:red", lw=1.5,
                   label=f"expected: {expect.name} {expect.bandwidth_gbps:.3g} GB/s")
    top = max(float(f.busbw_gbps.max()) for _, f, _ in sweeps)
    _busbw_axes(ax, title, "busbw (GB/s)", float(sweeps[0][1].msg_bytes.min()),
                ("200gbe", "pcie5x4", "pcie5x16", "loopback"), top)
    return _save(fig, pd.concat(data, ignore_index=True), out, "busbw_vs_size")
