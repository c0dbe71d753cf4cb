"""The accuracy report: every published figure against its prediction (commbench accuracy --report)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from commbench.fabric import FabricModel
from commbench.report.common import _machine_table, _md_table, _plt, _save, command_line
from commbench.results import environment_metadata



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
