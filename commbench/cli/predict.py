"""Commands that predict and check predictions: hardware, predict, explain, accuracy."""

from __future__ import annotations


import click
from rich.markup import escape

from commbench import CommbenchError, lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench.cli.base import (dumps, log_options, _parse_csv_ints, _records, _save_or_print, console, main,
                                print_frame)


@main.command("hardware")
def hardware_cmd():
    """List the hardware profiles (hardware/*.toml): memory, bandwidth, peak FLOP/s, default fabric.

    \b
    Example:
      commbench hardware
    """
    from commbench.predict.hardware import load_hardware, shipped_hardware

    print_frame(pd.DataFrame([load_hardware(n).summary() for n in shipped_hardware()]),
                "Hardware profiles (peaks from spec sheets; `--hardware local` measures this machine)")


def _parse_what_ifs(ctx, param, value) -> dict:
    """--what-if NAME=VALUE ... as {name: typed value} (commbench.predict.whatif), refused in one line."""
    from commbench.predict.whatif import parse_what_ifs

    return parse_what_ifs(value)


def _predict_options(f):
    f = click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the table (.csv/.json/.parquet) with metadata.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")(f)
    f = click.option("--fabric", default=None, help="Fabric profile name (fabrics/), a .toml, or a saved sweep .csv to fit "
                     "(default: the hardware profile's).")(f)
    f = click.option("--hardware", default="dgx-spark", show_default=True,
                     help="Hardware profile: dgx-spark, h100, h200, rtx-pro-6000, local, a .toml, or a compute --out table.")(f)
    return f


@main.command()
@log_options
@click.argument("models")
@_predict_options
@click.option("--mode", default="both", show_default=True, help="both (tp and pp), or a comma list of tp, pp, tp+pp.")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size in tp and tp+pp modes (default 2).")
@click.option("--pp", type=int, default=None, help="Pipeline-parallel size in pp and tp+pp modes (default 2).")
@click.option("--batch", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated concurrencies.")
@click.option("--scenario", default="balanced", show_default=True, help="Comma-separated presets, or all.")
@click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")
@click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")
@click.option("--token-budget", type=int, default=8192, show_default=True, help="Chunked-prefill token budget per step.")
@click.option("--published", "published_file", type=click.Path(dir_okay=False), default=None,
              help="Your measured figures to set beside the predictions, with the error: a `vllm bench serve "
                   "--save-result` JSON, or a table (model, tp, pp, batch, isl, osl, metric, value).")
@click.option("--recipe", default="checkpoint", show_default=True,
              help="How the engine serves the model (recipes/): weight formats, KV-cache dtype, CUDA graphs or eager.")
@click.option("--what-if", "what_ifs", multiple=True, metavar="NAME=VALUE", callback=_parse_what_ifs,
              help="Switch a mechanism (repeatable), e.g. --what-if fabric=spark-tcp-200g --what-if executor=ray: "
                   "fabric=NAME, executor=mp|ray, async_scheduling=true|false, cuda_graphs=true|false, "
                   "moe_kernel=triton|marlin|..., allreduce_extra_us=N.")
@click.option("--allow-wrong", is_flag=True, help="Fit a --fabric sweep whose rows have wrong > 0 (refused by default).")
def predict(models, hardware, fabric, as_json, out, mode, tp, pp, batch, scenario, isl, osl, token_budget,
            published_file, recipe, what_ifs, allow_wrong):
    """Predict output tok/s, TTFT and TPOT of full runs, TP and PP side by side.

    MODELS is one name or config.json, or several comma-separated. Rows with a published figure
    (published/figures.csv) show it and the error.

    \b
    Example:
      commbench predict gpt-oss-120b --hardware dgx-spark --mode both --batch 1,2,4,8,16,32,64,128 --scenario balanced
      commbench predict llama-3.1-8b-instruct --hardware dgx-spark --fabric sweep.csv
      commbench predict llama-3.1-8b-instruct --published my-measurements.csv
    """
    from commbench.predict.hardware import resolve_hardware
    from commbench.predict.explain import pp_over_tp
    from commbench.predict.grid import parse_modes, parse_scenarios, predict_grid
    from commbench.fabric import load_fabric
    from commbench.predict.published import load_figures
    from commbench.results import check_output_path

    modes, scenarios = parse_modes(mode), parse_scenarios(scenario)
    batches = _parse_csv_ints(batch, "--batch")
    if out is not None:
        check_output_path(out)
    hw = resolve_hardware(hardware)
    fab = load_fabric(fabric or hw.fabric, allow_wrong)
    names = [m.strip() for m in models.split(",") if m.strip()]
    from commbench.traffic.model_card import load_model_card

    warnings = [w for n in names for w in _card_warnings(load_model_card(n), "predict")]
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    notes: list[str] = []
    published = load_figures(published_file, notes) if published_file else None
    frame = predict_grid(names, hw, fab, modes, batches, scenarios, isl, osl, token_budget, tp, pp, published, recipe, what_ifs)
    for note in notes:  # once priced: bad input stays one line
        click.echo(f"note: {note}", err=True)
    fabric_warnings, extrapolated = _fabric_trust(fab)
    shown = ["model", "mode", "tp", "pp", "batch", "scenario", "output_tok_s", "ttft_ms", "tpot_ms",
             "published_tok_s", "error_pct", "fits_memory"]
    _save_or_print(frame, f"Predicted full runs on {hw.name} over {fab.name} (breakdown by term: --json, --out or "
                   f"commbench explain)", as_json, out,
                   {"command": "predict", "models": names, "hardware": hw.name, "fabric": fab.name,
                    "fabric_segments": fab.to_frame().to_dict(orient="records"), "scenarios": scenarios,
                    "token_budget": token_budget, "recipe": recipe, "warnings": warnings + fabric_warnings,
                    "fabric_extrapolation": extrapolated},
                   {"output_tok_s": "{:,.1f}", "ttft_ms": "{:,.0f}", "tpot_ms": "{:,.1f}",
                    "published_tok_s": "{:.2f}", "error_pct": "{:+.1f}"},
                   drop=tuple(c for c in frame.columns if c not in shown),
                   json_extra={"warnings": warnings + fabric_warnings, "fabric_extrapolation": extrapolated})
    if {"tp", "pp"} <= set(modes) and not as_json:
        table = pp_over_tp(frame).pivot_table(index=["model", "scenario"], columns="batch", values="pp_over_tp")
        rows = [{"model": model_name, "scenario": scen, **{f"b{b}": f"{v:.2f}" for b, v in cells.items()}}
                for (model_name, scen), cells in table.iterrows()]
        print_frame(pd.DataFrame(rows), "PP / TP output tok/s (above 1: PP ahead)")
    if not frame.fits_memory.all() and not as_json:
        bad = frame[~frame.fits_memory]
        console.print(f"[yellow]warning:[/] {len(bad)} rows need more than {hw.memory_gb:g} GB per rank (weights + KV): "
                      + escape(f"{', '.join(f'{r.model} {r.mode} b{r.batch}' for r in bad.itertuples())[:300]}"))


def _card_warnings(card, command: str) -> tuple[str, ...]:
    """The card's warnings, then the engine registry's for a command that prices the default
    generation's traffic (commbench.traffic.registry.pricing_notes): trace's one-line refusal when no
    generation serves the model's `architectures`, its switch note as a warning when only another does."""
    from commbench.traffic.registry import pricing_notes
    from commbench.traffic.runner_options import DEFAULT_ENGINE

    return (*card.warnings, *pricing_notes(card.architectures, DEFAULT_ENGINE, card.block_kinds, command))


def _fabric_trust(fab) -> tuple[list[str], list[dict]]:
    """After pricing with `fab`: its fit notes and extrapolations (commbench.fabric.trust), each
    printed on stderr as a warning, and returned for --json and saved metadata."""
    from commbench.fabric.trust import extrapolations, fit_notes

    extrapolated = extrapolations(fab)
    lines = fit_notes(fab) + [e["message"] for e in extrapolated]
    for line in lines:
        click.echo(f"warning: {line}", err=True)
    return lines, extrapolated


@main.command("explain")
@log_options
@click.argument("model")
@click.option("--hardware", default="dgx-spark", show_default=True, help="Hardware profile (see `commbench hardware`).")
@click.option("--fabric", default=None, help="Fabric profile or sweep file (default: the hardware profile's).")
@click.option("--batch", type=int, default=128, show_default=True, help="Concurrency to explain beside batch 1.")
@click.option("--scenario", default="balanced", show_default=True, help="Workload preset.")
@click.option("--isl", type=int, default=None, help="Input tokens per request (overrides the scenario).")
@click.option("--osl", type=int, default=None, help="Output tokens per request (overrides the scenario).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...], \"sentences\": [...]} as JSON.")
@click.option("--what-if", "what_ifs", multiple=True, metavar="NAME=VALUE", callback=_parse_what_ifs,
              help="Switch a mechanism in the first table (repeatable; as predict --what-if).")
def explain_cmd(model, hardware, fabric, batch, scenario, isl, osl, as_json, what_ifs):
    """Why TP or PP wins for MODEL: per-token time by term at batch 1 and BATCH, in numbers and words.

    \b
    Example:
      commbench explain gpt-oss-120b --hardware dgx-spark --batch 128
    """
    from commbench.predict.hardware import resolve_hardware
    from commbench.predict.explain import TERM_COLUMNS, explain
    from commbench.predict.mechanisms import explain_mechanisms
    from commbench.fabric import load_fabric

    from commbench.traffic.model_card import load_model_card

    hw = resolve_hardware(hardware)
    fab = load_fabric(fabric or hw.fabric)
    card = load_model_card(model)
    registry_warnings = list(_card_warnings(card, "explain")[len(card.warnings):])  # refused here, or said
    for warning in registry_warnings:
        click.echo(f"warning: {warning}", err=True)
    grid, lines, evidence = explain(model, hw, fab, batch, scenario, isl, osl, what_ifs)
    more = explain_mechanisms(model, hw, fab, batch, scenario, isl, osl)
    fabric_warnings, extrapolated = _fabric_trust(fab)
    if as_json:
        click.echo(dumps({"rows": _records(grid), "evidence": _records(evidence), "sentences": lines + more["sentences"],
                          "curves": _records(more["curves"]), "mechanisms": _records(more["mechanisms"]),
                          "combinations": _records(more["combinations"]), "crossover": more["crossover"],
                          "warnings": registry_warnings + fabric_warnings, "fabric_extrapolation": extrapolated}))
        return
    cols = ["mode", "batch", "output_tok_s", "tpot_ms", "ttft_ms", *TERM_COLUMNS]
    print_frame(grid[cols], f"{model}: time per output token by term (ms)",
                {"output_tok_s": "{:,.1f}", "tpot_ms": "{:,.1f}", "ttft_ms": "{:,.0f}",
                 **{c: "{:.3f}" for c in TERM_COLUMNS}})
    print_frame(evidence, f"TP - PP gap at batch {batch} by term, ms per decode step, on each fabric",
                {c: "{:.2f}" for c in evidence.columns[1:]})
    for line in lines:
        console.print(line, highlight=False)
    if not more["curves"].empty:
        print_frame(more["curves"], f"Published figures of {model} beside the prediction ({fab.name} across boxes)",
                    {"published": "{:,.1f}", "predicted": "{:,.1f}", "error_pct": "{:+.1f}"})
    print_frame(more["mechanisms"], f"Mechanisms switched on alone from a well-configured TP=2, batch {batch}",
                {"tp_tok_s": "{:,.1f}", "pp_tok_s": "{:,.1f}", "pp_over_tp": "{:.2f}", "gap_ms_per_step": "{:+.1f}",
                 "share_of_gap_pct": "{:.1f}"})
    print_frame(more["combinations"], "Closest combinations (said as 'consistent with' only when near; never fitted)",
                {"tp_tok_s": "{:,.1f}", "pp_tok_s": "{:,.1f}", "pp_over_tp": "{:.2f}", "share_of_gap_pct": "{:.1f}",
                 "tp_vs_published_pct": "{:+.1f}"})
    for line in more["sentences"]:
        console.print(line, highlight=False)


@main.command()
@log_options
@click.option("--published", "published_files", multiple=True, type=click.Path(dir_okay=False),
              help="Your own figures instead of the shipped set: `vllm bench serve --save-result` JSON files or "
                   "figure tables (repeat the option, or pass a shell glob after it).")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--fabric", default=None, help="Fabric for rows across boxes (default: each row's hardware profile's).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\", \"summary\", \"winners\", \"findings\"} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the per-row table (.csv/.json/.parquet).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.md, a predicted-vs-measured plot and the tables into this folder.")
def accuracy(published_files, more_files, fabric, as_json, out, report_dir):
    """Every published figure against its prediction: error per row, MAPE per source, TP/PP winners.

    The shipped set (published/figures.csv) holds the independent single-Spark decode curves and the
    two-Spark review rows, each with its source; rows a constant was chosen on are marked `tuned`.

    \b
    Example:
      commbench accuracy
      commbench accuracy --published results/*.json
    """
    from commbench.predict.accuracy import accuracy_table, combine, findings, summary, winner_agreement
    from commbench.fabric import load_fabric
    from commbench.predict.hardware import load_hardware
    from commbench.predict.published import load_figures, shipped_figures
    from commbench.results import check_output_path, check_writable_folder

    if out is not None:
        check_output_path(out)
    if report_dir is not None:
        check_writable_folder(report_dir)
    files = list(published_files) + list(more_files)
    notes: list[str] = []
    frames = [f for f in (load_figures(f, notes, skip_side_files=True) for f in files) if not f.empty]
    if files and not frames:  # only side files: the first one's note says which file to give
        raise CommbenchError(notes[0] if notes else f"no figures in {', '.join(map(str, files))}")
    figures = combine(frames) if files else shipped_figures()
    fab = load_fabric(fabric or load_hardware(figures.hardware.iloc[0]).fabric)
    table = accuracy_table(figures, fab)
    for note in notes:  # once the figures are priced: bad input stays one line
        click.echo(f"note: {note}", err=True)
    summ, winners, checks = summary(table), winner_agreement(table), findings(fab)
    if report_dir:
        from commbench.report import write_accuracy_report

        write_accuracy_report(report_dir, table, summ, winners, checks, fab, files)
    if as_json:
        click.echo(dumps({"schema_version": 1, "fabric": fab.name, "rows": _records(table), "summary": _records(summ),
                               "winners": _records(winners), "findings": _records(checks)}))
    else:
        shown = table.drop(columns=["citation", "role", "hardware"])
        print_frame(shown, f"Predicted vs published ({fab.name} across boxes)",
                    {"value": "{:,.2f}", "predicted": "{:,.2f}", "error_pct": "{:+.1f}"})
        print_frame(summ, "Error per source (MAPE = mean |predicted / measured - 1|)",
                    {"mape_pct": "{:.1f}", "worst_pct": "{:+.1f}"})
        if not winners.empty:
            print_frame(winners, "TP vs PP winner", {"measured_pp_over_tp": "{:.2f}", "predicted_pp_over_tp": "{:.2f}"})
        print_frame(checks, f"The review's findings on {fab.name}")
    if out:
        from commbench.results import environment_metadata, save_table

        save_table(table, out, environment_metadata(command="accuracy", fabric=fab.name, files=files))


