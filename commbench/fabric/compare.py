"""Compare sweeps of one collective: per size, how much slower or faster, and whether it is significant.

What pyperf's `compare_to` is to Python benchmarks, for commbench sweeps and the logs users bring
(nccl-tests text or -J JSON, OSU; read by commbench.logs). The first file is the baseline; each
other file is compared with it on the sizes both hold:

    ratio = time_B / time_A    (the led figure: commbench's p50 of per-call samples, nccl-tests' mean
                                of back-to-back iterations, OSU's average latency)
    change_pct = (ratio - 1) x 100     positive: B is slower at that size
    busbw_ratio = busbw_B / busbw_A    (differs from 1 / ratio only when the rank counts differ)

Significance, at P_THRESHOLD two-sided, with what the files hold:
- raw samples in both (commbench sweep tables' samples_us, nccl-tests -J per-iteration times): the
  Mann-Whitney U test (scipy.stats.mannwhitneyu), which suits a p50 figure and bimodal samples;
- a mean, a spread and a count in both (nccl-tests 2.19+ `-I 1` text: the time is the mean of
  `iters` iterations and cv% their standard deviation / mean; or samples on one side): Welch's t
  test from those statistics (scipy.stats.ttest_ind_from_stats, equal_var=False);
- neither: the ratio alone, and the row says so (`test` = "none").
A size regressed when change_pct > PCT (`--fail-above PCT`) and the test did not find the change
insignificant (an untested size counts: a CI gate must not pass on missing evidence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from commbench import CommbenchError

P_THRESHOLD = 0.05  # two-sided significance level of both tests
SAMPLE_COLUMNS = ("samples_us",)  # per-call (commbench) or per-iteration (nccl-tests -J) times, us


@dataclass(frozen=True)
class Sweep:
    """One file's out-of-place rows of one collective, indexed by msg_bytes."""

    label: str
    frame: pd.DataFrame
    meta: dict
    source: str

    @property
    def collective(self) -> str:
        return str(self.frame["collective"].iloc[0])

    @property
    def ranks(self) -> int:
        return int(self.frame["ranks"].iloc[0])


def load_sweep(path: str | Path, collective: str | None = None, run: int | None = None,
               ranks: int | None = None) -> Sweep:
    """A saved sweep or a tool log (commbench.logs), reduced to one collective; one-line refusals."""
    from commbench.fabric.fit import check_sweep_table
    from commbench.logs import read_sweep

    path = Path(path)
    frame, meta, source = read_sweep(path, collective=collective, ranks=ranks, run=run)
    if collective is not None and "collective" in frame.columns:
        frame = frame[frame["collective"] == collective]
        if frame.empty:
            raise CommbenchError(f"{path}: no {collective} rows")
    frame = check_sweep_table(frame, str(path))
    names = list(dict.fromkeys(frame["collective"]))
    if len(names) > 1:
        raise CommbenchError(f"{path} holds {', '.join(names)}; compare needs one collective: choose it with --collective NAME")
    if frame["msg_bytes"].duplicated().any():
        size = int(frame["msg_bytes"][frame["msg_bytes"].duplicated()].iloc[0])
        kinds = [c for c in ("type", "redop", "run", "timing") if c in frame.columns and frame[c].nunique() > 1]
        raise CommbenchError(f"{path}: several rows of {size} B ({', '.join(kinds) or 'repeated sizes'} differ); "
                             "compare needs one row per size: choose a run with --run N or save one sweep per file")
    return Sweep(path.name, frame.set_index("msg_bytes", drop=False).sort_index(), meta, source)


def _stats(sweep: Sweep, size) -> tuple[np.ndarray | None, tuple[float, float, int] | None]:
    """(raw samples, (mean, standard deviation, count)) of one size where the file holds them."""
    row = sweep.frame.loc[size]
    for col in SAMPLE_COLUMNS:
        values = row.get(col) if col in row.index else None
        if isinstance(values, (list, tuple, np.ndarray)) and len(values) >= 2:
            arr = np.asarray(values, dtype=float)
            return arr, (float(arr.mean()), float(arr.std(ddof=1)), len(arr))
    iters = sweep.meta.get("iters")
    cv = row.get("cv_pct") if "cv_pct" in row.index else None
    try:
        n = int(iters) if iters is not None else 0
    except (TypeError, ValueError):
        n = 0
    if cv is not None and n >= 2 and math.isfinite(float(cv)):
        mean = float(row["time_us"] if "time_us" in row.index else row["time_us_p50"])
        return None, (mean, float(cv) / 100 * mean, n)
    return None, None


def significance(a: Sweep, b: Sweep, size) -> tuple[str, float]:
    """(test name, two-sided p) for one size; ("none", NaN) where the files hold no spread."""
    from scipy import stats

    (sa, ma), (sb, mb) = _stats(a, size), _stats(b, size)
    if sa is not None and sb is not None:
        if np.array_equal(np.sort(sa), np.sort(sb)):
            return "mann-whitney", 1.0
        return "mann-whitney", float(stats.mannwhitneyu(sa, sb, alternative="two-sided").pvalue)
    if ma is not None and mb is not None:
        if ma[1] == 0 and mb[1] == 0:
            return "welch", 1.0 if ma[0] == mb[0] else 0.0
        result = stats.ttest_ind_from_stats(ma[0], ma[1], ma[2], mb[0], mb[1], mb[2], equal_var=False)
        return "welch", float(result.pvalue)
    return "none", math.nan


def compare(sweeps: list[Sweep]) -> tuple[pd.DataFrame, list[str]]:
    """Rows (baseline, candidate, msg_bytes, figures, ratio, change_pct, busbw_ratio, test, p_value,
    significant) for each candidate against sweeps[0], and notes on what differs between the files."""
    if len(sweeps) < 2:
        raise CommbenchError("compare needs two or more sweeps: BASELINE CANDIDATE [CANDIDATE ...]")
    base, notes, rows = sweeps[0], [], []
    for other in sweeps[1:]:
        if other.collective != base.collective:
            raise CommbenchError(f"{base.label} is {base.collective}, {other.label} is {other.collective}: compare needs "
                                 "one collective (--collective NAME)")
        if other.ranks != base.ranks:
            notes.append(f"{other.label}: {other.ranks} ranks against {base.ranks} in {base.label}; busbw_ratio "
                         "accounts for the rank count, the time ratio does not")
        timing = tuple(str(s.meta.get("timing") or "").split(";")[0] for s in (base, other))
        if timing[0] and timing[1] and timing[0] != timing[1]:
            notes.append(f"{base.label} and {other.label} time differently ({timing[0]!r} vs {timing[1]!r}): "
                         "their ratio mixes the two kinds of figure")
        common = base.frame.index.intersection(other.frame.index)
        if common.empty:
            raise CommbenchError(f"{base.label} and {other.label} share no message size; compare needs the same sizes")
        only = sorted(set(base.frame.index) ^ set(other.frame.index))
        if only:
            notes.append(f"{other.label}: {len(only)} sizes not in both files left out ({', '.join(f'{int(s)}' for s in only[:6])}"
                         f"{' ...' if len(only) > 6 else ''})")
        for size in common:
            ta, tb = float(base.frame.at[size, "time_us_p50"]), float(other.frame.at[size, "time_us_p50"])
            test, p = significance(base, other, size)
            ratio = tb / ta
            rows.append({"baseline": base.label, "candidate": other.label, "collective": base.collective,
                         "msg_bytes": int(size), "baseline_time_us": ta, "time_us": tb, "ratio": ratio,
                         "change_pct": (ratio - 1) * 100,
                         "busbw_ratio": _busbw(other, size, tb) / _busbw(base, size, ta),
                         "test": test, "p_value": p, "significant": None if test == "none" else bool(p < P_THRESHOLD)})
        if all(r["test"] == "none" for r in rows if r["candidate"] == other.label):
            notes.append(f"{base.label} vs {other.label}: no samples or spread in the files, the ratio alone "
                         "(commbench sweep tables keep samples; nccl-tests 2.19+ -I 1 prints the spread)")
    return pd.DataFrame(rows), notes


def _busbw(sweep: Sweep, size, time_us: float) -> float:
    """busbw from the time itself (the files round busbw to 0.01 GB/s, 0.00 at small sizes); NaN on one rank."""
    from commbench.collectives import get_collective

    busbw = get_collective(sweep.collective).busbw_gbps(float(size), time_us * 1e-6, sweep.ranks)
    return busbw if busbw > 0 else math.nan


def check_fail_above(fail_above_pct) -> float:
    if not (isinstance(fail_above_pct, (int, float)) and math.isfinite(fail_above_pct) and fail_above_pct >= 0):
        raise CommbenchError(f"--fail-above {fail_above_pct!r}: give a percentage >= 0, e.g. 5")
    return float(fail_above_pct)


def regressions(table: pd.DataFrame, fail_above_pct: float) -> pd.DataFrame:
    """Rows slower by more than fail_above_pct where the change was not found insignificant."""
    fail_above_pct = check_fail_above(fail_above_pct)
    slower = table["change_pct"] > fail_above_pct
    return table[slower & (table["significant"].map(lambda s: s is not False))]
