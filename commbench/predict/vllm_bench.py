"""`vllm bench serve --save-result` files as figure rows: every key set vLLM has written, or a one-line refusal.

What the files hold, read from vLLM's own code (vllm-project/vllm, `vllm/benchmarks/serve.py`,
`benchmark()` and `main()`; before the `vllm bench` CLI, `benchmarks/benchmark_serving.py`):

- setup: date, endpoint_type (0.11.0 on), backend, label, model_id, tokenizer_id, num_prompts, the
  `--metadata KEY=VALUE` pairs as strings (`tp`, `pp`, `hardware`, `recipe` are read here), request_rate
  (the string "inf" or a number), burstiness, max_concurrency (null without `--max-concurrency`), and
  ramp_up_strategy / ramp_up_start_rps / ramp_up_end_rps for a ramp;
- results: duration, completed, total_input_tokens, total_output_tokens, request_throughput,
  request_goodput (null without `--goodput`; spelt `request_goodput:` in older benchmark_serving.py),
  output_throughput, total_token_throughput, max_output_tokens_per_s, max_concurrent_requests, and per
  `--percentile-metrics` (default ttft,tpot,itl) mean_/median_/std_/pNN_{metric}_ms for each
  `--metric-percentiles` value (default 99); the current release adds failed, rtfx, the per-request
  lists latencies and queue_times, and {stat}_client_queue_time_ms / _e2el_including_client_queue_ms;
- a pooling (embedding) run has no output tokens: no total_output_tokens nor output_throughput.

A key a version does not write is an absent metric, never an error. `--append-result` appends each run
as one more JSON document after a newline: each document is read as its own run. When
SAVE_TO_PYTORCH_BENCHMARK_FORMAT is set, vLLM also writes `NAME.pytorch.json` beside the result (a
list of {benchmark, model, metric} records, vllm/benchmarks/lib/utils.py
convert_to_pytorch_benchmark_format): a copy of the same run, skipped with a note.

commbench predicts B requests that all start together (commbench.predict.serving), so a run is read
only with `--max-concurrency B`: without it, requests arrive at request_rate (open loop) and no fixed
B exists; such a file is refused in one line naming `--max-concurrency`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from commbench import CommbenchError

#: The metrics commbench predicts, as `vllm bench serve` names them (vllm/benchmarks/serve.py).
BENCH_METRICS = ("output_throughput", "total_token_throughput", "request_throughput", "max_output_tokens_per_s",
                 *(f"{stat}_{name}_ms" for name in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "median", "p99")))
SIGNATURE = ("model_id", "completed", "duration")  # keys every version writes, pooling runs too
RENAMED = {"request_goodput:": "request_goodput"}  # older benchmark_serving.py's misspelt key
SIDE_FILE_KEYS = {"benchmark", "model", "metric"}  # a PyTorch benchmark-format record (.pytorch.json)


def looks_like_result(doc) -> bool:
    return isinstance(doc, dict) and all(k in doc for k in SIGNATURE)


def is_side_file(doc) -> bool:
    """The `.pytorch.json` records vLLM writes beside a result (a JSON list of {benchmark, model, metric})."""
    return isinstance(doc, list) and bool(doc) and all(isinstance(r, dict) and SIDE_FILE_KEYS <= set(r) for r in doc)


def json_documents(path: Path, text: str) -> list:
    """Every JSON document in `text`, one after another (`--append-result` writes several, newline apart);
    a document cut off or followed by something that is not JSON is a one-line error naming where."""
    decoder = json.JSONDecoder()
    docs, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            where = f"document {len(docs) + 1}" if docs else "the file"
            raise CommbenchError(f"{path}: {where} is not complete JSON at line {exc.lineno} column {exc.colno} "
                                 f"({exc.msg}); a cut-off or edited result file") from None
        except RecursionError:
            raise CommbenchError(f"{path}: nested deeper than the JSON reader goes; not a `vllm bench serve` "
                                 "result") from None
        docs.append(doc)
    if not docs:
        raise CommbenchError(f"{path}: empty; expected a `vllm bench serve --save-result` JSON or a figures table")
    return docs


def _number(doc: dict, key: str):
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _model_name(model_id: str) -> str:
    """'openai/gpt-oss-120b' -> 'gpt-oss-120b'; 'meta-llama/Llama-3.1-8B-Instruct' -> 'llama-3.1-8b-instruct'."""
    return str(model_id).rstrip("/").split("/")[-1].lower()


def run_rows(path: Path, doc: dict, index: int, count: int) -> list[dict]:
    """One run (one JSON document) as figure rows, one per metric in BENCH_METRICS it reports."""
    doc = {RENAMED.get(k, k): v for k, v in doc.items()}
    where = f"{path}" + (f" document {index} of {count}" if count > 1 else "")
    completed = _number(doc, "completed")
    if not completed or completed <= 0:
        raise CommbenchError(f"{where}: completed = {doc.get('completed')!r}; a run with no completed request has no figures")
    if "total_output_tokens" not in doc and "output_throughput" not in doc:
        raise CommbenchError(f"{where}: a pooling (embedding) run, no output tokens; commbench predicts generation "
                             "runs (vllm bench serve on a generating model)")
    if doc.get("ramp_up_strategy"):
        raise CommbenchError(f"{where}: request rate ramped ({doc['ramp_up_strategy']}); commbench models B concurrent "
                             "requests: run vllm bench serve with --max-concurrency B and no --ramp-up-strategy")
    batch = doc.get("max_concurrency")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        rate = doc.get("request_rate", "?")
        said = f"max_concurrency = {batch!r}" if "max_concurrency" in doc else \
            "no max_concurrency key (a benchmark_serving.py from before --max-concurrency)"
        raise CommbenchError(f"{where}: {said} (request_rate {rate}): no fixed number of requests "
                             "in flight; commbench models B concurrent requests, so run vllm bench serve with "
                             "--max-concurrency B")
    num_prompts = _number(doc, "num_prompts")
    if num_prompts:
        batch = min(batch, int(num_prompts))  # fewer prompts than slots: only num_prompts ever run at once
    tokens_in, tokens_out = _number(doc, "total_input_tokens"), _number(doc, "total_output_tokens")
    if tokens_in is None or tokens_out is None:
        raise CommbenchError(f"{where}: total_input_tokens / total_output_tokens missing or not numbers; "
                             "ISL and OSL come from them")
    setup = {
        "source": path.name, "role": "user", "tuned": "",
        "citation": f"{where} (vllm bench serve, {doc.get('date') or 'undated'})",
        "recipe": doc.get("recipe", "checkpoint"), "hardware": doc.get("hardware", "dgx-spark"),
        "model": _model_name(doc["model_id"]),
        "tp": doc.get("tp", doc.get("tensor_parallel_size", 1)), "pp": doc.get("pp", doc.get("pipeline_parallel_size", 1)),
        "batch": batch, "isl": max(1, round(tokens_in / completed)), "osl": max(1, round(tokens_out / completed)),
        "scenario": "",
    }
    values = {m: _number(doc, m) for m in BENCH_METRICS}
    return [{**setup, "metric": m, "value": v} for m, v in values.items() if v is not None and v > 0]


def file_notes(path: Path, runs: list[dict]) -> list[str]:
    """What was read by default rather than from the file, said once per file."""
    notes = []
    unsaid = [k for k, alt in (("tp", "tensor_parallel_size"), ("pp", "pipeline_parallel_size"), ("hardware", None))
              if not any(k in d or (alt and alt in d) for d in runs)]
    if unsaid:
        notes.append(f"{path}: no {', '.join(unsaid)} in the file (vllm bench serve records only --metadata): read as "
                     f"{', '.join({'tp': 'tp=1', 'pp': 'pp=1', 'hardware': 'hardware=dgx-spark'}[k] for k in unsaid)}; "
                     f"run it with --metadata {' '.join(f'{k}=...' for k in unsaid)} to say")
    failed = sum(_number(d, "failed") or 0 for d in runs)
    if failed:
        notes.append(f"{path}: {failed:g} failed requests; figures are vLLM's, over the completed ones")
    rates = {d.get("request_rate") for d in runs} - {"inf", None, math.inf}
    if rates:
        notes.append(f"{path}: request_rate {', '.join(map(str, sorted(rates, key=str)))} req/s: requests arrive over "
                     "time, so fewer than max_concurrency may run at once (commbench assumes all start together)")
    return notes


def read_results(path: Path, docs: list) -> tuple[pd.DataFrame, list[str]]:
    """The runs in a result file's documents as figure rows (for published.check_figures), and the notes to print.
    A JSON list of results (a sweep script's `json.dump([...])`) is its runs in order."""
    docs = [r for d in docs for r in (d if isinstance(d, list) and d and all(map(looks_like_result, d)) else [d])]
    runs = [d for d in docs if looks_like_result(d)]
    if len(runs) != len(docs):
        bad_index, bad = next((i, d) for i, d in enumerate(docs, 1) if not looks_like_result(d))
        missing = [k for k in SIGNATURE if k not in bad] if isinstance(bad, dict) else [f"an object, not a {type(bad).__name__}"]
        where = f"document {bad_index} of {len(docs)}" if len(docs) > 1 else "the file"
        raise CommbenchError(f"{path}: {where} is not a `vllm bench serve --save-result` JSON (missing "
                             f"{', '.join(missing)}) nor a figures table")
    rows = [r for i, d in enumerate(runs, 1) for r in run_rows(path, d, i, len(runs))]
    if not rows:
        raise CommbenchError(f"{path}: no metric commbench predicts ({', '.join(BENCH_METRICS[:4])}, ...) is in the file")
    return pd.DataFrame(rows), file_notes(path, runs)


def side_file_note(path: Path) -> str:
    result = path.with_name(path.name.removesuffix(".pytorch.json") + ".json")
    return (f"{path}: the PyTorch-benchmark copy vLLM writes beside a result (SAVE_TO_PYTORCH_BENCHMARK_FORMAT), "
            f"not read; give the result file {result.name}")
