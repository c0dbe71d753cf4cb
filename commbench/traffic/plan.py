"""A parallel plan (tp x pp over a model) that validates itself on construction, torchtitan-style.

Rank layout follows vLLM: TP is innermost, then PP, then DP:
rank = dp_rank * (pp * tp) + stage * tp + tp_rank. Expert parallelism (mode ep) is vLLM's
--data-parallel-size dp --enable-expert-parallel: each DP replica runs attention on its own
requests and the MoE layers' experts are spread over all dp x tp ranks (ep size = dp x tp).
Layer split follows vLLM's `get_pp_indices` (vllm/distributed/utils.py): every stage gets
layers // pp, and the remainder goes one each to the stages just before the last (the last
stage also runs the LM head, so it is kept light).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from commbench import CommbenchError
from commbench.traffic.model_card import ModelCard

MODES = ("tp", "pp", "ep")


def pp_layer_split(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per stage as vLLM's get_pp_indices makes them, e.g. (36, 2) -> (18, 18), (10, 4) -> (2, 3, 3, 2)."""
    per_stage = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        per_stage[-i] += 1
    return tuple(per_stage)


@dataclass(frozen=True)
class LayerShard:
    """One rank's share of one decoder layer, in parameters: the single per-layer accounting that
    the serving model (commbench.predict.serving) and the measured compute (commbench.measure.compute) both use.

    attention: q/k/v/o (+ biases) / tp. MoE layer: router (ReplicatedLinear: every rank holds it
    whole), mlp = all experts / tp (experts sharded on their intermediate dimension), active_mlp =
    the k experts one token uses / tp. Dense layer: mlp = active_mlp = gate/up/down / tp.
    """

    moe: bool
    attention: float
    router: float
    mlp: float
    active_mlp: float
    q_size_per_rank: float

    def touched_params(self, expert_coverage: float = 1.0) -> float:
        """Parameters a step reads: all but the experts, and `expert_coverage` of those."""
        return self.attention + self.router + self.mlp * (expert_coverage if self.moe else 1.0)

    def matmul_flops(self, tokens: float) -> float:
        """2 x tokens x the parameters one token multiplies through."""
        return 2.0 * tokens * (self.attention + self.router + self.active_mlp)

    def attention_flops(self, pairs: float) -> float:
        """4 x q_size per rank per (query, key) pair: QK^T and PV."""
        return 4.0 * pairs * self.q_size_per_rank


@dataclass(frozen=True)
class ParallelPlan:
    model: ModelCard
    tp: int = 1
    pp: int = 1
    dp: int = 1  # data-parallel replicas with expert parallelism (mode ep); 1 otherwise

    def __post_init__(self) -> None:
        m = self.model
        if self.tp < 1 or self.pp < 1 or self.dp < 1:
            raise CommbenchError(f"tp, pp and dp must be >= 1, got tp={self.tp} pp={self.pp} dp={self.dp}")
        if self.dp > 1 and not m.is_moe:
            raise CommbenchError(f"mode ep (dp={self.dp}) needs an MoE model; {m.name} is dense: use mode tp or pp")
        if self.pp > 1 and m.pp_unsupported:
            raise CommbenchError(f"pp={self.pp}: {m.name} cannot be pipelined: {m.pp_unsupported}; use mode tp")
        if self.dp > 1 and self.pp > 1:
            raise CommbenchError(f"dp={self.dp} with pp={self.pp} is not modelled; use dp with tp only")
        if m.mamba_n_groups > 1 and m.mamba_n_groups % self.tp:
            raise CommbenchError(f"tp={self.tp} does not divide the Mamba-2 n_groups={m.mamba_n_groups} of {m.name} "
                                 "(vLLM's MambaMixer2 requires n_groups % tp == 0 or n_groups == 1)")
        # an attention-free model (mamba.py, mamba2.py: IsAttentionFree) has no attention heads to split
        attention = any(m.attention_blocks(i) or "lightning_attention" in m.blocks_of(i) for i in range(m.num_hidden_layers))
        if attention and m.num_attention_heads % self.tp:
            raise CommbenchError(
                f"tp={self.tp} does not divide num_attention_heads={m.num_attention_heads} of {m.name}; "
                f"valid tp: {', '.join(str(d) for d in _divisors(m.num_attention_heads))}"
            )
        kv = m.num_key_value_heads
        if attention and ((self.tp <= kv and kv % self.tp) or (self.tp > kv and self.tp % kv)):
            raise CommbenchError(
                f"tp={self.tp} neither divides nor is a multiple of num_key_value_heads={kv} of {m.name}"
            )
        if self.pp > m.num_hidden_layers:
            raise CommbenchError(f"pp={self.pp} exceeds num_hidden_layers={m.num_hidden_layers} of {m.name}")

    @classmethod
    def for_mode(cls, model: ModelCard, mode: str, tp: int | None = None, pp: int | None = None,
                 dp: int | None = None) -> "ParallelPlan":
        """`mode` tp: tp ranks (default 2), pp 1; pp: pp ranks (default 2), tp 1; ep: dp replicas
        (default 2) with expert parallelism, tp 1; explicit tp/pp/dp override."""
        if mode not in MODES:
            raise CommbenchError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if dp is not None and mode != "ep":
            raise CommbenchError(f"--dp {dp} applies to mode ep only (got mode {mode})")
        if mode == "tp":
            return cls(model, tp=2 if tp is None else tp, pp=1 if pp is None else pp)
        if mode == "ep":
            return cls(model, tp=1 if tp is None else tp, pp=1 if pp is None else pp, dp=2 if dp is None else dp)
        return cls(model, tp=1 if tp is None else tp, pp=2 if pp is None else pp)

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def mode(self) -> str:
        if self.dp > 1:
            return "ep" if self.tp == 1 else "tp+ep"
        return "pp" if self.pp > 1 and self.tp == 1 else ("tp" if self.pp == 1 else "tp+pp")

    @property
    def layers_per_stage(self) -> tuple[int, ...]:
        return pp_layer_split(self.model.num_hidden_layers, self.pp)

    def stage_layer_range(self, stage: int) -> range:
        start = sum(self.layers_per_stage[:stage])
        return range(start, start + self.layers_per_stage[stage])

    def layer_shard(self, moe: bool) -> LayerShard:
        """This plan's per-rank share of an MoE or a dense decoder layer (LayerShard)."""
        m, tp = self.model, self.tp
        if moe:
            return LayerShard(True, m.attention_params_per_layer / tp, m.router_params_per_layer,
                              m.num_experts * m.params_per_expert / tp, m.experts_per_token * m.params_per_expert / tp,
                              m.q_size / tp)
        dense = m.dense_mlp_params_per_layer / tp
        return LayerShard(False, m.attention_params_per_layer / tp, 0.0, dense, dense, m.q_size / tp)

    @property
    def kv_heads_per_rank(self) -> int:
        """KV heads each TP rank holds; replicated when tp exceeds the KV head count (vLLM)."""
        return max(1, self.model.num_key_value_heads // self.tp)

    @property
    def kv_replication(self) -> int:
        return max(1, self.tp // self.model.num_key_value_heads)

    @property
    def padded_vocab(self) -> int:
        """vLLM pads the vocab-parallel embedding / LM head to a multiple of 64 (DEFAULT_VOCAB_PADDING_SIZE)."""
        return -(-self.model.vocab_size // 64) * 64

    def micro_batches(self, seqs):
        """Micro-batches a schedule round of `seqs` sequences becomes: vLLM keeps pp batches in
        flight (max_concurrent_batches = pp), so min(pp, seqs); 1 without pipelining.
        `seqs` may be an array (one entry per round); the result then is too."""
        if np.ndim(seqs):
            return np.clip(seqs, 1, self.pp) if self.pp > 1 else np.ones_like(seqs)
        return max(1, min(self.pp, seqs)) if self.pp > 1 else 1

    def ranks_of_stage(self, stage: int, replica: int = 0) -> list[int]:
        """The TP group of `stage` in DP replica `replica`."""
        base = replica * self.pp * self.tp
        return [base + stage * self.tp + t for t in range(self.tp)]

    def dp_groups(self) -> list[tuple[int, ...]]:
        """The DP groups (one per TP rank): the same TP rank of every replica, as vLLM's get_dp_group()."""
        return [tuple(d * self.pp * self.tp + t for d in range(self.dp)) for t in range(self.tp)]

    def describe(self) -> str:
        dp = f" dp={self.dp} (ep {self.dp * self.tp})" if self.dp > 1 else ""
        return f"tp={self.tp} pp={self.pp}{dp} (world {self.world_size}, layers per stage {list(self.layers_per_stage)})"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
