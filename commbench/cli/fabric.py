"""The fabric group: links, fit, infer, validate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench import CommbenchError
from commbench.cli.base import dumps, log_options, _records, console, main, print_frame
from commbench.cli.measure import _check_sweep_options, _parse_bytes


@main.group()
def fabric():
    """Link theory, fitted latency-bandwidth models and a pass/fail verdict for a fabric.

    \b
    Example:
      commbench fabric links
      commbench fabric validate --expect 200gbe
    """


@fabric.command("links")
@click.option("--ranks", type=int, default=2, show_default=True, help="Ranks n for the theory columns.")
@click.option("--msg-bytes", default="64M", show_default=True, help="Message size S for the theory columns.")
def fabric_links(ranks, msg_bytes):
    """Known link profiles with their theory, and the shipped fabric profiles (fitted or inferred).

    Theory for n ranks and size S: ring all_reduce 2(n-1) x latency + 2(n-1)/n x S / B; tree
    all_reduce 2 ceil(log2 n) x latency + 2 S / B; all_gather (n-1) x latency + (n-1)/n x S / B;
    send/recv latency + S / B.

    \b
    Example:
      commbench fabric links --ranks 4 --msg-bytes 1M
    """
    from commbench.fabric import CI_COLUMNS, load_fabric, shipped_fabrics
    from commbench.links import LINKS, theory_time_s

    if ranks < 2:
        raise CommbenchError(f"--ranks must be >= 2, got {ranks}")
    S = _parse_bytes(msg_bytes)
    rows = []
    for link in LINKS.values():
        row = {"link": link.name, "bandwidth_gbps": link.bandwidth_gbps,
               "measured_gbps": link.measured_Bps / 1e9 if link.measured_Bps else None,
               "latency_us": link.latency_s * 1e6}
        for coll, algo in (("all_reduce", "ring"), ("all_reduce", "tree"), ("all_gather", "ring"), ("send_recv", "ring")):
            t = theory_time_s(coll, S, ranks, link, algo)
            row[f"{coll}{'_tree' if algo == 'tree' else ''}_us"] = t * 1e6
        row["source"] = link.source
        rows.append(row)
    print_frame(pd.DataFrame(rows), f"Link theory for n = {ranks} ranks, S = {S:,} B (GB = 1e9 B, per direction)",
                {"measured_gbps": "{:.2f}", "latency_us": "{:.1f}"})
    frames = [load_fabric(name).to_frame() for name in shipped_fabrics()]
    print_frame(pd.concat(frames, ignore_index=True).drop(columns=["collective", *CI_COLUMNS]),
                "Fabric profiles (fabrics/): t(S) = alpha + S x busbw factor / busbw, per size segment",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.3f}"})


@fabric.command("fit")
@log_options
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Save the fit as a fabric profile (.toml) for predict --fabric.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\": [...]} as JSON.")
@click.option("--allow-wrong", is_flag=True, help="Fit rows with wrong > 0 too (refused by default: their times "
              "measure a broken transfer).")
def fabric_fit(sweep_file, out, as_json, allow_wrong):
    """Fit t(S) = alpha + S / beta per collective of a saved sweep, with 95% confidence intervals.

    A second segment is kept where a protocol switch shows (a split that more than halves the
    residual). busbw = beta x the collective's busbw factor.

    \b
    Example:
      commbench fabric fit sweep.csv --out my-fabric.toml
    """
    from commbench.fabric import fabric_toml, load_fabric
    from commbench.results import atomic_write, check_output_path

    if out is not None:
        if not out.endswith(".toml"):
            raise CommbenchError(f"--out {out!r}: a fitted fabric is saved as .toml")
        check_output_path(out, (".toml",))  # a folder that cannot be written fails before the fit
    from commbench.fabric.trust import fit_notes

    model = load_fabric(sweep_file, allow_wrong)
    frame = model.to_frame()
    frame = frame[frame.collective != "any"].reset_index(drop=True)
    for note in fit_notes(model):
        click.echo(f"warning: {note}", err=True)
    if out:
        atomic_write(Path(out), lambda p: Path(p).write_text(fabric_toml(model, f"Fitted by commbench fabric fit from {sweep_file}.")))
    if as_json:
        click.echo(dumps({"rows": _records(frame)}))
        return
    print_frame(frame, f"alpha-beta fit of {model.source or sweep_file} (weighted least squares on p50; CI: 95%, t distribution)",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.2f}", "busbw_gbps": "{:.4f}"})


@fabric.command("infer")
@click.option("--base", default="spark-200gbe", show_default=True, help="Fabric whose small-message slope is kept.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the implied profile (.toml) to study it.")
def fabric_infer(base, out):
    """Diagnose the review's rows: the fabric they would imply, and whether it can exist.

    Solves the per-call latency and the mid- and large-message busbw that make the published TP=2
    gpt-oss-120b rows come out (TP ahead only at batch 1), judges that fabric (bandwidth must not
    fall with size nor drop below the slowest transport the pair has), and reports the ms per
    engine step that the well-configured fabric leaves unexplained. No shipped profile comes from it.

    \b
    Example:
      commbench fabric infer
    """
    from commbench.predict.infer import infer_fabric, judge, predicted, unexplained_ms_per_step
    from commbench.fabric import CI_COLUMNS, fabric_toml, load_fabric
    from commbench.predict.published import review_rows
    from commbench.results import atomic_write, check_output_path

    if out is not None and not out.endswith(".toml"):
        raise CommbenchError(f"--out {out!r}: a fabric profile is saved as .toml")
    if out is not None:
        check_output_path(out, (".toml",))
    base_fabric = load_fabric(base)
    with console.status("solving for the fabric the published rows imply"):
        model = infer_fabric(base)
    rows = [{"model": r.model, "mode": r.mode, "batch": r.batch, "scenario": r.scenario, "published_tok_s": r.output_tok_s,
             "implied_fabric_tok_s": predicted(r, model), f"{base}_tok_s": predicted(r, base_fabric),
             f"unexplained_ms_per_step_on_{base}": unexplained_ms_per_step(r, base_fabric)} for r in review_rows()]
    print_frame(model.to_frame().drop(columns=["collective", *CI_COLUMNS]),
                f"Fabric the published TP rows imply (over {base}'s small-message slope)",
                {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.3f}"})
    print_frame(pd.DataFrame(rows), "Published rows", {"implied_fabric_tok_s": "{:.1f}", f"{base}_tok_s": "{:.1f}",
                                                       f"unexplained_ms_per_step_on_{base}": "{:+.1f}"})
    verdict = judge(model)
    if verdict.physical:
        console.print("The implied fabric is physical: the rows are consistent with a (slow) fabric. Measure it with "
                      "`commbench fabric validate` on the pair.", highlight=False)
    else:
        console.print("The implied fabric is not physical: " + "; ".join(verdict.reasons) + ". The rows are not a "
                      f"fabric property: the last column is what {base} leaves unexplained "
                      "(see `commbench explain` for the candidate causes).", highlight=False)
    if out:
        text = fabric_toml(model, "Written by commbench fabric infer: a diagnostic implied by end-to-end rows, not a measured profile.")
        atomic_write(Path(out), lambda p: Path(p).write_text(text))


@fabric.command("validate")
@log_options(clash=True)
@click.option("--expect", required=True, help="Expected link: 200gbe, 100gbe, pcie5x4, pcie5x16, nvlink-h100, "
              "loopback, or a rate like 1gbit, 12.5GB/s.")
@click.option("--backend", default="gloo", show_default=True, help="gloo or mpi.")
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False), default=None, help="Judge a saved sweep instead of running one.")
@click.option("--collective", default="all_reduce", show_default=True, help="Collective to sweep.")
@click.option("--min-bytes", default="8", show_default=True, help="Smallest message.")
@click.option("--max-bytes", default="64M", show_default=True, help="Largest message.")
@click.option("--ranks", type=int, default=2, show_default=True, help="Local ranks of the embedded world.")
@click.option("--iters", type=int, default=5, show_default=True, help="Timed iterations per size.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed iterations per size.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per collective.")
@click.option("--json", "as_json", is_flag=True, help="Print {verdict, preflight, bands, rows} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the sweep with the verdict in its metadata.")
@click.option("--allow-wrong", is_flag=True, help="Judge a saved sweep (--sweep) even where rows have wrong > 0 "
              "(refused by default: their times measure a broken transfer).")
def fabric_validate(expect, backend, sweep_file, collective, min_bytes, max_bytes, ranks, iters, warmup, timeout_s,
                    as_json, out, allow_wrong):
    """Preflight the environment, sweep, and judge each size band against the expected link.

    Exit status: 0 pass, 1 fail, 2 bad input. Run it under torchrun or mpiexec across the real
    hosts; without a launcher it checks the local loopback world.

    \b
    Example:
      commbench fabric validate --expect 200gbe
      commbench fabric validate --expect 1gbit --backend gloo
      commbench fabric validate --expect 200gbe --sweep sweep.csv
    """
    from commbench.cli.base import save_partial
    from commbench.fabric.validate import validate
    from commbench.links import parse_link
    from commbench.measure import SweepSpec
    from commbench.measure.launcher import launcher_world
    from commbench.measure.world import WorldFailed
    from commbench.results import check_output_path

    link = parse_link(expect)
    spec = SweepSpec(collective=collective, min_bytes=_parse_bytes(min_bytes), max_bytes=_parse_bytes(max_bytes),
                     backend=backend, ranks=ranks, iters=iters, warmup=warmup, timeout_s=timeout_s)
    if sweep_file is None:  # a run: the limits of this host, before any rank starts
        _check_sweep_options(spec)
    if out is not None:
        check_output_path(out)
    env = dict(os.environ)
    if launcher_world() is None and backend == "gloo":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the embedded world's ranks talk over loopback
    partial_note, source, table = "", None, None
    if sweep_file is not None:
        table, partial_note, source = _load_sweep(sweep_file, allow_wrong)
    meta = dict(command="fabric validate", expect=link.name, backend=backend, collective=collective, iters=iters,
                warmup=warmup, timing="blocking")
    try:
        with _validate_progress(spec, sweep_file is None) as on_row:
            done = validate(link, spec, table, env, on_row=on_row)
    except WorldFailed as failure:  # no verdict on a run that ended early; its rows saved, complete: false
        save_partial(failure, out, dict(meta, ranks=ranks, verdict=None))
        raise
    if done is None:
        return
    _report_validation(done, link, meta, out, as_json, partial_note, source, ranks)
    sys.exit(0 if done.assessment.verdict == "PASS" else 1)


def _validate_progress(spec, running: bool):
    """The sweep's progress bar when validate runs one; nothing when it judges a file."""
    import contextlib

    from commbench.cli.base import row_progress

    if not running:
        return contextlib.nullcontext()
    return row_progress(spec.rows, f"{spec.collective}: {len(spec.sizes)} sizes on {spec.backend}",
                        lambda row: f"{row['msg_bytes']:,} B {row['time_us_p50']:,.1f} us")


def _report_validation(done, link, meta: dict, out, as_json: bool, partial_note: str, source, ranks: int) -> None:
    """Save the judged sweep with its verdict (before anything is printed), then print or emit JSON."""
    from commbench.fabric.validate import bands_frame, findings_frame
    from commbench.results import environment_metadata, save_table

    found, frame, findings = done.assessment, done.frame, done.findings
    for caution in found.warnings:
        click.echo(f"warning: {caution}", err=True)
    if out and frame is not None:
        save_table(frame, out, environment_metadata(**meta, launcher=done.launcher, verdict=found.verdict,
                                                    hosts=frame.attrs.get("hosts", []),
                                                    ranks=int(frame["ranks"].iloc[0]) if len(frame) else ranks,
                                                    bands=bands_frame(found.bands).to_dict(orient="records"),
                                                    reasons=list(found.reasons)))
    if as_json:
        click.echo(dumps({"verdict": found.verdict, "expect": link.name, "partial": partial_note or None, "source": source,
                          "preflight": _records(findings_frame(findings)),
                          "bands": _records(bands_frame(found.bands)),
                          "fit": [] if found.fitted is None else _records(found.fitted),
                          "warnings": list(found.warnings), "reasons": list(found.reasons),
                          "rows": [] if frame is None else _records(frame)}))
        return
    if source:
        click.echo(f"read {source}", err=True)  # on stderr: piped stdout stays data
    _print_validation(found, findings, frame, partial_note, link,
                      f"{meta['collective']} sweep ({meta['backend']}, {done.launcher})")


def _load_sweep(sweep_file: str, allow_wrong: bool = False):
    """A saved sweep or a nccl-tests / OSU log, checked; a note when it is partial (complete: false
    in its metadata); and which format it was read as."""
    from commbench.fabric import check_sweep_table
    from commbench.importers import read_sweep

    frame, meta_in, source = read_sweep(sweep_file)
    frame = check_sweep_table(frame, sweep_file)
    if not allow_wrong:
        from commbench.fabric import refuse_wrong

        refuse_wrong(frame, sweep_file)
    note = ""
    if meta_in.get("complete") is False:
        note = (f"{sweep_file} is a partial sweep (complete: false, {meta_in.get('error', 'the run ended early')}):"
                f" judged on the {len(frame)} sizes it holds")
    return frame, note, source


def _print_validation(found, findings, frame, partial_note: str, link, title: str) -> None:
    from rich.markup import escape

    from commbench.fabric.validate import bands_frame, findings_frame

    if findings:
        print_frame(findings_frame(findings), "Preflight")
    if partial_note:
        console.print(f"[yellow]warning:[/] {escape(partial_note)}", highlight=False)
    if frame is not None:
        print_frame(frame[[c for c in ("msg_bytes", "time_us_p50", "time_us_p99", "busbw_gbps", "wrong") if c in frame]],
                    title, {"msg_bytes": "{:,.0f}", "time_us_p50": "{:,.1f}", "time_us_p99": "{:,.1f}",
                            "busbw_gbps": "{:.4f}"})
        print_frame(bands_frame(found.bands).drop(columns=["diagnosis"]), f"Bands against {link.name} "
                    f"({link.bandwidth_gbps:.4g} GB/s per direction)", {"measured": "{:.4g}", "expected": "{:.4g}",
                                                                      "threshold": "{:.4g}"})
    if found.fitted is not None:
        print_frame(found.fitted, "Fitted t(S) = alpha + S x busbw factor / busbw (95% confidence intervals)",
                    {"from_bytes": "{:,.0f}", "up_to_bytes": "{:,.0f}", "alpha_us": "{:.1f}", "busbw_gbps": "{:.4g}"})
    for b in found.bands:
        if b.diagnosis:
            console.print(f"diagnosis ({b.band}): {b.diagnosis}", highlight=False)
    for f in findings:
        if f.status == "fail":
            console.print(escape(f"preflight: {f.check}={f.value}: {f.note}"), highlight=False)
    for reason in found.reasons:
        console.print(escape(f"FAIL because {reason}"), highlight=False)
    skipped = [b.band for b in found.bands if b.status == "SKIP"]
    coverage = (f" ({len(found.bands) - len(skipped)} of {len(found.bands)} bands measured; no sizes in "
                f"{', '.join(skipped)}: the verdict does not cover them)") if skipped else ""
    console.print(f"[bold]{found.verdict}[/]: fabric against {link.name}{escape(coverage)}", highlight=False)


