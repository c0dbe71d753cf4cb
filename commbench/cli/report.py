"""report: a predicted model report or a measured fabric report, as report.md, PNG plots and CSV."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from commbench import CommbenchError
from commbench.cli.base import _parse_csv_ints, console, log_options, main


@main.command()
@log_options
@click.argument("model", required=False)
@click.option("--hardware", default="dgx-spark", show_default=True, help="Hardware profile for a model report.")
@click.option("--fabric", default=None, help="Fabric profile or sweep file (default: the hardware profile's).")
@click.option("--scenario", default="all", show_default=True, help="Comma-separated presets, or all.")
@click.option("--batch", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated concurrencies.")
@click.option("--sweep", "sweep_files", type=click.Path(dir_okay=False), multiple=True,
              help="A saved sweep (repeatable): alone, a measured-fabric report; with MODEL, measured points on the busbw plot.")
@click.option("--replay", "replay_file", type=click.Path(dir_okay=False), default=None,
              help="A saved replay (trace --replay --out) to plot per site.")
@click.option("--expect", default=None, help="With --sweep alone: judge it against this link.")
@click.option("--title", default="", help="Title of a measured-fabric report.")
@click.option("--allow-wrong", is_flag=True, help="With --sweep alone: fit and judge rows with wrong > 0 too (refused by "
              "default: their times measure a broken transfer).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder to write (default reports/MODEL or reports/SWEEP-NAME).")
def report(model, hardware, fabric, scenario, batch, sweep_files, replay_file, expect, title, allow_wrong, out):
    """Write a report folder: report.md with tables, PNG plots and their data as CSV.

    \b
    Example:
      commbench report gpt-oss-120b --hardware dgx-spark
      commbench report --sweep results/sweep.csv --out reports/my-fabric
    """
    from commbench.predict.grid import parse_scenarios
    from commbench.report import command_line, model_report, sweep_report

    if model is None and not sweep_files:
        raise CommbenchError("give a MODEL (a predicted report) or --sweep FILE (a fabric report)")
    if expect:
        from commbench.links import parse_link

        parse_link(expect)  # a bad --expect fails before any folder is made
    for f in (*sweep_files, replay_file):
        if f and not Path(f).is_file():
            raise CommbenchError(f"file {f!r} not found")
    from commbench import require
    from commbench.results import check_writable_folder

    require("matplotlib")  # the plots' extra, before any folder is made
    if out is not None:
        check_writable_folder(out)  # an unwritable or empty --out fails before any work
    if model is None:
        target = Path(out or Path("reports") / Path(sweep_files[0]).stem)
        args = ["report", *[x for f in sweep_files for x in ("--sweep", f)]]
        args += (["--replay", replay_file] if replay_file else []) + (["--expect", expect] if expect else [])
        args += (["--title", title] if title else []) + (["--allow-wrong"] if allow_wrong else []) + ["--out", target]
        with console.status(f"writing {target}"):
            path = sweep_report(list(sweep_files), target, expect, command_line(*args), replay_file, title,
                                allow_wrong=allow_wrong)
    else:
        scenarios = parse_scenarios(scenario)
        batches = tuple(_parse_csv_ints(batch, "--batch"))
        from commbench.predict.hardware import resolve_hardware
        from commbench.fabric import load_fabric
        from commbench.traffic.model_card import load_model_card

        name = load_model_card(model).name
        hw = resolve_hardware(hardware)
        load_fabric(fabric or hw.fabric)  # bad names fail before anything is written
        target = Path(out or Path("reports") / name)
        cautions: list[str] = []
        with console.status(f"writing {target}"):
            args = ["report", model, "--hardware", hardware, "--scenario", scenario, "--batch", batch]
            for flag, value in (("--fabric", fabric), ("--sweep", sweep_files[0] if sweep_files else None),
                                ("--replay", replay_file)):
                args += [flag, value] if value else []
            path = model_report(model, hardware, fabric, target, scenarios, batches,
                                sweep_files[0] if sweep_files else None, replay_file,
                                command_line(*args, "--out", target), warnings_out=cautions)
        for caution in cautions:
            click.echo(f"warning: {caution}", err=True)
    console.print(f"wrote {path} and its plots in {path.parent}", markup=False)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
