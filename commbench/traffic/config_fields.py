"""Reading a config.json's fields: the names real configs give a field (ALIASES), the bounds a
size must keep (FIELD_MAX), fields given per layer (PER_LAYER_FIELDS) and the top-level
`architectures` (a multimodal wrapper's text_config is found by commbench.traffic.families).

Every size a model card uses is read by `whole`: the first of its names present, a whole number
within its bound, or the default; anything else is refused in one line naming the field and value.
"""

from __future__ import annotations

import math

from commbench import CommbenchError

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")

#: Other names real config.json files use for the same field (HF attribute_map entries and
#: model-specific spellings), tried in order after the canonical name.
ALIASES = {
    "num_hidden_layers": ("n_layer", "num_layers", "n_layers"),
    "hidden_size": ("n_embd", "d_model"),
    # chatglm.py (ChatGLM2/3, GLM-4-9B-chat): VocabParallelEmbedding / ParallelLMHead of config.padded_vocab_size
    "vocab_size": ("padded_vocab_size",),
    "num_attention_heads": ("n_head", "num_heads", "n_heads"),
    # step3_text.py: num_attention_groups (its attention has num_kv_heads=1, as the published config says)
    "num_key_value_heads": ("num_kv_heads", "n_head_kv", "multi_query_group_num", "num_attention_groups",
                            "kv_n_heads"),  # dbrx.py attn_config.kv_n_heads
    "intermediate_size": ("ffn_hidden_size", "n_inner", "ffn_dim"),
    # hunyuan_v1.py moe_topk, step3_text.py moe_top_k, ernie45_moe.py moe_k, moondream3.py moe_experts_per_token
    "num_experts_per_tok": ("experts_per_token", "num_experts_per_token", "top_k_experts", "moe_topk", "moe_k",
                            "moe_top_k", "moe_experts_per_token"),
    "num_experts": ("num_local_experts", "n_routed_experts", "moe_num_experts"),
    # Llama 4: MoE every interleave_moe_layer_step layers (vllm/model_executor/models/llama4.py,
    # is_moe_layer = (layer_idx + 1) % step == 0), the dense layers' MLP width intermediate_size_mlp;
    # ernie45_moe.py (layer_idx + 1) % moe_layer_interval == 0; arctic.py moe_layer_frequency the same
    "decoder_sparse_step": ("interleave_moe_layer_step", "moe_layer_interval", "moe_layer_frequency"),
    # the first MoE layer: ernie45_moe.py layer_idx >= moe_layer_start_index; afmoe.py / lfm2_moe.py
    # layer_idx >= num_dense_layers; moondream3.py layer_idx >= moe_start_layer
    "first_k_dense_replace": ("moe_layer_start_index", "num_dense_layers", "moe_start_layer"),
    "moe_intermediate_size": ("expert_intermediate_size", "expert_ffn_hidden_size", "expert_hidden_dim",
                              "moe_expert_inner_dim"),
    # hunyuan_v1.py HunYuanAttention: head_dim, else attention_head_dim; plamo2.py hidden_size_per_head
    "head_dim": ("attention_head_dim", "hidden_size_per_head"),
}

#: Fields a config may give per layer, as a list of num_hidden_layers numbers (hunyuan_v1.py:
#: moe_topk, moe_intermediate_size, num_shared_expert, intermediate_size indexed by layer_id).
#: A uniform list is its value; the dense width is kept per layer; any other varying list takes
#: its largest entry and says so in the card's warnings.
PER_LAYER_FIELDS = ("intermediate_size", "moe_intermediate_size", "num_experts_per_tok", "num_experts",
                    "num_shared_expert", "num_shared_experts", "n_shared_experts", "shared_intermediate_size")


#: Bounds on a config's sizes: far beyond any real model, so a typo or a corrupt file is named, not run.
FIELD_MAX = {"num_hidden_layers": 10_000, "hidden_size": 1 << 20, "num_attention_heads": 1 << 14,
             "num_key_value_heads": 1 << 14, "head_dim": 1 << 14, "vocab_size": 1 << 24, "intermediate_size": 1 << 22,
             "moe_intermediate_size": 1 << 22, "num_experts": 1 << 16, "num_experts_per_tok": 1 << 10,
             "sliding_window": 1 << 30, "decoder_sparse_step": 10_000, "first_k_dense_replace": 10_000}


def whole(cfg: dict, name: str, *keys: str, default: int | None = None, minimum: int = 1) -> int:
    """The first of `keys` (or their ALIASES) present in cfg as a whole number in minimum..FIELD_MAX, or `default`."""
    for key in (k for key in keys for k in (key, *ALIASES.get(key, ()))):
        value = cfg.get(key)
        if value is None or (value == 0 and default is not None and minimum > 0):
            continue
        bound = FIELD_MAX.get(key, FIELD_MAX.get(keys[0], 1 << 30))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and value == int(value) and minimum <= value <= bound
        if not ok:
            raise CommbenchError(f"model config {name!r}: {key} = {value!r} must be a whole number in {minimum}..{bound}")
        return int(value)
    if default is None:
        raise CommbenchError(f"model config {name!r} is missing required field {keys[0]!r}")
    return default


def collapse_per_layer(cfg: dict, name: str, layers: int, text_first: tuple = ()) -> tuple[dict, dict, list]:
    """(cfg with each PER_LAYER_FIELDS list made one value, the lists kept by field, warnings).

    A list must have num_hidden_layers whole numbers; a uniform one is its value, a varying one
    its largest entry (said in the warnings, except the dense MLP width, which the card keeps per
    layer). ERNIE-4.5-VL's [text, vision] moe_layer_start_index / moe_layer_end_index become their
    min / max (ernie45_vl_moe.py Ernie4_5_VLMoeDecoderLayer: MoE from the smallest start to the
    largest end); the family's `text_first` fields given as a [text, vision] pair take the text
    entry (Ernie4_5_VLMoeMoE: text tokens go to text_experts, moe_num_experts[0] of
    moe_intermediate_size[0]).
    """
    out, lists, notes = dict(cfg), {}, []
    for key in text_first:
        if isinstance(cfg.get(key), list) and len(cfg[key]) == 2 and layers != 2:
            out[key] = cfg[key][0]
    cfg = out
    for key, pick in (("moe_layer_start_index", min), ("moe_layer_end_index", max)):
        if isinstance(cfg.get(key), list) and cfg[key]:
            out[key] = pick(cfg[key])
    for canonical in PER_LAYER_FIELDS:
        for key in (canonical, *ALIASES.get(canonical, ())):
            value = cfg.get(key)
            if not isinstance(value, list):
                continue
            numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(value) != layers or len(numbers) != len(value):
                raise CommbenchError(f"model config {name!r}: {key} must be one whole number or a list of "
                                     f"num_hidden_layers = {layers} of them, got {value!r}"[:300])
            lists[canonical] = numbers
            out[key] = max(numbers)
            if len(set(numbers)) > 1 and canonical != "intermediate_size":
                notes.append(f"{key} varies per layer ({min(numbers):g}..{max(numbers):g}); commbench uses the "
                             f"largest, {max(numbers):g}, for every layer")
    return out, lists, notes


def architecture_names(raw: dict, name: str) -> tuple[str, ...]:
    """The top-level `architectures` (a name or a list of names, as vLLM reads it), or ()."""
    value = raw.get("architectures")
    value = [value] if isinstance(value, str) else value
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CommbenchError(f"{name}: `architectures` must be a list of model class names "
                             f"(e.g. [\"LlamaForCausalLM\"]), got {value!r}")
    return tuple(value)
