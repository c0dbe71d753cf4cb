"""Predictions over a grid: the serving model (commbench.predict.serving.predict_row) over models x
scenarios x batches x modes, the weights served as a recipe says, what-ifs switched, and the
published or measured output tok/s set beside the rows they match (published/figures.csv, or a
user's figures), with the error in percent.
"""

from __future__ import annotations

import functools
import itertools

import pandas as pd

from commbench import CommbenchError
from commbench.fabric import FabricModel
from commbench.predict.hardware import HardwareProfile
from commbench.predict.published import shipped_figures
from commbench.predict.recipes import apply_recipe, load_recipe
from commbench.predict.serving import predict_row
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.workload import SCENARIOS, Workload


def parse_modes(text: str) -> list[str]:
    """'both' (tp and pp), or a comma list of tp, pp and tp+pp (tensor inside pipeline stages)."""
    if text == "both":
        return ["tp", "pp"]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes or [text]:
        if mode not in ("tp", "pp", "tp+pp"):
            raise CommbenchError(f"unknown mode {mode!r}; valid: tp, pp, tp+pp, both (or a comma list)")
    return modes


def plan_for(card, mode: str, tp: int | None, pp: int | None) -> ParallelPlan:
    """tp: tp ranks (default 2); pp: pp stages (default 2); tp+pp: both (default 2 x 2)."""
    if mode == "tp+pp":
        return ParallelPlan(card, tp=2 if tp is None else tp, pp=2 if pp is None else pp)
    return ParallelPlan.for_mode(card, mode, tp=tp if mode == "tp" else None, pp=pp if mode == "pp" else None)


def parse_scenarios(text: str) -> list[str]:
    names = list(SCENARIOS) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in SCENARIOS:
            raise CommbenchError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}, all")
    return names


FIGURE_KEY = ("model", "tp", "pp", "batch", "isl", "osl", "hardware", "recipe")


def figure_index(figures: pd.DataFrame | None) -> dict:
    """Output-throughput figures keyed by setup (FIGURE_KEY), for the lookups of published_for."""
    if figures is None:
        return {}
    sel = figures[figures.metric.isin(["output_tok_s", "output_throughput"])]
    return {tuple(key): float(value) for key, value in zip(sel[list(FIGURE_KEY)].itertuples(index=False), sel.value)}


def published_for(row: dict, extra: dict | None = None) -> float | None:
    """The measured or published output tok/s for a predicted row, or None.

    Looked up in `extra` (a user's figures, indexed by figure_index) and then in the shipped
    figures (published/figures.csv), matching model, tp, pp, batch, ISL/OSL, hardware and recipe;
    only output-throughput figures compare with a full-run prediction.
    """
    key = tuple(row.get(k, "checkpoint") if k == "recipe" else row[k] for k in FIGURE_KEY)
    for index in (extra or {}, _shipped()):
        if key in index:
            return index[key]
    return None


@functools.cache
def _shipped() -> dict:
    """figure_index of the shipped figures, read once per process."""
    return figure_index(shipped_figures())


def predict_grid(models: list[str], hardware: HardwareProfile, fabric: FabricModel, modes: list[str],
                 batches: list[int], scenarios: list[str], isl: int | None = None, osl: int | None = None,
                 token_budget: int = 8192, tp: int | None = None, pp: int | None = None,
                 published: pd.DataFrame | None = None, recipe: str = "checkpoint",
                 what_if: dict | None = None) -> pd.DataFrame:
    """Predicted rows over models x scenarios x batches x modes, served as `recipe` says with the
    what-ifs (commbench.predict.mechanisms.parse_what_ifs) switched."""
    from commbench.predict.whatif import apply_what_ifs

    rows = []
    served = load_recipe(recipe)
    engine, fabric = apply_what_ifs(served.engine, fabric, what_if or {})
    extra = figure_index(published)
    for name in models:
        card = apply_recipe(load_model_card(name), served)
        plans = {mode: plan_for(card, mode, tp, pp) for mode in modes}
        for scenario, batch, mode in itertools.product(scenarios, batches, modes):
            w = Workload.from_options(batch, scenario, isl, osl, token_budget)
            row = predict_row(plans[mode], w, hardware, fabric, engine)
            figure = published_for(row, extra)
            row["published_tok_s"] = figure
            row["error_pct"] = (row["output_tok_s"] / figure - 1) * 100 if figure else None
            rows.append(row)
    return pd.DataFrame(rows)
