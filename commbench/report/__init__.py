"""Reports: plots (PNG, with the plotted data beside them as CSV) and a report.md that renders on GitHub.

A model report predicts TP and PP on a hardware profile and fabric and shows:
    tokps_vs_batch      output tok/s vs batch, TP and PP, per workload, published points as markers
    breakdown           stacked time per output token by term, TP vs PP, at batch 1 and the top batch
    busbw_vs_size       the fabric's busbw curve against 200GbE, PCIe Gen5 x4/x16 lines, with markers
                        at the model's own message sizes (and measured sweep points when given)
    replay_sites        per-site communication time of a replay (when a replay table is given)
A sweep report fits and plots a measured sweep. Every report.md names the command that made it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from commbench import require
from commbench.collectives import get_collective
from commbench.predict.explain import (TERM_COLUMNS, TERM_LABELS, explain, model_message_sizes, pp_over_tp, predict_grid,
                               theory_ladder)
from commbench.fabric import CI_COLUMNS, FabricModel, check_sweep_table, fit_sweep, load_fabric
from commbench.links import LINKS
from commbench.logs import provenance, read_sweep
from commbench.results import environment_metadata, load_table
from commbench.predict.hardware import FLOP_EFFICIENCY
from commbench.predict.serving import ROUTING_ZIPF_EXPONENT
from commbench.traffic.workload import SCENARIOS

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
MODE_COLORS = {"tp": "tab:blue", "pp": "tab:orange"}
TERM_COLORS = dict(zip(TERM_LABELS, ("tab:blue", "tab:cyan", "tab:green", "tab:red", "tab:pink", "tab:purple",
                                      "tab:gray", "tab:olive")))


def _plt():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, frame: pd.DataFrame, out: Path, stem: str) -> str:
    fig.savefig(out / f"{stem}.png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    frame.to_csv(out / f"{stem}.csv", index=False)
    return f"{stem}.png"


def _md_table(frame: pd.DataFrame, floats: str = "{:,.1f}") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                cells.append("" if v != v else floats.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _machine_table(meta: dict) -> str:
    row = {k: meta.get(k, "") for k in ("host", "platform", "cpu_count", "created_utc")}
    row.update(meta.get("versions", {}))
    return _md_table(pd.DataFrame([{k: str(v) for k, v in row.items()}]))


def command_line(*args: str) -> str:
    """The command that regenerates a report, from the arguments that made it."""
    return "commbench " + " ".join(shlex.quote(str(a)) for a in args)


# ---- plots --------------------------------------------------------------------------------------

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


# ---- reports ------------------------------------------------------------------------------------

def model_report(model: str, hardware: str, fabric: str | None, out: Path, scenarios: list[str],
                 batches: tuple[int, ...] = BATCHES, sweep_file: str | None = None, replay_file: str | None = None,
                 command: str = "", warnings_out: list | None = None) -> Path:
    """A predicted model report (see the module docstring); returns the folder. What the fabric fit
    cannot vouch for (commbench.fabric.trust) goes into report.md and onto `warnings_out`."""
    # long: the report.md template, section by section in the order it renders
    from commbench.predict.hardware import resolve_hardware

    hw = resolve_hardware(hardware)
    fab = load_fabric(fabric or hw.fabric)
    out.mkdir(parents=True, exist_ok=True)
    grid = predict_grid([model], hw, fab, ["tp", "pp"], list(batches), scenarios)
    compare = tuple(load_fabric(name) for name in hw.compare_fabrics if name != fab.name)
    alt = predict_grid([model], hw, compare[0], ["tp", "pp"], list(batches), scenarios) if compare else None
    top = max(batches)
    where = f"two {hw.name} over {fab.name}"
    images = [plot_tokps(grid, out, f"{model} on {where}: predicted output tok/s, TP vs PP", alt)]
    images.append(plot_breakdown(grid, out, scenarios[0], tuple(sorted({1, top})),
                                 f"{model} on {where}, {scenarios[0]}: where each output token's time goes"))
    sweep = check_sweep_table(read_sweep(sweep_file)[0], sweep_file) if sweep_file else None
    images.append(plot_busbw(fab, out, f"all_reduce busbw on {fab.name} (2 ranks) and {model}'s message sizes",
                             model_message_sizes(model, top), sweep, compare=compare))
    if replay_file:
        images.append(plot_replay(load_table(replay_file)[0], out, f"{model}: replayed communication per site"))
    _, sentences, evidence = explain(model, hw, fab, top, scenarios[0])
    from commbench.predict.mechanisms import explain_mechanisms

    why = explain_mechanisms(model, hw, fab, top, scenarios[0])
    ladder = theory_ladder(model, fab, top)
    from commbench.fabric.trust import warnings as fit_warnings

    cautions = fit_warnings(fab)
    if warnings_out is not None:
        warnings_out.extend(cautions)
    grid.to_csv(out / "predictions.csv", index=False)
    meta = environment_metadata(command=command or command_line("report", model, "--hardware", hardware),
                                hardware=hw.name, fabric=fab.name)
    summary = grid[["scenario", "mode", "batch", "output_tok_s", "ttft_ms", "tpot_ms", "published_tok_s", "error_pct"]]
    ratio = pp_over_tp(grid, ("scenario", "batch"))
    ratio["ahead"] = np.where(ratio.pp_over_tp > 1, "PP", "TP")
    lines = [
        f"# {model} on {where}: TP or PP?", "",
        f"Predicted by commbench {meta['versions']['commbench']} (serving model: `commbench/predict/serving.py`), not measured. "
        "Regenerate with:", "",
        "```", meta["command"], "```", "",
        "## Verdict", "", *[f"- {s}" for s in sentences], "",
        *(["**How far the fabric fit holds** (sizes it was not measured at):", "", *[f"- {c}" for c in cautions], ""]
          if cautions else []),
        f"The TP - PP gap at batch {top} by term, ms per decode step, on each named fabric "
        "(positive: TP slower):", "", _md_table(evidence, "{:,.2f}"), "",
        f"## What could make TP lose at batch {top}: published curves, mechanisms, crossover", "",
        *([_md_table(why["curves"], "{:,.1f}"), ""] if not why["curves"].empty else []),
        "Each mechanism switched on alone from a well-configured TP=2 (sources in docs/sources-gb10.md):", "",
        _md_table(why["mechanisms"], "{:,.2f}"), "", "Closest combinations (never fitted):", "",
        _md_table(why["combinations"], "{:,.2f}"), "", *[f"- {s}" for s in why["sentences"]], "",
        "## Throughput", "", f"![tok/s vs batch]({images[0]})", "",
        _md_table(ratio[["scenario", "batch", "tp", "pp", "pp_over_tp", "ahead"]].rename(
            columns={"tp": "tp_output_tok_s", "pp": "pp_output_tok_s"}), "{:,.2f}"), "",
        "## Where the time goes", "", f"![breakdown]({images[1]})", "",
        "## Communication against the fabric", "", f"![busbw]({images[2]})", "",
        "Percent of theory, from the line rate down to this model's own messages:", "",
        _md_table(ladder.astype(object).fillna(""), "{:,.3g}"), "",
        _md_table(fab.to_frame().drop(columns=["collective", *CI_COLUMNS]), "{:,.3f}"), "",
    ]
    if replay_file:
        lines += ["## Replayed communication", "", f"![replay]({images[3]})", ""]
    lines += [
        "## All predictions", "", _md_table(summary), "",
        "## Assumptions", "",
        f"- Workloads: {', '.join(f'{s} ISL {SCENARIOS[s][0]} / OSL {SCENARIOS[s][1]}' for s in scenarios)} "
        "(the review does not print ISL/OSL; these are the sweep convention); chunked prefill, token budget 8192.",
        f"- Hardware `{hw.name}`: {hw.description}; memory {hw.memory_bandwidth_Bps / 1e9:,.0f} GB/s peak, "
        f"BF16 {hw.peak_flops.get('bfloat16', float('nan')) / 1e12:,.0f} TFLOP/s peak ({hw.source}).",
        f"- Fabric `{fab.name}`: {fab.description}.",
        f"- Memory bandwidth reached: {hw.effective_bandwidth_Bps / 1e9:,.0f} GB/s "
        f"({'measured figure in the profile' if hw.achieved_bandwidth_Bps else 'peak x MEMORY_BW_EFFICIENCY'}); "
        f"FLOP_EFFICIENCY = {FLOP_EFFICIENCY} (`commbench/predict/hardware.py`).",
        "- Served as the checkpoint stores the weights, vLLM with CUDA graphs (recipe `checkpoint`); host step and "
        "eager launch costs in `commbench/predict/recipes.py`.",
        f"- MoE routing: a Zipf law over experts, ROUTING_ZIPF_EXPONENT = {ROUTING_ZIPF_EXPONENT} "
        "(`commbench/predict/serving.py`; chosen on the kubis.ai single-Spark curve, see `commbench accuracy`).",
        "", "## Machine that ran the prediction", "", _machine_table(meta), "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


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


def sweep_report(sweep_files: list[str], out: Path, expect: str | None = None, command: str = "",
                 replay_file: str | None = None, title: str = "") -> Path:
    """A measured-fabric report: one or more saved sweeps (and a replay), fitted and judged."""
    from commbench.links import parse_link
    from commbench.fabric.validate import bands_frame, judge

    loaded = []
    for path in sweep_files:
        frame, meta_in, _ = read_sweep(path)
        frame = check_sweep_table(frame, str(path))
        label = (f"{meta_in['collective']} from {meta_in['tool']} ({meta_in.get('ranks')} ranks)" if provenance(meta_in) else
                 f"{meta_in.get('collective', frame.collective.iloc[0])} on {meta_in.get('backend', '?')} ({meta_in.get('launcher', '?')})")
        loaded.append((path, frame, meta_in, label, fit_sweep(frame, name=Path(path).stem)))
    out.mkdir(parents=True, exist_ok=True)
    hosts = sorted({h for _, _, m, _, _ in loaded for h in (m.get("hosts") if provenance(m) else None) or [m.get("host", "?")]})
    images = [plot_measured([(label, frame, fitted) for _, frame, _, label, fitted in loaded], out,
                            title or f"Measured busbw on {', '.join(hosts)}: {len(loaded)} sweep(s) and their fits",
                            parse_link(expect) if expect else None)]
    if replay_file:
        replay, replay_meta = load_table(replay_file)
        images.append(plot_replay(replay, out, f"{replay_meta.get('model', '?')} {replay_meta.get('mode', '')} batch "
                                  f"{replay_meta.get('batch', '?')}: replayed on {replay_meta.get('backend', '?')} "
                                  f"({replay_meta.get('launcher', '?')}), host {replay_meta.get('host', '?')}"))
    first = " ".join(f"--sweep {p}" for p in sweep_files)
    meta = environment_metadata(command=command or f"commbench report {first} --out {out}")
    lines = [f"# Fabric report: {title or ', '.join(Path(p).name for p in sweep_files)}", "",
             "Measured, not predicted. Regenerate this report from the saved measurements with:", "",
             "```", meta["command"], "```", "", f"![busbw]({images[0]})", ""]
    for path, frame, meta_in, label, fitted in loaded:
        lines += [f"## {label}", "",
                  f"`{path}`: " + (provenance(meta_in) or
                  f"measured by `commbench sweep` ({meta_in.get('backend', '?')} backend, launcher "
                  f"{meta_in.get('launcher', '?')}, {meta_in.get('ranks', '?')} ranks, {meta_in.get('iters', '?')} "
                  f"iterations, timing {meta_in.get('timing', 'blocking')}) on host {meta_in.get('host', '?')} "
                  f"({meta_in.get('cpu_count', '?')} CPUs)."), "",
                  *([f"Rank 0 ran: `commbench {' '.join(meta_in['argv'][1:])}`" + (
                      f" with {', '.join(f'{k}={v}' for k, v in meta_in.get('env', {}).items())}" if meta_in.get("env") else ""), ""]
                    if meta_in.get("argv") else []),
                  *([f"**Partial sweep** (complete: false): {meta_in.get('error', 'the run ended early')}; only the "
                     f"{len(frame)} sizes that finished are shown, fitted and judged.", ""]
                    if meta_in.get("complete") is False else []),
                  "Fitted latency-bandwidth model (95% confidence intervals):", "",
                  _md_table(fitted.to_frame()[lambda f: f.collective != "any"].drop(columns=["fabric"]), "{:,.4g}"), ""]
        if expect:
            link = parse_link(expect)
            bands = bands_frame(judge(frame, link, meta_in.get("backend", "gloo")))
            verdict = "FAIL" if (bands.status == "FAIL").any() else "PASS"
            lines += [f"### Verdict against {link.name}: {verdict}", "", _md_table(bands, "{:,.4g}"), ""]
        cols = [c for c in ("msg_bytes", "time_us_p50", "time_us_min", "time_us_max", "time_us_p99",
                            "algbw_gbps", "busbw_gbps", "wrong") if c in frame.columns]
        lines += ["<details><summary>measurements</summary>", "", _md_table(frame[cols], "{:,.4g}"), "", "</details>", ""]
    if replay_file:
        lines += ["## Replay", "", f"`{replay_file}`: one engine step per phase, run for real in engine order; "
                  "measured inside the step, the same calls timed alone, and wire time at the link rate.", "",
                  f"![replay]({images[1]})", "",
                  _md_table(replay[replay.site == "step"].drop(columns=["collective"]), "{:,.1f}"), ""]
    metas = [m for _, _, m, _, _ in loaded if m]
    lines += ["## Machine that measured", "", _machine_table(metas[0]) if metas else "(no metadata saved)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def write_accuracy_report(out_dir: str | Path, table: pd.DataFrame, summary: pd.DataFrame, winners: pd.DataFrame,
                          findings: pd.DataFrame, fabric: FabricModel, files: list[str]) -> Path:
    """reports/accuracy/: report.md, predicted_vs_measured.png and the tables it shows (CSV)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    markers = {"kubis.ai": "o", "llama.cpp": "s", "StorageReview": "*"}
    colors = ("tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:red", "tab:brown")
    for i, (source, grp) in enumerate(table.groupby("source", sort=False)):
        color = colors[i % len(colors)]
        for tuned, sub in grp.groupby(grp.tuned != ""):
            label = f"{source} ({'hollow: a constant was chosen on these' if tuned else 'predicted'})"
            ax.scatter(sub.value, sub.predicted, marker=markers.get(source, "D"), s=110 if source == "StorageReview" else 50,
                       facecolors="none" if tuned else color, edgecolors=color if tuned else "black",
                       linewidths=1.6 if tuned else 0.8, label=label)
    lo, hi = table[["value", "predicted"]].min().min() * 0.7, table[["value", "predicted"]].max().max() * 1.4
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="gray", alpha=0.15, label="+/- 10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("published tok/s")
    ax.set_ylabel("predicted tok/s")
    ax.set_title(f"commbench predictions vs published figures (two-box rows on {fabric.name})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    image = _save(fig, table, out, "predicted_vs_measured")
    summary.to_csv(out / "summary.csv", index=False)
    findings.to_csv(out / "findings.csv", index=False)
    meta = environment_metadata(command=command_line("accuracy", *[a for f in files for a in ("--published", f)],
                                                     "--report", str(out_dir)), fabric=fabric.name)
    rows = table[["source", "tuned", "recipe", "model", "tp", "pp", "batch", "isl", "osl", "metric", "value",
                  "predicted", "error_pct"]]
    lines = [
        "# Prediction error on published figures", "",
        "Every figure predicted with its own setup (recipe, tp x pp, concurrency, ISL/OSL); the two-box rows on "
        f"the `{fabric.name}` fabric. Rows marked `tuned` are the ones a named constant was chosen on "
        "(ROUTING_ZIPF_EXPONENT); all others are predictions. Regenerate with:", "",
        "```", meta["command"], "```", "",
        f"![predicted vs measured]({image})", "",
        "## Error per source", "", _md_table(summary, "{:,.1f}"), "",
    ]
    if not winners.empty:
        lines += ["## TP vs PP winner", "", _md_table(winners, "{:,.2f}"), ""]
    lines += ["## The review's qualitative findings", "", _md_table(findings), "",
              "Where a finding does not hold, `commbench explain MODEL` splits the published gap by term on each "
              "named fabric, states the unexplained rest in ms per step and lists the measurements that would "
              "tell the candidate causes apart.", "",
              "## Every row", "", _md_table(rows, "{:,.2f}"), "",
              "## Machine that ran the prediction", "", _machine_table(meta), ""]
    (out / "report.md").write_text("\n".join(lines))
    return out
