"""compare: sweeps or logs of one collective against a baseline, per size, with significance (a CI gate)."""

from __future__ import annotations

import sys

import click

from commbench.cli.base import _records, dumps, main, print_frame


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--collective", default=None, help="The collective to compare where a file holds several.")
@click.option("--run", type=int, default=None, help="Run N (1-based) of a log that holds several runs.")
@click.option("--ranks", type=int, default=None, help="Rank count of a log that does not say it (OSU without a launcher line).")
@click.option("--fail-above", "fail_above", type=float, default=None,
              help="Exit 1 when a size is slower than the baseline by more than PCT percent (and the change is "
                   "significant, or the files hold no samples to test it): a CI gate.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"rows\", \"notes\", \"regressed\"} as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the per-size table (.csv/.json/.parquet).")
def compare(files, collective, run, ranks, fail_above, as_json, out):
    """Compare FILES (the first is the baseline) size by size: time ratio, busbw ratio, significance.

    Each file is a commbench sweep table or a tool log (nccl-tests text or -J JSON, OSU). The led
    figure is the time (commbench's p50, nccl-tests' mean); ratio = candidate / baseline, so above
    1 is slower. Significance at p < 0.05: Mann-Whitney U on raw samples (commbench tables,
    nccl-tests -J), Welch's t test on mean, spread and count (nccl-tests -I 1), else the ratio alone,
    said. Exit status: 0, 1 when --fail-above finds a regressed size, 2 bad input.

    \b
    Example:
      commbench compare before.csv after.csv
      commbench compare main.log pr.log --fail-above 5
    """
    from commbench.fabric.compare import check_fail_above, compare as compare_sweeps, load_sweep, regressions
    from commbench.results import check_output_path, environment_metadata, save_table

    if out:
        check_output_path(out)
    if fail_above is not None:
        check_fail_above(fail_above)  # before any file is read
    table, notes = compare_sweeps([load_sweep(f, collective, run, ranks) for f in files])
    regressed = regressions(table, fail_above) if fail_above is not None else table.iloc[0:0]
    if out:
        save_table(table, out, environment_metadata(command="compare", files=list(files), notes=notes,
                                                    fail_above_pct=fail_above, regressed=len(regressed)))
    if as_json:
        click.echo(dumps({"rows": _records(table), "notes": notes, "fail_above_pct": fail_above,
                          "regressed": [int(s) for s in regressed["msg_bytes"]] if len(regressed) else []}))
    else:
        for note in notes:
            click.echo(f"note: {note}", err=True)
        shown = table.assign(significant=table["significant"].map({True: "yes", False: "no", None: "untested"}))
        print_frame(shown.drop(columns=["collective"]), f"{table['collective'].iloc[0]}: candidate / baseline per size "
                    "(ratio above 1: slower; Mann-Whitney on samples, Welch on mean and spread, p < 0.05)",
                    {"msg_bytes": "{:,.0f}", "baseline_time_us": "{:,.2f}", "time_us": "{:,.2f}", "ratio": "{:.3f}",
                     "change_pct": "{:+.1f}", "busbw_ratio": "{:.3f}", "p_value": "{:.2g}"})
    if fail_above is not None and len(regressed):
        worst = regressed.loc[regressed["change_pct"].idxmax()]
        click.echo(f"regressed: {len(regressed)} size(s) slower by more than {fail_above:g}% "
                   f"({', '.join(f'{int(r.msg_bytes)} B {r.change_pct:+.1f}% in {r.candidate}' for r in regressed.itertuples())[:400]}); "
                   f"worst {int(worst.msg_bytes)} B {worst.change_pct:+.1f}%", err=True)
        sys.exit(1)
