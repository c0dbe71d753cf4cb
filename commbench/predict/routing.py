"""MoE routing in the serving model: how many of a layer's experts the tokens of one engine step
touch, under a Zipf law over experts (ROUTING_ZIPF_EXPONENT):

    coverage(T) = mean_i 1 - (1 - pi_i)^T,   pi_i proportional to i^-s, sum_i pi_i = k, each <= 1

for T tokens each picking k of E experts. commbench.predict.step_cost reads this fraction of the
expert weights each step; `commbench compute` is passed expert_coverage by its caller.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

ROUTING_ZIPF_EXPONENT = 1.0
"""How concentrated MoE routing is within one engine step, as the exponent s of a Zipf law over
experts: expert i (by popularity) is picked by a token with probability pi_i proportional to i^-s,
scaled so the k picks per token add up (sum pi_i = k, each <= 1). s = 0 is uniform routing.
It stands for both load imbalance and the correlation between the concurrent sequences of a step
(benchmark clients often send near-identical prompts). Unitless. No measurement below the
end-to-end level exists in this project (expert-load histograms of a served model would be one),
so it is chosen on one dev source - the kubis.ai vLLM gpt-oss-120b single-Spark decode curve
(published/figures.csv, marked `tuned`), minimum error at s = 1.0 - and the error is reported on the
others (`commbench accuracy`), the kubis.ai TP=2 curve among them."""


@lru_cache(maxsize=64)
def expert_pick_probabilities(k: int, num_experts: int, skew: float) -> np.ndarray:
    """pi_i, the probability that one token picks expert i: proportional to i^-skew, sum k, each <= 1.

    Where the power law would give an expert more than certainty, it is capped at 1 and the excess
    spread over the others in proportion (water filling), so the k picks stay k distinct experts.
    """
    weights = np.arange(1, num_experts + 1, dtype=float) ** -skew
    pi = np.empty(num_experts)
    capped = np.zeros(num_experts, dtype=bool)
    for _ in range(num_experts):
        free = ~capped
        pi[free] = weights[free] * (k - capped.sum()) / weights[free].sum()
        new = free & (pi > 1.0)
        if not new.any():
            break
        capped |= new
        pi[capped] = 1.0
    pi.setflags(write=False)
    return pi


def expert_coverage(tokens, k: int, num_experts: int, skew: float = ROUTING_ZIPF_EXPONENT):
    """Expected fraction of E experts that T independent tokens touch: mean_i 1 - (1 - pi_i)^T.

    Uniform routing (skew 0, pi_i = k/E) gives 1 - (1 - k/E)^T. tokens may be an array; it is
    computed once per run of equal values (a schedule's steps come in long runs of one token count).
    """
    if skew == 0:
        return 1.0 - (1.0 - k / num_experts) ** np.asarray(tokens, dtype=float)
    miss = 1.0 - expert_pick_probabilities(k, num_experts, skew)
    t = np.asarray(tokens, dtype=float)
    if t.ndim == 0:
        return float(1.0 - np.mean(miss ** t))
    flat = t.ravel()
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    cover = 1.0 - np.mean(miss[:, None] ** flat[starts][None, :], axis=0)
    return np.repeat(cover, np.diff(np.r_[starts, flat.size])).reshape(t.shape)
