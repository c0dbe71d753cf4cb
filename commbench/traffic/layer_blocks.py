"""A model's layers as blocks (attention, Mamba mixer, dense MLP, MoE, ...), in the order the
engine runs them, from whatever the config says per layer: `layer_types`, `layers_block_type`,
`hybrid_override_pattern`, `attn_type_list`, Jamba's attention period, Bamba's `attn_layer_indices`,
PLaMo 2's `mamba_step`,
Qwen3-Next's `full_attention_interval`, Nemotron-NAS `block_configs`, and the MoE layer rules
(which layers are MoE), under the family's block list (model_traces/architectures.toml).
"""

from __future__ import annotations

from commbench import CommbenchError
from commbench.traffic.config_fields import whole
from commbench.traffic.families import Family

#: The blocks a layer may hold (model_traces/architectures.toml explains each).
BLOCKS = ("attention", "mamba", "mamba2", "gated_deltanet", "mlp", "moe", "parallel_attention_mlp", "qk_norm_tp",
          "qk_all_gather", "qkv_all_gather", "short_conv", "laurel", "lightning_attention")


#: Per-layer list entries (transformers 5 names, with the legacy ones it remaps) and the block each means.
MIXER_KINDS = {"full_attention": "attention", "attention": "attention", "sliding_attention": "attention",
               "chunked_attention": "attention", "linear_attention": None, "mamba": None,
               "conv": "short_conv"}  # LFM2's short-convolution layers
WHOLE_LAYER_KINDS = {**MIXER_KINDS, "mlp": "mlp", "moe": "moe"}
#: hybrid_override_pattern characters (Nemotron-H): Mamba, attention, MLP, MoE.
PATTERN_CHARS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def per_layer_list(cfg: dict, name: str) -> tuple[str, list] | None:
    """(field, entries) of the config's per-layer list, if it has one."""
    pattern = cfg.get("hybrid_override_pattern")
    if pattern:
        bad = sorted(set(str(pattern)) - set(PATTERN_CHARS))
        if bad:
            raise CommbenchError(f"model config {name!r}: hybrid_override_pattern has {bad[0]!r}; valid: "
                                 f"{', '.join(PATTERN_CHARS)} ({', '.join(f'{k} {v}' for k, v in PATTERN_CHARS.items())})")
        return "hybrid_override_pattern", [PATTERN_CHARS[c] for c in str(pattern)]
    for key in ("layers_block_type", "layer_types"):
        if cfg.get(key):
            if not isinstance(cfg[key], list):
                raise CommbenchError(f"model config {name!r}: {key} must be a list of layer kinds")
            return key, list(cfg[key])
    for key in ("attn_type_list", "decoder_attention_types"):  # minimax_text_01.py: 0 linear, 1 full attention
        if cfg.get(key):
            entries = cfg[key]
            if not isinstance(entries, list) or any(e not in (0, 1) or isinstance(e, bool) for e in entries):
                raise CommbenchError(f"model config {name!r}: {key} must be a list of 0 (linear attention) "
                                     "and 1 (full attention)")
            return key, ["full_attention" if e == 1 else "linear_attention" for e in entries]
    return None


def moe_layer_mask(cfg: dict, name: str, layers: int, num_experts: int) -> tuple[bool, ...]:
    """Which layers are MoE: Qwen's mlp_only_layers / decoder_sparse_step, DeepSeek's
    first_k_dense_replace and moe_layer_freq (i % freq == 0; a per-layer list of flags in
    mimo_v2.py), ERNIE's moe_layer_end_index (i <= end), Jamba's expert_layer_period /
    expert_layer_offset, Step-3's moe_layers_enum (step3_text.py: the comma-separated MoE layer
    indices), and the aliases of these in ALIASES."""
    if not num_experts:
        return (False,) * layers
    listed = cfg.get("moe_layers_enum")
    if listed is not None:
        try:
            chosen = {int(i) for i in (listed.strip().split(",") if isinstance(listed, str) else listed)}
        except (TypeError, ValueError, AttributeError):
            raise CommbenchError(f"model config {name!r}: moe_layers_enum = {listed!r} must be comma-separated "
                                 "layer indices, e.g. \"1,2,3\"") from None
        return tuple(i in chosen for i in range(layers))
    dense_only = set(cfg.get("mlp_only_layers") or [])
    step = whole(cfg, name, "decoder_sparse_step", default=1)
    first_dense = whole(cfg, name, "first_k_dense_replace", default=0, minimum=0)
    last = cfg.get("moe_layer_end_index")
    last = layers - 1 if last is None else whole(cfg, name, "moe_layer_end_index", minimum=-1)
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        if len(freq) != layers:
            raise CommbenchError(f"model config {name!r}: moe_layer_freq has {len(freq)} entries, "
                                 f"num_hidden_layers is {layers}")
        flags = [bool(f) for f in freq]
    else:
        every = whole(cfg, name, "moe_layer_freq", default=1)
        flags = [i % every == 0 for i in range(layers)]
    period = whole(cfg, name, "expert_layer_period", default=0, minimum=0)
    offset = whole(cfg, name, "expert_layer_offset", default=0, minimum=0)
    return tuple(
        i not in dense_only and (i + 1) % step == 0 and first_dense <= i <= last and flags[i]
        and (not period or i % period == offset) for i in range(layers)
    )


def blocks_per_layer(cfg: dict, name: str, layers: int, family: Family, moe_mask: tuple[bool, ...]):
    """The blocks of each layer, in engine order, from the config's per-layer description."""
    ffn = tuple("moe" if moe else "mlp" for moe in moe_mask)
    listed = per_layer_list(cfg, name)
    attn_period = whole(cfg, name, "attn_layer_period", default=0, minimum=0)
    if listed is None and attn_period:  # Jamba: attention every attn_layer_period layers, Mamba between
        offset = whole(cfg, name, "attn_layer_offset", default=0, minimum=0)
        listed = ("attn_layer_period", ["attention" if i % attn_period == offset else "mamba" for i in range(layers)])
    indices = cfg.get("attn_layer_indices")
    if listed is None and indices is not None:  # Bamba: transformers BambaConfig.layers_block_type, read by bamba.py
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers
                                                    for i in indices):
            raise CommbenchError(f"model config {name!r}: attn_layer_indices = {indices!r} must be a list of layer "
                                 f"indices in 0..{layers - 1}"[:300])
        attention = set(indices)
        listed = ("attn_layer_indices", ["attention" if i in attention else "mamba" for i in range(layers)])
    step = whole(cfg, name, "mamba_step", default=0, minimum=0)
    if listed is None and step > 1:  # PLaMo 2 (plamo2.py is_mamba): attention where i % step == step // 2
        last_only = layers <= step // 2  # a model shorter than that: attention in the last layer only
        listed = ("mamba_step", ["attention" if (i == layers - 1 if last_only else i % step == step // 2) else "mamba"
                                 for i in range(layers)])
    interval = whole(cfg, name, "full_attention_interval", default=0, minimum=0)
    if listed is None and interval:  # Qwen3-Next: linear attention unless (i + 1) % interval == 0
        listed = ("full_attention_interval",
                  ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(layers)])
    if listed is None:
        if family.blocks == ("attention", "ffn"):
            for key in ("ssm_state_size", "mamba_d_state", "state_size", "linear_num_key_heads"):
                if cfg.get(key) is not None:
                    raise CommbenchError(f"model config {name!r} has {key} (a non-attention mixer) but no per-layer list "
                                         "(layer_types, layers_block_type, hybrid_override_pattern) saying which layers use it")
        return tuple(_resolve(family.blocks, ffn[i], "attention") for i in range(layers))
    field_name, entries = listed
    if len(entries) != layers:
        raise CommbenchError(f"model config {name!r}: {field_name} has {len(entries)} entries, num_hidden_layers is {layers}")
    kinds = WHOLE_LAYER_KINDS if family.whole_layer_kinds else MIXER_KINDS
    blocks = []
    for i, entry in enumerate(entries):
        if entry not in kinds:
            raise CommbenchError(f"model config {name!r}: {field_name}[{i}] = {entry!r} is a layer kind commbench "
                                 f"cannot model; valid: {', '.join(kinds)}")
        mixer = kinds[entry] or family.linear_attention
        blocks.append((mixer,) if family.whole_layer_kinds else _resolve(family.blocks, ffn[i], mixer))
    return tuple(blocks)


#: Blocks that belong to an attention block's q/k/v (its TP-spanning norms and gathers): a layer
#: whose mixer is not attention (a Gated DeltaNet layer of OLMo hybrid) has none of them.
ATTENTION_ADJUNCTS = ("qk_norm_tp", "qk_all_gather", "qkv_all_gather")


def _resolve(blocks: tuple[str, ...], ffn: str, mixer: str) -> tuple[str, ...]:
    """A family's block list for one layer: `ffn` -> mlp or moe, `moe_if_any` -> moe or nothing,
    `mlp_if_moe` -> mlp in an MoE layer or nothing, `attention` -> the layer's mixer (and the
    ATTENTION_ADJUNCTS only where that is attention)."""
    out = []
    for b in blocks:
        if b in ATTENTION_ADJUNCTS and mixer != "attention":
            continue
        if b == "ffn":
            out.append(ffn)
        elif b == "moe_if_any":
            out += ["moe"] if ffn == "moe" else []
        elif b == "mlp_if_moe":  # a shared expert that reduces on its own, in MoE layers only
            out += ["mlp"] if ffn == "moe" else []
        else:
            out.append(mixer if b == "attention" else b)
    return tuple(out)


def _ffn_mult_to_width(ffn_mult: float, hidden: int) -> int:
    """DeciLM / Nemotron-NAS: int(2 * ffn_mult * hidden / 3) rounded up to a multiple of 256
    (vllm/model_executor/models/nemotron_nas.py: _ffn_mult_to_intermediate_size)."""
    width = int(2 * ffn_mult * hidden / 3)
    return -(-width // 256) * 256


def apply_block_configs(cfg: dict, name: str, layers: int, hidden: int, blocks: tuple, widths: list) -> tuple:
    """Nemotron-NAS `block_configs`: a layer's attention or FFN may be a no-op (no block, no
    all-reduce) and each FFN has its own width; replace_with_linear is not modelled (error)."""
    configs = cfg["block_configs"]
    if not isinstance(configs, list) or len(configs) != layers:
        got = len(configs) if isinstance(configs, list) else type(configs).__name__
        raise CommbenchError(f"model config {name!r}: block_configs has {got} entries, num_hidden_layers is {layers}")
    out = []
    for i, bc in enumerate(configs):
        attn, ffn = (bc or {}).get("attention") or {}, (bc or {}).get("ffn") or {}
        for part, sub in (("attention", attn), ("ffn", ffn)):
            if sub.get("replace_with_linear"):
                raise CommbenchError(f"model config {name!r}: block_configs[{i}].{part}.replace_with_linear is not "
                                     "modelled (vLLM's nemotron_nas.py serves no-op and regular blocks only)")
        layer = [b for b in blocks[i] if not ((b == "attention" and attn.get("no_op")) or (b in ("mlp", "moe") and ffn.get("no_op")))]
        if not ffn.get("no_op") and ffn.get("ffn_mult") is not None:
            widths[i] = _ffn_mult_to_width(float(ffn["ffn_mult"]), hidden)
        out.append(tuple(layer))
    return tuple(out)


def lfm2_ff_dim(cfg: dict, ff_dim: int) -> int:
    """vllm/model_executor/models/lfm2.py Lfm2MLP: with block_auto_adjust_ff_dim, int(2 ff / 3),
    times block_ffn_dim_multiplier (if any), rounded up to a multiple of block_multiple_of."""
    if not cfg.get("block_auto_adjust_ff_dim"):
        return ff_dim
    ff_dim = int(2 * ff_dim / 3)
    if cfg.get("block_ffn_dim_multiplier") is not None:
        ff_dim = int(float(cfg["block_ffn_dim_multiplier"]) * ff_dim)
    multiple = int(cfg.get("block_multiple_of") or 256)
    return multiple * ((ff_dim + multiple - 1) // multiple)
