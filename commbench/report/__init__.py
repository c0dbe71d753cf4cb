"""Reports: plots (PNG, with the plotted data beside them as CSV) and a report.md that renders on GitHub.

A model report predicts TP and PP on a hardware profile and fabric and shows:
    tokps_vs_batch      output tok/s vs batch, TP and PP, per workload, published points as markers
    breakdown           stacked time per output token by term, TP vs PP, at batch 1 and the top batch
    busbw_vs_size       the fabric's busbw curve against 200GbE, PCIe Gen5 x4/x16 lines, with markers
                        at the model's own message sizes (and measured sweep points when given)
    replay_sites        per-site communication time of a replay (when a replay table is given)
A sweep report fits and plots a measured sweep. Every report.md names the command that made it.

Modules: `model` (the predicted model report), `sweep` (measured sweeps), `accuracy` (published figures
against predictions), `plots` (every figure), `common` (markdown tables, saving, the command line).
"""

from commbench.report.accuracy import write_accuracy_report
from commbench.report.common import command_line
from commbench.report.model import BATCHES, model_report
from commbench.report.sweep import sweep_report

__all__ = ["BATCHES", "command_line", "model_report", "sweep_report", "write_accuracy_report"]
