"""Consistency of a config's head and expert counts, and a word where its model_type names no family.

Each field is read (and bounded) by commbench.traffic.config_fields; these checks are about how the
fields fit together, as vLLM's layers need them to:
- num_key_value_heads <= num_attention_heads, and the heads a whole multiple of the KV heads
  (grouped-query attention: each KV head serves num_attention_heads / num_key_value_heads query
  heads; vllm/model_executor/models/llama.py LlamaAttention asserts the TP split of both).
- num_key_value_heads = 0 names no KV head (a config that means "as many as the heads" leaves the
  field out or null).
- A top-k over zero experts (num_experts_per_tok > 0 with num_experts = 0) is a MoE config with its
  experts missing; a dense config sets both to 0 or leaves them out (Granite-4.0-H-Micro sets both to 0).
- A model_type in no family of model_traces/architectures.toml and not in [default]'s model_types
  is traced with [default]'s layout, and says so.
"""

from __future__ import annotations

from commbench import CommbenchError
from commbench.traffic.config_fields import ALIASES

KV_HEAD_FIELDS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num", "num_attention_groups")
EXPERT_FIELDS = ("num_experts", *ALIASES["num_experts"])
TOP_K_FIELDS = ("num_experts_per_tok",)


def _given(cfg: dict, fields: tuple[str, ...]) -> tuple[str, object] | None:
    """The first of `fields` the config sets (not null), with its value."""
    return next(((f, cfg[f]) for f in fields if cfg.get(f) is not None), None)


def check_counts(cfg: dict, name: str, heads: int, kv_heads: int) -> None:
    """One-line errors naming the head fields whose values do not fit together."""
    kv = _given(cfg, KV_HEAD_FIELDS)
    if kv is not None and kv[1] == 0:
        raise CommbenchError(f"model config {name!r}: {kv[0]} = 0 names no KV head; leave it out for as many as the "
                             f"{heads} attention heads")
    field = kv[0] if kv else "num_key_value_heads"
    if kv_heads > heads:
        raise CommbenchError(f"model config {name!r}: {field} = {kv_heads} exceeds num_attention_heads = {heads}; "
                             "each KV head serves a whole group of query heads")
    if heads % kv_heads:
        raise CommbenchError(f"model config {name!r}: num_attention_heads = {heads} is not a multiple of {field} = "
                             f"{kv_heads} (grouped-query attention)")


def expert_note(cfg: dict, experts: int, layer_kinds_listed: bool) -> list[str]:
    """A warning when a top-k over zero experts makes every layer dense: the config routes tokens
    (num_experts_per_tok > 0) but names no experts, and no per-layer list says which layers are dense.
    Where a list names every layer's kind (Nemotron-H's pattern, layer_types), a dense model that keeps
    its config class's top-k default is read as it says."""
    top_k = _given(cfg, TOP_K_FIELDS)
    if experts or layer_kinds_listed or top_k is None or not isinstance(top_k[1], (int, float)) or top_k[1] <= 0:
        return []
    count = _given(cfg, EXPERT_FIELDS)
    said = f"{count[0]} = {count[1]}" if count else "no expert count (num_experts / num_local_experts)"
    return [f"{said} with {top_k[0]} = {top_k[1]}: traced as a dense model (a dense MLP of intermediate_size in "
            "every layer); a MoE config names its experts"]


def model_type_note(cfg: dict, architectures: dict) -> list[str]:
    """A warning when the config's model_type is in no family of `architectures` (the parsed
    architectures.toml) and not in [default]'s model_types (known to follow its layout)."""
    model_type = str(cfg.get("model_type") or "")
    listed = {t for fam in [architectures.get("default", {}), *architectures.get("family", {}).values()]
              for t in fam.get("model_types", ())}
    if model_type in listed:
        return []
    what = f"model_type {model_type!r}" if model_type else "no model_type"
    return [f"{what} is in no family of model_traces/architectures.toml: traced with [default]'s layout "
            "(vllm/model_executor/models/llama.py: attention + MLP/MoE per layer, hidden_states and residual across "
            "a pipeline boundary); if its vLLM model file differs, add a family"]
