"""The bounds a workload must keep before it is traced or priced, each from the engine or the machine.

- Context: a request's ISL + OSL must fit the model's context length, derived from its config as
  vLLM derives `max_model_len` (vllm/config/model.py `_get_and_verify_max_len`, 0.11.0: the
  smallest of the length fields below, `model_max_length` where set, scaled by the RoPE scaling
  factor except for su/longrope/llama3 and Gemma 3; yarn from `original_max_position_embeddings`).
  vLLM refuses a longer request; a config naming none of the fields is not bounded here.
- Concurrency: vLLM requires max_num_seqs <= max_num_batched_tokens (vllm/config/scheduler.py
  `_verify_args`), so at most the token budget's worth of requests run at once: --batch <= the
  budget of one scheduler step.
- Engine steps: the whole run is at least ceil(B x ISL / budget) + OSL - 1 steps (the last
  prompt chunk, then that request's remaining output tokens); the trace walks and `predict`
  keeps one entry per step, so at most MAX_ENGINE_STEPS.
- Memory: the schedule holds every decoding request's context per step group: at most
  B x (min(OSL, P) + min(B, P + 1)) int64 entries for P prefill steps, plus per-request arrays;
  that must fit this host's available memory.
"""

from __future__ import annotations

import math

from commbench import CommbenchError

MAX_ENGINE_STEPS = 10_000_000
"""Most engine steps one run may have: the trace walks about 20,000 steps a second here (55 us
each), so 10 million is minutes, and `predict` keeps a few float64 columns per step (under 1 GB)."""

CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                  "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
"""Config fields vLLM reads the context length from (vllm/config/model.py possible_keys), in its order."""

UNSCALED_ROPE = ("su", "longrope", "llama3")
"""RoPE scaling types whose factor vLLM does not apply to the context length (already in the field)."""


def context_length(cfg: dict) -> tuple[int, str] | None:
    """(max_model_len, the field it came from) as vLLM derives it from a (text) config, or None
    where the config names no length."""
    found = [(cfg[k], k) for k in CONTEXT_FIELDS
             if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg.get(k), bool) and cfg[k] > 0]
    if not found:
        return None
    length, key = min(found, key=lambda item: item[0])
    if isinstance(cfg.get("model_max_length"), (int, float)) and cfg["model_max_length"] > 0:
        length, key = cfg["model_max_length"], "model_max_length"
    rope = cfg.get("rope_scaling")
    if isinstance(rope, dict) and "gemma3" not in str(cfg.get("model_type", "")):
        kind = rope.get("rope_type", rope.get("type", "default"))
        factor = rope.get("factor", 1.0)
        if kind not in UNSCALED_ROPE and isinstance(factor, (int, float)) and factor > 0:
            if kind == "yarn" and isinstance(rope.get("original_max_position_embeddings"), (int, float)):
                length, key = rope["original_max_position_embeddings"], "rope_scaling.original_max_position_embeddings"
            length, key = length * factor, f"{key} x rope_scaling.factor {factor:g}"
    if not math.isfinite(length):
        return None
    return int(length), key


def check_context(model_name: str, context: int | None, context_field: str, isl: int, osl: int) -> None:
    """ISL + OSL within the model's context length, or a one-line error naming the bound."""
    if context is not None and isl + osl > context:
        raise CommbenchError(f"ISL {isl:,} + OSL {osl:,} = {isl + osl:,} tokens exceeds {model_name}'s context length "
                             f"{context:,} ({context_field}); vLLM refuses a longer request: lower --isl/--osl")


def available_memory_bytes() -> float:
    """This host's available memory, bytes (commbench.results.host_memory_bytes)."""
    from commbench.results import host_memory_bytes

    return host_memory_bytes()


SMALL_SCHEDULE_BYTES = 256 * 2**20
"""Schedules estimated below this are not checked against the host's memory (saves a /proc read)."""


def check_schedule(batch: int, isl: int, osl: int, budget: int) -> None:
    """One-line errors, before the schedule is built, for a run the engine would not run (more
    concurrent requests than the token budget) or this host could not walk (steps, memory)."""
    if batch > budget:
        raise CommbenchError(f"--batch {batch:,} exceeds the {budget:,} tokens a scheduler step holds (--token-budget, "
                             "x pp): vLLM runs at most that many requests at once (max_num_seqs <= "
                             "max_num_batched_tokens): lower --batch or raise --token-budget")
    prefill_steps = -(-batch * isl // budget)
    steps = prefill_steps + osl - 1
    if steps > MAX_ENGINE_STEPS:
        raise CommbenchError(f"{batch:,} requests of ISL {isl:,} over {budget:,} tokens a step, then OSL {osl:,}, is at "
                             f"least {steps:,} engine steps; commbench walks at most {MAX_ENGINE_STEPS:,}: lower "
                             "--isl, --osl or --batch")
    need = 8 * batch * (min(osl, prefill_steps) + min(batch, prefill_steps + 1)) + 24 * batch
    if need > SMALL_SCHEDULE_BYTES:
        have = available_memory_bytes()
        if need > have:
            raise CommbenchError(f"the schedule of {batch:,} requests (ISL {isl:,}, OSL {osl:,}) needs up to "
                                 f"{need / 2**30:.1f} GiB; this host has {have / 2**30:.1f} GiB available: lower --batch")


def check_workload(card, w, pp: int = 1) -> None:
    """Every bound above for one model card and workload (w: a Workload; the scheduler sees pp x
    the token budget with pp micro-batches in flight), before anything is traced or priced."""
    check_context(card.name, card.context_length, card.context_field, w.isl, w.osl)
    check_schedule(w.batch, w.isl, w.osl, w.token_budget * pp)
