"""Workloads (B concurrent requests of ISL input / OSL output tokens) and the engine's step schedule.

Scenario presets are this project's assumption (docs/sources.md#workloads: the review does not print
ISL/OSL): balanced 1024/1024, prefill-heavy 8192/1024, decode-heavy 1024/8192.

The schedule mimics vLLM V1's scheduler for B identical requests that all arrive at t=0:
each step first gives every decoding request 1 token, then fills the rest of the token budget
(`max_num_batched_tokens`, default 8192 per vllm/engine/arg_utils.py for GPUs >= 70 GiB) with
prompt tokens in arrival order (chunked prefill). A request's prefill-completing step samples its
first output token; it then decodes OSL-1 more steps. Runs of identical pure-decode steps are
grouped so a run of 8192 steps costs one entry per request-finish event.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from commbench import CommbenchError

SCENARIOS = {
    "balanced": (1024, 1024),
    "prefill-heavy": (8192, 1024),
    "decode-heavy": (1024, 8192),
}
DEFAULT_TOKEN_BUDGET = 8192  # vllm/engine/arg_utils.py get_batch_defaults, GPU memory >= 70 GiB
DEFAULT_MAX_NUM_SEQS = 1024


@dataclass(frozen=True)
class Workload:
    batch: int  # concurrent requests
    isl: int  # input tokens per request
    osl: int  # output tokens per request
    scenario: str = "custom"
    token_budget: int = DEFAULT_TOKEN_BUDGET

    def __post_init__(self) -> None:
        for name in ("batch", "isl", "osl", "token_budget"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise CommbenchError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_options(cls, batch: int, scenario: str | None = "balanced", isl: int | None = None,
                     osl: int | None = None, token_budget: int = DEFAULT_TOKEN_BUDGET) -> "Workload":
        """A preset scenario with optional --isl/--osl overrides."""
        scenario = scenario or "balanced"
        if scenario not in SCENARIOS:
            raise CommbenchError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
        base_isl, base_osl = SCENARIOS[scenario]
        custom = (isl is not None and isl != base_isl) or (osl is not None and osl != base_osl)
        return cls(batch=batch, isl=base_isl if isl is None else isl, osl=base_osl if osl is None else osl,
                   scenario=f"{scenario}*" if custom else scenario, token_budget=token_budget)

    @property
    def output_tokens(self) -> int:
        return self.batch * self.osl

    @property
    def prefill_chunk_tokens(self) -> int:
        """Tokens in the first (full) prefill step: min(token budget, B * ISL)."""
        return min(self.token_budget, self.batch * self.isl)

    @property
    def prefill_chunk_requests(self) -> int:
        """Requests the first prefill chunk touches (each one's logits are computed)."""
        return min(self.batch, -(-self.prefill_chunk_tokens // self.isl))


@dataclass(frozen=True)
class StepGroup:
    """`count` consecutive engine steps of the same shape.

    prefill_segments: (start_position, tokens) of each prompt chunk in the step (count == 1 then).
    decode_keys: keys each decoding sequence attends to in the group's first step; +1 per step.
    """

    count: int
    prefill_segments: tuple[tuple[int, int], ...]
    decode_keys: np.ndarray
    first_step: int

    @property
    def prefill_tokens(self) -> int:
        return sum(n for _, n in self.prefill_segments)

    @property
    def decode_tokens(self) -> int:
        return len(self.decode_keys)

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens

    @property
    def seqs(self) -> int:
        """Sequences scheduled in the step: one sampled logit row each."""
        return len(self.prefill_segments) + self.decode_tokens


@dataclass(frozen=True)
class Schedule:
    groups: tuple[StepGroup, ...]
    prefill_done_step: np.ndarray  # [batch] step index whose forward samples the first token
    finish_step: np.ndarray  # [batch] step index that samples the last token

    @property
    def num_steps(self) -> int:
        return sum(g.count for g in self.groups)


def build_schedule(w: Workload, token_budget: int | None = None) -> Schedule:
    """The run's schedule; a run the engine would not run or this host could not walk is refused
    first (commbench.traffic.limits.check_schedule)."""
    from commbench.traffic.limits import check_schedule

    check_schedule(w.batch, w.isl, w.osl, token_budget or w.token_budget)
    return _build_schedule(w.batch, w.isl, w.osl, token_budget or w.token_budget)


@lru_cache(maxsize=256)
def _build_schedule(batch: int, isl: int, osl: int, budget: int) -> Schedule:
    total_prompt = batch * isl
    done_step = np.full(batch, -1, dtype=np.int64)
    groups: list[StepGroup] = []
    consumed = 0
    step = 0
    while consumed < total_prompt:
        decoding = np.nonzero((done_step >= 0) & (done_step < step) & (step <= done_step + osl - 1))[0]
        decode_keys = isl + (step - done_step[decoding])
        room = budget - len(decoding)
        if room <= 0:
            raise CommbenchError(f"token budget {budget} is too small for {len(decoding)} decoding requests")
        end = min(total_prompt, consumed + room)
        segments = []
        pos = consumed
        while pos < end:
            req, offset = divmod(pos, isl)
            n = min(end - pos, isl - offset)
            segments.append((offset, n))
            if offset + n == isl:
                done_step[req] = step
            pos += n
        groups.append(StepGroup(1, tuple(segments), decode_keys, step))
        consumed = end
        step += 1
    finish = done_step + osl - 1
    # Pure decode: between finish events every step has the same set of sequences.
    while step <= finish.max():
        active = np.nonzero((done_step < step) & (step <= finish))[0]
        next_finish = finish[active].min()
        count = int(next_finish - step + 1)
        groups.append(StepGroup(count, (), isl + (step - done_step[active]), step))
        step += count
    return Schedule(tuple(groups), done_step, finish)
