"""Pieces every report shares: matplotlib on demand, a plot saved with its data, markdown tables,
the machine table and the regenerating command line."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from commbench import require



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
