"""The predicted model report: TP and PP on a hardware profile and fabric (see commbench.report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from commbench.fabric import CI_COLUMNS, check_sweep_table, load_fabric
from commbench.logs import read_sweep
from commbench.predict.explain import explain, model_message_sizes, pp_over_tp, theory_ladder
from commbench.predict.grid import predict_grid
from commbench.predict.hardware import FLOP_EFFICIENCY
from commbench.predict.serving import ROUTING_ZIPF_EXPONENT
from commbench.report.common import _machine_table, _md_table, command_line
from commbench.report.plots import plot_breakdown, plot_busbw, plot_replay, plot_tokps
from commbench.results import environment_metadata, load_table
from commbench.traffic.workload import SCENARIOS



BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)

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
