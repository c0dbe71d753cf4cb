"""The measured sweep report: fits, plots and (with --expect) a verdict per size band."""

from __future__ import annotations

from pathlib import Path

from commbench.fabric import fit_sweep, check_sweep_table
from commbench.logs import provenance, read_sweep
from commbench.report.common import _machine_table, _md_table
from commbench.report.plots import plot_measured, plot_replay
from commbench.results import environment_metadata, load_table


def _source_sentence(path, meta_in: dict) -> str:
    """Who measured a table, where and how: a log's provenance, commbench's own metadata, or that
    the table carries none."""
    if provenance(meta_in):
        return provenance(meta_in)
    if not meta_in:
        return (f"a table without its metadata (no {Path(path).name}.meta.json beside it): who measured it, "
                "where and how is not recorded.")
    return (f"measured by `commbench sweep` ({meta_in.get('backend', '?')} backend, launcher "
            f"{meta_in.get('launcher', '?')}, {meta_in.get('ranks', '?')} ranks, {meta_in.get('iters', '?')} "
            f"iterations, timing {meta_in.get('timing', 'blocking')}) on host {meta_in.get('host', '?')} "
            f"({meta_in.get('cpu_count', '?')} CPUs).")


def sweep_report(sweep_files: list[str], out: Path, expect: str | None = None, command: str = "",
                 replay_file: str | None = None, title: str = "", allow_wrong: bool = False) -> Path:
    """A measured-fabric report: one or more saved sweeps (and a replay), fitted and judged. Rows with
    wrong > 0 are refused unless `allow_wrong`, as fabric fit and validate refuse them (refuse_wrong)."""
    from commbench.fabric.fit import refuse_wrong
    from commbench.links import parse_link
    from commbench.fabric.validate import bands_frame, judge

    loaded = []
    for path in sweep_files:
        frame, meta_in, _ = read_sweep(path)
        frame = check_sweep_table(frame, str(path))
        if not allow_wrong:
            refuse_wrong(frame, str(path))
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
                  f"`{path}`: " + _source_sentence(path, meta_in), "",
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
