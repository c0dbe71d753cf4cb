"""Model cards: a Hugging Face config.json plus a small serving block, as a frozen dataclass.

Any user's config.json loads the same way as the shipped cards in model_traces/: the HF field
names are read directly (nested `text_config` for multimodal wrappers such as Mistral3), and a
missing serving block is derived from `torch_dtype` and `quantization_config`.
Each layer is described by its blocks (attention, Mamba mixer, dense MLP, MoE, ...), derived from
whatever the config says per layer (`layer_types`, `layers_block_type`, `hybrid_override_pattern`,
`block_configs`, the MoE layer rules) under the architecture family rules of
model_traces/architectures.toml, so the trace resolves communication sites per layer.
This module holds the value and the two calls that make one (load_model_card: a shipped name, a
file, a folder or a hub id; card_from_config: a parsed config); the parts are read by their own
modules: the family and its defaults (families), each field and its aliases (config_fields), the
layers' blocks (layer_blocks), the mixers' sizes (mixers), the served formats (weight_formats),
a hub id's config.json (hub).
Parameter counts follow the gated-MLP decoder layout of Llama / Mistral / Qwen3-MoE / gpt-oss:
    attention = hidden*(heads*head_dim) + 2*hidden*(kv_heads*head_dim) + (heads*head_dim)*hidden
    dense MLP = 3*hidden*intermediate            (gate, up, down)
    expert    = 3*hidden*moe_intermediate        (gate_up fused or not, plus down)
    router    = hidden*num_experts
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from commbench import CommbenchError
from commbench.data import data_dir, names_in, unknown_name_error
from commbench.traffic.config_checks import check_counts, expert_note, model_type_note
from commbench.traffic.config_fields import architecture_names, collapse_per_layer, whole
from commbench.traffic.families import architectures_toml, family_config, router_dtype_of, sp_residual_fields
from commbench.traffic.hub import fetch_hub_config, looks_like_hub_id
from commbench.traffic.layer_blocks import apply_block_configs, blocks_per_layer, lfm2_ff_dim, moe_layer_mask, per_layer_list
from commbench.traffic.limits import context_length
from commbench.traffic.mixers import mixer_fields
from commbench.traffic.weight_formats import DTYPE_BYTES, serving_block


@dataclass(frozen=True)
class ModelCard:
    name: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int  # dense MLP width (0 when every layer is MoE)
    moe_intermediate_size: int  # per-expert width (0 for dense models)
    num_experts: int  # routed experts per MoE layer (0 for dense models)
    experts_per_token: int
    moe_layer_mask: tuple[bool, ...]  # True where layer i is MoE
    sliding_layer_mask: tuple[bool, ...]  # True where layer i uses the sliding window
    sliding_window: int | None
    attention_bias: bool
    tie_word_embeddings: bool
    activation_dtype: str
    weight_bytes_per_param: dict = field(hash=False, compare=False)
    source: str = ""
    kv_cache_dtype: str = ""  # the engine's --kv-cache-dtype; "" = the activation dtype (vLLM's "auto")
    recipe: str = "checkpoint"  # which serving recipe set the weight bytes (commbench.predict.recipes)
    model_type: str = ""  # the config's HF model_type ("" when it names none)
    context_length: int | None = None  # vLLM's derived max_model_len (traffic/limits.py); None: the config names none
    context_field: str = ""  # the config field(s) it came from
    architectures: tuple = ()  # the config's `architectures` (the engine's registry resolves them: traffic/registry.py)
    family: str = "default"  # the architectures.toml family whose rules built the layers
    layer_blocks: tuple = ()  # per layer, its blocks in engine order, e.g. ("attention", "moe")
    layer_mlp_width: tuple = ()  # per layer, the dense MLP width (block_configs' ffn_mult; else intermediate_size)
    boundary_tensors: tuple = ("hidden_states", "residual")  # what a pipeline stage sends to the next
    boundary_none: tuple = ()  # IntermediateTensors keys sent as None: in the metadata, no tensor (MiniMax-Text-01)
    mamba_x_proj_width: int = 0  # Mamba-1 x_proj output: dt_rank + 2 * d_state
    mamba_n_groups: int = 0  # Mamba-2 B/C groups (the gated norm all-reduces when it is 1)
    per_layer_input_size: int = 0  # Gemma 4's hidden_size_per_layer_input (per-layer embeddings; 0 = none)
    gated_mlp: bool = True  # gate, up and down (3 matrices); False: up and down (Nemotron-H's relu2 MLP)
    mamba_gated_norm: bool = True  # Mamba-2's gated RMSNorm runs (MambaMixer2 use_rms_norm; Falcon-H1 mamba_rms_norm)
    router_dtype: str = ""  # dtype of the MoE gate's logits ("" = the activation dtype)
    router_dtype_engines: tuple = ()  # the engines whose gate gives router_dtype (all when empty)
    sequence_parallel_moe: tuple = ()  # engines whose MoE blocks run sequence-parallel under EP x TP
    moe_expert_parallel: bool = True  # False: the MoE block is not a FusedMoE layer (no EP dispatch / combine)
    moe_reduce: str = "fused"  # "explicit": its own all-reduce, kept under the DeepEP / pplx all2all kernels
    kernel_shared_expert: bool = False  # a shared expert that all-reduces on its own under those kernels
    moe_reduce_engines: tuple = ()  # the engines where moe_reduce "explicit" holds (all when empty)
    runner_shared_expert: bool = False  # the current release's MoE runner holds a shared expert (reduced alone
    # under the all2all kernels: runner/moe_runner.py _maybe_reduce_shared_expert_output)
    # ... and those whose layers then keep the residual stream chunked (traffic/sequence_parallel.py):
    sp_residual_engines: tuple = ()  # the engines
    sp_residual_layers: tuple = ()  # per layer, whether it runs chunked (when the engine and plan allow)
    sp_residual_from_embedding: bool = False  # the model chunks right after the embedding
    sp_residual_exit: tuple = ()  # tensors all-gathered when leaving the chunked stream
    per_layer_embed: bool = True  # per-layer inputs are embedded each step (vocab-parallel all-reduce), where it has them
    altup_num_inputs: int = 0  # Gemma 3n's AltUp streams (altup_num_inputs - 1 projections gathered each way)
    pp_unsupported: str = ""  # why the engine has no pipeline parallelism for this family ("" = it has)
    mixer_params: dict = field(default_factory=dict, hash=False, compare=False)  # per layer, by non-attention mixer
    state_bytes_per_seq: dict = field(default_factory=dict, hash=False, compare=False)  # recurrent state per layer
    warnings: tuple = ()  # what the card could not derive exactly, said in every output

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def activation_bytes(self) -> int:
        return DTYPE_BYTES[self.activation_dtype]

    @property
    def is_moe(self) -> bool:
        return any(self.moe_layer_mask)

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layer_mask)

    @property
    def num_dense_layers(self) -> int:
        return self.num_hidden_layers - self.num_moe_layers

    def blocks_of(self, layer: int) -> tuple[str, ...]:
        return self.layer_blocks[layer]

    def attention_blocks(self, layer: int) -> int:
        """Attention blocks of a layer (parallel attention + MLP blocks included): each has its own KV."""
        return sum(b in ("attention", "parallel_attention_mlp") for b in self.layer_blocks[layer])

    @property
    def uniform_layers(self) -> bool:
        """Every layer is attention + one MLP or MoE of the card's widths: what `commbench compute`
        measures (the serving model prices each layer from its blocks)."""
        return all(b in (("attention", "mlp"), ("attention", "moe")) for b in self.layer_blocks) \
            and all(w == self.intermediate_size for w, moe in zip(self.layer_mlp_width, self.moe_layer_mask) if not moe)

    @property
    def block_kinds(self) -> frozenset:
        """Every block kind the layers hold (the engine registry checks what a model file can build)."""
        return frozenset(b for blocks in self.layer_blocks for b in blocks)

    @property
    def layer_kind_summary(self) -> str:
        """Layer kinds and their counts, e.g. '27 mamba2, 4 attention, 25 mlp'."""
        counts: dict[str, int] = {}
        for blocks in self.layer_blocks:
            for block in blocks:
                counts[block] = counts.get(block, 0) + 1
        return ", ".join(f"{n} {b}" for b, n in counts.items())

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def attention_params_per_layer(self) -> int:
        weights = 2 * self.hidden_size * self.q_size + 2 * self.hidden_size * self.kv_size
        biases = (self.q_size + 2 * self.kv_size + self.hidden_size) if self.attention_bias else 0
        return weights + biases

    @property
    def dense_mlp_params_per_layer(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def params_per_expert(self) -> int:
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def layer_params(self, layer: int, active: bool = False) -> dict[str, float]:
        """One layer's parameters by weight group, from its blocks: attention (attention and
        parallel blocks), dense_mlp (its width; 3 or 2 matrices), experts (all, or the k one token
        uses when `active`) and router (MoE blocks), mixer (Mamba / Gated DeltaNet blocks)."""
        blocks = self.layer_blocks[layer]
        n_mlp = sum(b in ("mlp", "parallel_attention_mlp") for b in blocks)
        n_moe = blocks.count("moe")
        experts = self.experts_per_token if active else self.num_experts
        return {"attention": self.attention_blocks(layer) * self.attention_params_per_layer,
                "dense_mlp": n_mlp * (3 if self.gated_mlp else 2) * self.hidden_size * self.layer_mlp_width[layer],
                "experts": n_moe * experts * self.params_per_expert,
                "router": n_moe * self.router_params_per_layer,
                "mixer": sum(self.mixer_params.get(b, 0) for b in blocks)}

    @property
    def total_params(self) -> int:
        layers = sum(sum(self.layer_params(i).values()) for i in range(self.num_hidden_layers))
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return int(layers + self.embedding_params + lm_head)

    @property
    def active_params(self) -> int:
        """Parameters one token multiplies through (embedding lookup excluded, lm_head included)."""
        layers = sum(sum(self.layer_params(i, active=True).values()) for i in range(self.num_hidden_layers))
        return int(layers + self.embedding_params)

    @property
    def kv_bytes_per_token_per_layer(self) -> float:
        """K and V of one token in one layer: 2 * kv_heads * head_dim * bytes of the KV-cache dtype."""
        return 2 * self.kv_size * DTYPE_BYTES[self.kv_cache_dtype or self.activation_dtype]

    @property
    def weight_format(self) -> str:
        """Short description such as 'experts 4.25b, rest 16b' (bits per parameter)."""
        bits = {g: b * 8 for g, b in self.weight_bytes_per_param.items()}
        common = max(set(bits.values()), key=list(bits.values()).count)
        parts = [f"{g} {b:g}b" for g, b in bits.items() if b != common]
        return ", ".join(parts + [f"{'rest' if parts else 'all'} {common:g}b"])

    def weight_bytes(self, group: str) -> float:
        return float(self.weight_bytes_per_param.get(group, self.activation_bytes))

    def summary(self) -> dict:
        return {
            "model": self.name,
            "layers": self.num_hidden_layers,
            "hidden": self.hidden_size,
            "heads": self.num_attention_heads,
            "kv_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab": self.vocab_size,
            "experts": f"{self.num_experts}/{self.experts_per_token}" if self.is_moe else "dense",
            "sliding_layers": sum(self.sliding_layer_mask),
            "total_params_b": round(self.total_params / 1e9, 2),
            "active_params_b": round(self.active_params / 1e9, 2),
            "weights": self.weight_format,
        }


def shipped_models() -> list[str]:
    return names_in("model_traces", ".json")


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    shipped = shipped_models()
    if name_or_path not in shipped and looks_like_hub_id(name_or_path):
        return fetch_hub_config(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise CommbenchError(f"cannot read model config {str(path)!r}: no such file")
        return path
    if name_or_path not in shipped:
        raise unknown_name_error("model", name_or_path, shipped)
    return data_dir("model_traces") / f"{name_or_path}.json"


def load_model_card(name_or_path: str) -> ModelCard:
    """Load a shipped card by name, or any config.json (file or folder holding one)."""
    path = _resolve_path(name_or_path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommbenchError(f"cannot read model config {str(path)!r}: {exc}") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit: no config is
        raise CommbenchError(f"cannot read model config {str(path)!r}: its JSON is nested deeper than the "
                             "interpreter's recursion limit; a config.json is an object of fields") from None
    if not isinstance(raw, dict):
        raise CommbenchError(f"model config {str(path)!r} is not a JSON object")
    name = path.stem if path.name != "config.json" else path.parent.name
    if looks_like_hub_id(name_or_path) and name_or_path not in shipped_models():
        name = name_or_path  # the hub id, not the cache's snapshot hash
    return card_from_config(raw, name=name, source=str(path))


def card_from_config(raw: dict, name: str, source: str = "") -> ModelCard:
    """Build a ModelCard from a parsed config.json dict (HF field names)."""
    # long: one config field per line, read in the order a config.json lists them
    cfg, family, interval_note = family_config(raw, name)  # the LM's fields, as its family's class fills them in
    layer_list = per_layer_list(cfg, name)
    layers = whole(cfg, name, "num_hidden_layers", default=len(layer_list[1]) if layer_list else None)
    cfg, per_layer, notes = collapse_per_layer(cfg, name, layers, family.text_first)
    notes += interval_note
    hidden = whole(cfg, name, "hidden_size")
    heads = whole(cfg, name, "num_attention_heads")
    whole(cfg, name, "vocab_size")
    kv_heads = whole(cfg, name, "num_key_value_heads", default=1 if cfg.get("multi_query") else heads)
    head_dim = whole(cfg, name, "head_dim", default=max(1, hidden // heads))
    num_experts = whole(cfg, name, "num_experts", default=0)
    k = whole(cfg, name, "num_experts_per_tok", default=0) if num_experts else 0  # a top-k without experts is unused
    if num_experts and not k:
        raise CommbenchError(f"model config {name!r} has {num_experts} experts but no 'num_experts_per_tok'")
    if k > num_experts:
        raise CommbenchError(f"model config {name!r}: num_experts_per_tok = {k} exceeds the {num_experts} experts")
    check_counts(cfg, name, heads, kv_heads)  # fields that do not fit together (config_checks)
    ffn_kinds_listed = bool(layer_list and {"mlp", "moe"} & set(map(str, layer_list[1])))
    notes = [*notes, *model_type_note(cfg, architectures_toml()), *expert_note(cfg, num_experts, ffn_kinds_listed)]
    moe_inter = whole(cfg, name, "moe_intermediate_size", "intermediate_size", default=0) if num_experts else 0
    # GPT-2 / BLOOM / GPT-J leave the MLP width out: 4 x hidden (their config classes' default)
    dense_inter = whole(cfg, name, "intermediate_size_mlp", "intermediate_size",
                        default=family.mlp_width_per_hidden * hidden)
    if family.ff_dim_field:  # LFM2: the MLP width from block_ff_dim (lfm2.py Lfm2MLP)
        dense_inter = lfm2_ff_dim(cfg, whole(cfg, name, family.ff_dim_field))

    moe_mask = moe_layer_mask(cfg, name, layers, num_experts)
    off = {b for b, key in family.block_if.items() if not cfg.get(key)}  # blocks the config turns off (Molmo)
    layer_family = replace(family, blocks=tuple(b for b in family.blocks if b not in off)) if off else family
    blocks = blocks_per_layer(cfg, name, layers, layer_family, moe_mask)
    widths = list(per_layer.get("intermediate_size", [dense_inter] * layers)) if "intermediate_size_mlp" not in cfg \
        else [dense_inter] * layers
    if family.shared_mlp_width:  # a shared expert's dense MLP in the MoE layers (`mlp_if_moe`)
        shared = whole(cfg, name, family.shared_mlp_width, default=0, minimum=0)
        widths = [shared if moe else w for w, moe in zip(widths, moe_mask)]
    if cfg.get("block_configs") is not None:
        blocks = apply_block_configs(cfg, name, layers, hidden, blocks, widths)
    moe_mask = tuple("moe" in b for b in blocks)
    if not num_experts and any(moe_mask):
        raise CommbenchError(f"model config {name!r} has MoE layers but no expert count (num_experts / n_routed_experts)")
    if any("mlp" in b for b in blocks) and not dense_inter and not cfg.get("block_configs"):
        raise CommbenchError(f"model config {name!r} is missing required field 'intermediate_size'")
    ple = whole(cfg, name, "hidden_size_per_layer_input", default=0, minimum=0) \
        if family.per_layer_inputs or "per_layer_inputs" in family.boundary else 0
    window = whole(cfg, name, "sliding_window", default=0) or None
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == layers:
        sliding = tuple(t == "sliding_attention" for t in layer_types)
    else:
        uses_window = window is not None and cfg.get("use_sliding_window", True) is not False
        sliding = tuple(uses_window and "attention" in b for b in blocks)
    act, wb = serving_block(raw, cfg)
    context = context_length(cfg) or (None, "")
    mixers = mixer_fields(cfg, name, blocks, hidden, act)
    card = ModelCard(
        name=name,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=whole(cfg, name, "vocab_size"),
        intermediate_size=dense_inter if any(not m for m in moe_mask) else 0,
        moe_intermediate_size=moe_inter,
        num_experts=num_experts,
        experts_per_token=k,
        moe_layer_mask=moe_mask,
        sliding_layer_mask=sliding,
        sliding_window=int(window) if window and any(sliding) else None,
        attention_bias=bool(cfg.get("attention_bias", False)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", raw.get("tie_word_embeddings", False))),
        activation_dtype=act,
        weight_bytes_per_param=wb,
        source=source,
        model_type=str(cfg.get("model_type") or ""),
        context_length=context[0],
        context_field=context[1],
        architectures=architecture_names(raw, name),
        family=family.name,
        layer_blocks=blocks,
        layer_mlp_width=tuple(widths),
        # a tensor a family may send is sent only where the config has it (Gemma 4 without per-layer inputs)
        boundary_tensors=tuple(t for t in family.boundary if t != "per_layer_inputs" or ple),
        per_layer_input_size=ple,
        boundary_none=family.boundary_none,
        per_layer_embed=not family.per_layer_embed_archs or bool(set(family.per_layer_embed_archs) & set(
            map(str, raw.get("architectures") or ()))),
        altup_num_inputs=whole(cfg, name, "altup_num_inputs", default=4) if family.altup else 0,
        pp_unsupported=family.pp_unsupported,
        gated_mlp=family.gated_mlp,
        mamba_gated_norm=bool(cfg.get("mamba_rms_norm", True)),
        router_dtype=router_dtype_of(cfg, name, family),
        router_dtype_engines=family.router_dtype_engines,
        sequence_parallel_moe=family.sequence_parallel_moe,
        moe_expert_parallel=family.moe_expert_parallel,
        moe_reduce=family.moe_reduce,
        kernel_shared_expert=bool(family.kernel_shared_expert_field and cfg.get(family.kernel_shared_expert_field)),
        moe_reduce_engines=family.moe_reduce_engines,
        runner_shared_expert=bool(family.runner_shared_expert_field and cfg.get(family.runner_shared_expert_field)),
        **sp_residual_fields(family, moe_mask),
        warnings=tuple(notes),
        **mixers,
    )
    return card
