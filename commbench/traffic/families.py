"""Architecture families (model_traces/architectures.toml): the rules by which a config's fields
become per-layer blocks, chosen by the config's `model_type` (never by a model's name), and the
card fields a family sets by itself (the MoE gate's dtype, the sequence-parallel residual stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from commbench import CommbenchError
from commbench.data import data_dir, read_toml


@dataclass(frozen=True)
class Family:
    name: str
    blocks: tuple[str, ...]
    linear_attention: str
    boundary: tuple[str, ...]
    whole_layer_kinds: bool = False
    unsupported: str = ""
    source: str = ""
    gated_mlp: bool = True
    mlp_width_per_hidden: int = 0  # a missing intermediate_size is this x hidden_size (GPT-2-style classes: 4)
    defaults: dict = field(default_factory=dict, hash=False, compare=False)  # config values the family's class fills in
    shared_mlp_width: str = ""  # config field of the width of an `mlp_if_moe` block (a shared expert reducing alone)
    router_dtype: str = ""  # the MoE gate's logits dtype ("" = activation), unless router_dtype_field says otherwise
    router_dtype_field: str = ""  # config field naming the gate's dtype ("float32" / "fp32" -> float32)
    sequence_parallel_moe: tuple = ()  # engines (ENGINES names) whose MoE blocks chunk tokens over TP under EP
    sequence_parallel_residual: dict = field(default_factory=dict, hash=False, compare=False)  # see architectures.toml
    block_if: dict = field(default_factory=dict, hash=False, compare=False)  # block -> config field that must be true
    ff_dim_field: str = ""  # config field of the dense MLP width before LFM2's auto adjustment (block_ff_dim)
    text_first: tuple = ()  # fields a [text, vision] pair may give; the text entry is read
    per_layer_inputs: bool = False  # the family reads hidden_size_per_layer_input (Gemma 3n, Gemma 4)
    per_layer_embed_archs: tuple = ()  # architectures that embed the per-layer inputs each step (all when empty)
    altup: bool = False  # Gemma 3n's AltUp: read altup_num_inputs
    pp_unsupported: str = ""  # the engine's model class has no pipeline parallelism (a reason)
    router_dtype_engines: tuple = ()  # engines whose gate router_dtype is (all when empty); the others: activation
    nested: tuple = ()  # sub-objects of the config whose fields are read as its own (DBRX's attn_config, ffn_config)
    boundary_none: tuple = ()  # IntermediateTensors keys the family sends as None (metadata only)
    moe_expert_parallel: bool = True  # the MoE block is a FusedMoE layer (takes part in expert parallelism)
    moe_reduce: str = "fused"  # "explicit": the block all-reduces itself, also under the DeepEP / pplx kernels
    kernel_shared_expert_field: str = ""  # config field of a shared expert reducing alone under those kernels
    moe_reduce_engines: tuple = ()  # the engines whose block calls moe_reduce "explicit" (all when empty)
    runner_shared_expert_field: str = ""  # config field of a shared expert the current release's MoE runner holds


@lru_cache(maxsize=1)
def architectures_toml() -> dict:
    return read_toml(data_dir("model_traces") / "architectures.toml", "architecture families")


def family_of(cfg: dict) -> Family:
    """The architectures.toml family whose model_types include cfg's model_type (and whose
    `when_any` fields hold), with [default]'s fields where the family does not set them."""
    arch = architectures_toml()
    base = arch["default"]
    model_type = str(cfg.get("model_type") or "")
    # a family that only changes the boundary (hidden_states_only) combines with one that changes the blocks
    merged, names = dict(base), []
    for fname, fam in arch.get("family", {}).items():
        if model_type not in fam.get("model_types", ()):
            continue
        if fam.get("when_any") and not any(cfg.get(k) for k in fam["when_any"]):
            continue
        skip = ("model_types", "when_any", "hidden") + (("source",) if fam.get("hidden") else ())
        merged.update({k: v for k, v in fam.items() if k not in skip})
        names += [] if fam.get("hidden") else [fname]
    return Family("+".join(names) or "default", tuple(merged["blocks"]), merged["linear_attention"],
                  tuple(merged["boundary"]), bool(merged.get("whole_layer_kinds")), merged.get("unsupported", ""),
                  merged.get("source", ""), bool(merged.get("gated_mlp", True)), int(merged.get("mlp_width_per_hidden", 0)),
                  dict(merged.get("defaults", {})),
                  merged.get("shared_mlp_width", ""), merged.get("router_dtype", ""),
                  merged.get("router_dtype_field", ""), tuple(merged.get("sequence_parallel_moe", ())),
                  dict(merged.get("sequence_parallel_residual", {})), dict(merged.get("block_if", {})),
                  merged.get("ff_dim_field", ""), tuple(merged.get("text_first", ())),
                  bool(merged.get("per_layer_inputs")), tuple(merged.get("per_layer_embed_archs", ())),
                  bool(merged.get("altup")), merged.get("pp_unsupported", ""),
                  tuple(merged.get("router_dtype_engines", ())), tuple(merged.get("nested", ())),
                  tuple(merged.get("boundary_none", ())), bool(merged.get("moe_expert_parallel", True)),
                  str(merged.get("moe_reduce", "fused")), str(merged.get("kernel_shared_expert_field", "")),
                  tuple(merged.get("moe_reduce_engines", ())), str(merged.get("runner_shared_expert_field", "")))


def text_config(raw: dict, name: str) -> dict:
    """The language model's config: a multimodal wrapper's text_config with the library defaults
    transformers fills in (architectures.toml [library_defaults]), else the config itself."""
    if not isinstance(raw.get("text_config"), dict):
        return raw
    cfg = dict(raw["text_config"])
    defaults = architectures_toml().get("library_defaults", {})
    cfg.setdefault("model_type", defaults.get("text_model_type", {}).get(str(raw.get("model_type")), ""))
    if cfg.get("vocab_size") is None and raw.get("vocab_size") is None:
        vocab = defaults.get("vocab_size", {}).get(cfg["model_type"])
        if vocab is None:
            raise CommbenchError(f"model config {name!r}: text_config has no vocab_size and its model_type "
                                 f"{cfg['model_type']!r} has no known library default; add vocab_size")
        cfg["vocab_size"] = vocab
    cfg.setdefault("vocab_size", raw.get("vocab_size"))
    return cfg


def family_config(raw: dict, name: str) -> tuple[dict, Family, list[str]]:
    """(the language model's config as its family's class fills it in, the family, notes): the
    text_config of a multimodal wrapper, the family's defaults where the config leaves a field out,
    the fields of its `nested` sub-objects read as its own; refused in one line where the family or
    one of the config's architectures cannot be traced."""
    cfg = text_config(raw, name)  # multimodal wrappers keep the LM under text_config
    family = family_of(cfg)
    if family.unsupported:
        raise CommbenchError(f"model config {name!r}: model_type {cfg.get('model_type')!r} cannot be traced: {family.unsupported}")
    unmodelled = architectures_toml().get("unsupported_architectures", {})
    for arch in map(str, raw.get("architectures") or ()) if isinstance(raw.get("architectures"), list) else ():
        if arch in unmodelled:
            raise CommbenchError(f"model config {name!r}: architectures {arch!r} cannot be traced: {unmodelled[arch]}")
    cfg = {**family.defaults, **{k: v for k, v in cfg.items() if v is not None}}  # the family class's defaults
    for sub in family.nested:  # DBRX: dbrx.py reads config.attn_config.kv_n_heads, config.ffn_config.moe_top_k, ...
        cfg = {**{k: v for k, v in (cfg.get(sub) or {}).items() if v is not None}, **cfg}
    interval = family.defaults.get("full_attention_interval")
    interval_note = [f"full_attention_interval = {cfg['full_attention_interval']} is traced as the current release reads "
                     f"it; vLLM 0.11.0's own Qwen3NextConfig places full attention every {interval} layers regardless"] \
        if interval and cfg.get("full_attention_interval") != interval and not cfg.get("layer_types") else []
    return cfg, family, interval_note


def sp_residual_fields(family: Family, moe_mask: tuple) -> dict:
    """The card fields of a family's `sequence_parallel_residual` (architectures.toml): its engines,
    the layers that run chunked (`moe`: the MoE layers, deepseek_v2.py; `all_moe`: every layer when
    every layer is MoE, qwen3_next.py _should_use_sequence_parallel), whether the model chunks after
    the embedding, and the tensors all-gathered on leaving the chunked stream."""
    spec = family.sequence_parallel_residual
    if not spec:
        return {}
    layers = moe_mask if spec["layers"] == "moe" else (all(moe_mask),) * len(moe_mask)
    return {"sp_residual_engines": tuple(spec["engines"]), "sp_residual_layers": tuple(layers),
            "sp_residual_from_embedding": bool(spec.get("from_embedding", False)),
            "sp_residual_exit": tuple(spec["exit"])}


#: Gate dtypes a config's router-dtype field may name (bailing_moe.py "fp32"; longcat_flash.py
#: and deepseek_v2.py "float32"), and the logits dtype each gives.
ROUTER_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                 "float16": "float16", "fp16": "float16"}


def router_dtype_of(cfg: dict, name: str, family: Family) -> str:
    """The MoE gate's logits dtype: the config's router-dtype field where the family reads one,
    else the family's fixed one ("" = the activation dtype)."""
    value = cfg.get(family.router_dtype_field) if family.router_dtype_field else None
    if value is None:
        return family.router_dtype
    if str(value) not in ROUTER_DTYPES:
        raise CommbenchError(f"model config {name!r}: {family.router_dtype_field} = {value!r}; valid: "
                             f"{', '.join(ROUTER_DTYPES)}")
    return ROUTER_DTYPES[str(value)]
