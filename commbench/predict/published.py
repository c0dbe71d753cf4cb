"""Published and measured end-to-end figures: the shipped dev set and a user's own result files.

The shipped table (published/figures.csv) holds every figure commbench is checked against, one row
per figure with its setup (recipe, hardware, tp, pp, concurrency, ISL/OSL, metric) and its source.
End-to-end figures measure the prediction's error; they never set constants. The one exception the
project allows (docs/sources.md#calibration) is marked in the `tuned` column: the figures a
named constant was chosen on, so reports can set them apart from figures the model predicts.

A user's files are read by content: a `vllm bench serve --save-result` JSON (field names of
vllm/benchmarks/serve.py), or a CSV/JSON/Parquet table with the columns of FIGURE_COLUMNS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from commbench import CommbenchError
from commbench.data import data_dir
from commbench.predict.vllm_bench import BENCH_METRICS

FIGURE_COLUMNS = ("source", "citation", "role", "tuned", "recipe", "hardware", "model", "tp", "pp", "batch",
                  "isl", "osl", "scenario", "metric", "value")
REQUIRED_COLUMNS = ("model", "batch", "isl", "osl", "metric", "value")

#: Metrics as `vllm bench serve` names them (BENCH_METRICS, vllm/benchmarks/serve.py), plus decode_tok_s: steady
#: decode tokens per second over all concurrent sequences (batch / TPOT), the single-box benchmarks' figure.
METRICS = ("decode_tok_s", "output_tok_s", *BENCH_METRICS)
LOWER_IS_BETTER = tuple(m for m in METRICS if m.endswith("_ms"))


@dataclass(frozen=True)
class PublishedRow:
    """A TP=2 or PP=2 output-throughput figure of the two-Spark review (docs/sources.md#calibration)."""

    model: str
    mode: str
    batch: int
    scenario: str
    output_tok_s: float
    source: str


def shipped_figures() -> pd.DataFrame:
    """published/figures.csv: the dev set and the review's rows, with their sources."""
    return check_figures(pd.read_csv(data_dir("published") / "figures.csv", keep_default_na=False), "published/figures.csv")


def review_rows() -> tuple[PublishedRow, ...]:
    """The review's rows as (model, mode, batch, scenario, output tok/s)."""
    frame = shipped_figures()
    frame = frame[frame.role == "review"]
    return tuple(PublishedRow(r.model, "tp" if r.pp == 1 else "pp", int(r.batch), r.scenario, float(r.value), r.citation)
                 for r in frame.itertuples())


def check_figures(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Fill optional columns, validate types and metrics; one-line errors naming the file and field."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CommbenchError(f"{name}: missing columns {', '.join(missing)}; a figures table needs "
                             f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(c for c in FIGURE_COLUMNS if c not in REQUIRED_COLUMNS)})")
    unknown = sorted(set(frame.columns) - set(FIGURE_COLUMNS) - {"output_tok_s"})
    if unknown:
        raise CommbenchError(f"{name}: unknown columns {', '.join(unknown)}; valid: {', '.join(FIGURE_COLUMNS)}")
    frame = frame.copy()
    defaults = {"source": Path(name).name, "citation": name, "role": "user", "tuned": "", "recipe": "checkpoint",
                "hardware": "dgx-spark", "tp": 1, "pp": 1, "scenario": ""}
    for col, value in defaults.items():
        if col not in frame.columns:
            frame[col] = value
    for col in ("tp", "pp", "batch", "isl", "osl"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or (values <= 0).any() or (values % 1 != 0).any():
            bad = frame[col][values.isna() | (values <= 0) | (values % 1 != 0)].iloc[0]
            raise CommbenchError(f"{name}: {col} = {bad!r} must be a positive whole number")
        frame[col] = values.astype(int)
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad = ~((values > 0) & (values < float("inf")))  # NaN compares False: caught too
    if bad.any():
        raise CommbenchError(f"{name}: value = {frame['value'][bad].iloc[0]} must be a positive finite number")
    frame["value"] = values.astype(float)
    bad = sorted(set(frame.metric) - set(METRICS))
    if bad:
        raise CommbenchError(f"{name}: unknown metric {bad[0]!r}; valid: {', '.join(METRICS)}")
    frame["tuned"] = frame["tuned"].fillna("").astype(str)
    return frame[list(FIGURE_COLUMNS)]


def read_vllm_bench(path: str | Path, notes: list | None = None, docs: list | None = None) -> pd.DataFrame:
    """A `vllm bench serve --save-result` / `--append-result` JSON as figure rows, one per metric each
    run reports (commbench.predict.vllm_bench: keys of 0.11.0 and the current release).

    Setup: model from model_id, batch from max_concurrency, ISL/OSL from total_input_tokens /
    completed and total_output_tokens / completed; tp, pp, hardware and recipe from keys the user
    added with `--metadata tp=2 pp=1 hardware=dgx-spark recipe=checkpoint` (defaults 1, 1,
    dgx-spark, checkpoint, said in `notes`; tensor_parallel_size / pipeline_parallel_size are read too).
    `docs`: the file's JSON documents where the caller has parsed them already.
    """
    from commbench.predict import vllm_bench

    path = Path(path)
    if docs is None:
        docs = vllm_bench.json_documents(path, _read_text(path))
    frame, said = vllm_bench.read_results(path, docs)
    if notes is not None:
        notes.extend(said)
    return check_figures(frame, str(path))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CommbenchError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommbenchError(f"{path}: not readable ({exc.strerror})") from None
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8-sig")  # a byte-order mark (a Windows editor's save) is not part of the JSON
    except UnicodeDecodeError:
        raise CommbenchError(f"{path}: not text; expected a `vllm bench serve --save-result` JSON or a figures "
                             "table (.csv/.json/.parquet)") from None


def load_figures(path: str | Path, notes: list | None = None, skip_side_files: bool = False) -> pd.DataFrame:
    """A user's file, detected by content: a vllm bench serve JSON (one run, or several appended), or a
    figures table (CSV/JSON/Parquet). What was read by default is appended to `notes`; vLLM's
    `.pytorch.json` side file is refused in one line, or with skip_side_files noted and read as no rows."""
    from commbench.predict import vllm_bench

    path = Path(path)
    if path.suffix == ".json":
        docs = vllm_bench.json_documents(path, _read_text(path))
        if len(docs) == 1 and vllm_bench.is_side_file(docs[0]):
            note = vllm_bench.side_file_note(path)
            if not skip_side_files:
                raise CommbenchError(note)
            if notes is not None:
                notes.append(note)
            return pd.DataFrame(columns=list(FIGURE_COLUMNS))
        if not (len(docs) == 1 and isinstance(docs[0], dict) and "rows" in docs[0]):
            return read_vllm_bench(path, notes, docs)
    from commbench.results import load_table

    if not path.is_file():
        raise CommbenchError(f"{path}: no such file")
    if path.suffix not in (".csv", ".json", ".parquet"):
        raise CommbenchError(f"{path}: published figures are a `vllm bench serve --save-result` JSON or a figures table "
                             f"(.csv/.json/.parquet), not {path.suffix or 'a file without suffix'}; a sweep or "
                             "nccl-tests/OSU log goes to --fabric")
    frame = load_table(path)[0]
    return check_figures(_from_mode_table(frame), str(path))


def _from_mode_table(frame: pd.DataFrame) -> pd.DataFrame:
    """predict --published's first form (model, mode, batch, scenario, output_tok_s) as figure rows."""
    from commbench.traffic.workload import SCENARIOS

    if "value" in frame.columns or "output_tok_s" not in frame.columns:
        return frame
    frame = frame.assign(metric="output_tok_s", value=frame.pop("output_tok_s"))
    if "mode" in frame.columns:
        mode = frame.pop("mode").astype(str)
        frame["tp"] = frame.get("tp", mode.map({"tp": 2}).fillna(1))
        frame["pp"] = frame.get("pp", mode.map({"pp": 2}).fillna(1))
    if "scenario" in frame.columns:
        bad = sorted(set(frame.scenario) - set(SCENARIOS)) if "isl" not in frame.columns else []
        if bad:
            raise CommbenchError(f"unknown scenario {bad[0]!r}; valid: {', '.join(SCENARIOS)} (or give isl and osl columns)")
        frame["isl"] = frame.get("isl", frame.scenario.map(lambda s: SCENARIOS[s][0]))
        frame["osl"] = frame.get("osl", frame.scenario.map(lambda s: SCENARIOS[s][1]))
    return frame
