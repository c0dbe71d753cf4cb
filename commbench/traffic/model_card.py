"""Model cards: a Hugging Face config.json plus a small serving block, as a frozen dataclass.

Any user's config.json loads the same way as the shipped cards in model_traces/: the HF field
names are read directly (nested `text_config` for multimodal wrappers such as Mistral3), and a
missing serving block is derived from `torch_dtype` and `quantization_config`.
Each layer is described by its blocks (attention, Mamba mixer, dense MLP, MoE, ...), derived from
whatever the config says per layer (`layer_types`, `layers_block_type`, `hybrid_override_pattern`,
`block_configs`, the MoE layer rules) under the architecture family rules of
model_traces/architectures.toml, so the trace resolves communication sites per layer.
Parameter counts follow the gated-MLP decoder layout of Llama / Mistral / Qwen3-MoE / gpt-oss:
    attention = hidden*(heads*head_dim) + 2*hidden*(kv_heads*head_dim) + (heads*head_dim)*hidden
    dense MLP = 3*hidden*intermediate            (gate, up, down)
    expert    = 3*hidden*moe_intermediate        (gate_up fused or not, plus down)
    router    = hidden*num_experts
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from commbench import CommbenchError
from commbench.data import data_dir, names_in, unknown_name_error
from commbench.traffic.config_checks import check_counts, expert_note, model_type_note
from commbench.traffic.limits import context_length
from commbench.dtypes import sizes_of

#: The activation / KV dtypes a card may name, with their bytes per element (commbench.dtypes).
DTYPE_BYTES = sizes_of("float32", "float16", "bfloat16", "fp8", "float8_e4m3fn", "fp8_e4m3", "fp8_e5m2", "q8_0", "q4_0")

#: Weight bytes per parameter of the served formats (docs/sources.md#weight-formats):
#: MXFP4 = 4-bit values + one 8-bit scale per 32 values = 4.25 bit; NVFP4 = 4-bit + FP8 scale per 16.
QUANT_WEIGHT_BYTES = {"mxfp4": 4.25 / 8, "fp8": 1.0, "nvfp4": 4.5 / 8, "modelopt_fp4": 4.5 / 8}

WEIGHT_GROUPS = ("attention", "dense_mlp", "experts", "router", "embedding", "lm_head")

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")

#: Other names real config.json files use for the same field (HF attribute_map entries and
#: model-specific spellings), tried in order after the canonical name.
ALIASES = {
    "num_hidden_layers": ("n_layer", "num_layers", "n_layers"),
    "hidden_size": ("n_embd", "d_model"),
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

#: The blocks a layer may hold (model_traces/architectures.toml explains each).
BLOCKS = ("attention", "mamba", "mamba2", "gated_deltanet", "mlp", "moe", "parallel_attention_mlp", "qk_norm_tp",
          "qk_all_gather", "qkv_all_gather", "short_conv", "laurel", "lightning_attention")


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


def _looks_like_hub_id(name: str) -> bool:
    """Org/Name with no path that exists here and no .json suffix: a Hugging Face hub model id."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.endswith(".json") and not Path(name).exists() \
        and not name.startswith((".", "~"))


def _fetch_hub_config(repo_id: str) -> Path:
    """config.json of a hub model, through huggingface_hub into its cache (nothing else is fetched).
    HF_HUB_OFFLINE=1 reads the cache only."""
    from commbench import require

    try:
        require("huggingface_hub")
    except CommbenchError as exc:
        raise CommbenchError(f"{repo_id!r} looks like a Hugging Face hub id; {exc}") from None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except LocalEntryNotFoundError:
        raise CommbenchError(f"cannot fetch config.json of hub model {repo_id!r}: not in the hub cache and the hub "
                             "is unreachable (or HF_HUB_OFFLINE=1)") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise CommbenchError(f"hub model {repo_id!r} not found or has no config.json "
                             "(a gated model needs `huggingface-cli login`)") from None
    except Exception as exc:  # network errors, bad ids: one line, not a traceback
        raise CommbenchError(f"cannot fetch config.json of hub model {repo_id!r}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    shipped = shipped_models()
    if name_or_path not in shipped and _looks_like_hub_id(name_or_path):
        return _fetch_hub_config(name_or_path)
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
    if _looks_like_hub_id(name_or_path) and name_or_path not in shipped_models():
        name = name_or_path  # the hub id, not the cache's snapshot hash
    return card_from_config(raw, name=name, source=str(path))


#: The activation dtype vLLM serves a config's dtype in with --dtype auto (vllm/config/model.py
#: _find_dtype, _resolve_auto_dtype): float32 checkpoints (or none named) are downcast to the
#: platform's preferred dtype, bfloat16 on CUDA GPUs from Ampere on.
AUTO_DTYPE = {"float32": "bfloat16", "bfloat16": "bfloat16", "float16": "float16"}


def _serving_block(raw: dict, cfg: dict) -> tuple[str, dict]:
    serving = raw.get("serving") or {}
    act = serving.get("activation_dtype")
    if not act:  # the checkpoint's dtype: transformers 5 writes `dtype`, older files `torch_dtype`
        named = next((c.get(k) for c in (raw, cfg) for k in ("dtype", "torch_dtype") if c.get(k)), None) or "float32"
        act = AUTO_DTYPE.get(str(named).replace("torch.", ""))
        if act is None:
            raise CommbenchError(f"unsupported dtype {named!r} in the model config; valid: {', '.join(AUTO_DTYPE)}")
    if act not in ("bfloat16", "float16", "float32"):
        raise CommbenchError(f"unsupported activation dtype {act!r}; valid: bfloat16, float16, float32")
    if "weight_bytes_per_param" in serving:
        wb = dict(serving["weight_bytes_per_param"])
        bad = sorted(set(wb) - set(WEIGHT_GROUPS))
        if bad:
            raise CommbenchError(f"unknown weight group {bad[0]!r} in serving block; valid: {', '.join(WEIGHT_GROUPS)}")
        return act, wb
    # Derived: every group in the activation dtype, quantised groups per quantization_config.
    base = DTYPE_BYTES[act]
    wb = {g: base for g in WEIGHT_GROUPS}
    quant = (raw.get("quantization_config") or cfg.get("quantization_config") or {}).get("quant_method", "")
    quant = str(quant).lower()
    if quant in QUANT_WEIGHT_BYTES:
        q = QUANT_WEIGHT_BYTES[quant]
        groups = ("experts",) if quant == "mxfp4" else ("attention", "dense_mlp", "experts")
        wb.update({g: q for g in groups})
    return act, wb


#: Bounds on a config's sizes: far beyond any real model, so a typo or a corrupt file is named, not run.
FIELD_MAX = {"num_hidden_layers": 10_000, "hidden_size": 1 << 20, "num_attention_heads": 1 << 14,
             "num_key_value_heads": 1 << 14, "head_dim": 1 << 14, "vocab_size": 1 << 24, "intermediate_size": 1 << 22,
             "moe_intermediate_size": 1 << 22, "num_experts": 1 << 16, "num_experts_per_tok": 1 << 10,
             "sliding_window": 1 << 30, "decoder_sparse_step": 10_000, "first_k_dense_replace": 10_000}


def _whole(cfg: dict, name: str, *keys: str, default: int | None = None, minimum: int = 1) -> int:
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


@lru_cache(maxsize=1)
def _architectures() -> dict:
    return tomllib.loads((data_dir("model_traces") / "architectures.toml").read_text())


def family_of(cfg: dict) -> Family:
    """The architectures.toml family whose model_types include cfg's model_type (and whose
    `when_any` fields hold), with [default]'s fields where the family does not set them."""
    arch = _architectures()
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
                  tuple(merged.get("boundary_none", ())))


#: Per-layer list entries (transformers 5 names, with the legacy ones it remaps) and the block each means.
MIXER_KINDS = {"full_attention": "attention", "attention": "attention", "sliding_attention": "attention",
               "chunked_attention": "attention", "linear_attention": None, "mamba": None,
               "conv": "short_conv"}  # LFM2's short-convolution layers
WHOLE_LAYER_KINDS = {**MIXER_KINDS, "mlp": "mlp", "moe": "moe"}
#: hybrid_override_pattern characters (Nemotron-H): Mamba, attention, MLP, MoE.
PATTERN_CHARS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def _text_config(raw: dict, name: str) -> dict:
    """The language model's config: a multimodal wrapper's text_config with the library defaults
    transformers fills in (architectures.toml [library_defaults]), else the config itself."""
    if not isinstance(raw.get("text_config"), dict):
        return raw
    cfg = dict(raw["text_config"])
    defaults = _architectures().get("library_defaults", {})
    cfg.setdefault("model_type", defaults.get("text_model_type", {}).get(str(raw.get("model_type")), ""))
    if cfg.get("vocab_size") is None and raw.get("vocab_size") is None:
        vocab = defaults.get("vocab_size", {}).get(cfg["model_type"])
        if vocab is None:
            raise CommbenchError(f"model config {name!r}: text_config has no vocab_size and its model_type "
                                 f"{cfg['model_type']!r} has no known library default; add vocab_size")
        cfg["vocab_size"] = vocab
    cfg.setdefault("vocab_size", raw.get("vocab_size"))
    return cfg


def _layer_list(cfg: dict, name: str) -> tuple[str, list] | None:
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


def _moe_mask(cfg: dict, name: str, layers: int, num_experts: int) -> tuple[bool, ...]:
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
    step = _whole(cfg, name, "decoder_sparse_step", default=1)
    first_dense = _whole(cfg, name, "first_k_dense_replace", default=0, minimum=0)
    last = cfg.get("moe_layer_end_index")
    last = layers - 1 if last is None else _whole(cfg, name, "moe_layer_end_index", minimum=-1)
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        if len(freq) != layers:
            raise CommbenchError(f"model config {name!r}: moe_layer_freq has {len(freq)} entries, "
                                 f"num_hidden_layers is {layers}")
        flags = [bool(f) for f in freq]
    else:
        every = _whole(cfg, name, "moe_layer_freq", default=1)
        flags = [i % every == 0 for i in range(layers)]
    period = _whole(cfg, name, "expert_layer_period", default=0, minimum=0)
    offset = _whole(cfg, name, "expert_layer_offset", default=0, minimum=0)
    return tuple(
        i not in dense_only and (i + 1) % step == 0 and first_dense <= i <= last and flags[i]
        and (not period or i % period == offset) for i in range(layers)
    )


def _collapse_per_layer(cfg: dict, name: str, layers: int, text_first: tuple = ()) -> tuple[dict, dict, list]:
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


def _layer_blocks(cfg: dict, name: str, layers: int, family: Family, moe_mask: tuple[bool, ...]):
    """(blocks per layer, attention-free layer count source) from the config's per-layer description."""
    ffn = tuple("moe" if moe else "mlp" for moe in moe_mask)
    listed = _layer_list(cfg, name)
    attn_period = _whole(cfg, name, "attn_layer_period", default=0, minimum=0)
    if listed is None and attn_period:  # Jamba: attention every attn_layer_period layers, Mamba between
        offset = _whole(cfg, name, "attn_layer_offset", default=0, minimum=0)
        listed = ("attn_layer_period", ["attention" if i % attn_period == offset else "mamba" for i in range(layers)])
    step = _whole(cfg, name, "mamba_step", default=0, minimum=0)
    if listed is None and step > 1:  # PLaMo 2 (plamo2.py is_mamba): attention where i % step == step // 2
        last_only = layers <= step // 2  # a model shorter than that: attention in the last layer only
        listed = ("mamba_step", ["attention" if (i == layers - 1 if last_only else i % step == step // 2) else "mamba"
                                 for i in range(layers)])
    interval = _whole(cfg, name, "full_attention_interval", default=0, minimum=0)
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


def _apply_block_configs(cfg: dict, name: str, layers: int, hidden: int, blocks: tuple, widths: list) -> tuple:
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


def _mixers(cfg: dict, name: str, blocks: tuple, hidden: int, act: str) -> dict:
    """The card fields of the non-attention mixers the layers use, from the config's fields
    (transformers' defaults where a field is left out): per mixer kind, one layer's parameters
    (mixer_params) and recurrent-state bytes per sequence (state_bytes_per_seq), held in
    `mamba_ssm_cache_dtype` where the config names one, else the activation dtype; and the sizes
    the trace's sites use: Mamba-1's x_proj width r + 2 N, Mamba-2's group count g.

      mamba (Mamba-1; vllm/model_executor/layers/mamba/mamba_mixer.py), d = expand x hidden:
        in_proj 2 h d + conv d K + x_proj d (r + 2 N) + dt_proj r d + d + A d N + D d + out_proj d h;
        state d (K - 1) + d N
      mamba2 (mamba_mixer2.py), d = heads x head_dim, g groups:
        in_proj h (2 d + 2 g N + heads) + conv (d + 2 g N) K + 3 heads + norm d + out_proj d h;
        state (d + 2 g N)(K - 1) + heads x head_dim x N
      gated_deltanet (qwen3_next.py), keys nk x dk, values nv x dv:
        in_proj_qkvz h (2 nk dk + 2 nv dv) + in_proj_ba h 2 nv + conv (2 nk dk + nv dv) K + 2 nv
        + norm dv + out_proj nv dv h; state (2 nk dk + nv dv)(K - 1) + nv dk dv
    """
    kinds = {b for layer in blocks for b in layer} & {"mamba", "mamba2", "gated_deltanet", "short_conv"}
    cache = str(cfg.get("mamba_ssm_cache_dtype") or act).replace("torch.", "")
    state_bytes = DTYPE_BYTES.get(cache, DTYPE_BYTES[act])
    params, state, sizes = {}, {}, {}
    w = lambda *keys, default: _whole(cfg, name, *keys, default=default)  # noqa: E731
    if "mamba" in kinds:
        d = w("mamba_expand", "expand", default=2) * hidden
        r, n, k = w("mamba_dt_rank", default=-(-hidden // 16)), w("mamba_d_state", default=16), w("mamba_d_conv", default=4)
        if cfg.get("mamba_step"):  # PLaMo 2 (plamo2.py Plamo2MambaMixer): heads x head size wide, bcdt_proj to
            d = w("mamba_num_heads", default=1) * w("hidden_size_per_head", default=128)  # max(64, h // 16) + 2 N
            r = max(64, hidden // 16)
        params["mamba"] = 2 * hidden * d + d * k + d * (r + 2 * n) + r * d + d + d * n + d + d * hidden
        state["mamba"] = (d * (k - 1) + d * n) * state_bytes
        sizes["mamba_x_proj_width"] = r + 2 * n
    if "mamba2" in kinds:
        heads = w("mamba_num_heads", "mamba_n_heads", "n_mamba_heads", default=0)
        d_ssm = w("mamba_d_ssm", default=0)  # Falcon-H1: the mixer width, its head size "auto" = d_ssm / heads
        head_dim = 0 if cfg.get("mamba_d_head") == "auto" else w("mamba_head_dim", "mamba_d_head", default=0)
        d = d_ssm or (heads * head_dim if heads and head_dim else w("expand", "mamba_expand", default=2) * hidden)
        heads = heads or max(1, d // 64)
        g = w("n_groups", "mamba_n_groups", "mamba_ngroups", default=1)
        n, k = w("ssm_state_size", "mamba_d_state", default=128), w("conv_kernel", "mamba_d_conv", default=4)
        params["mamba2"] = hidden * (2 * d + 2 * g * n + heads) + (d + 2 * g * n) * k + 3 * heads + d + d * hidden
        state["mamba2"] = ((d + 2 * g * n) * (k - 1) + d * n) * state_bytes
        sizes["mamba_n_groups"] = g
    if "gated_deltanet" in kinds:
        nk, dk = w("linear_num_key_heads", default=16), w("linear_key_head_dim", default=128)
        nv, dv = w("linear_num_value_heads", default=32), w("linear_value_head_dim", default=128)
        k = w("linear_conv_kernel_dim", default=4)
        params["gated_deltanet"] = hidden * (2 * nk * dk + 2 * nv * dv) + hidden * 2 * nv + (2 * nk * dk + nv * dv) * k \
            + 2 * nv + dv + nv * dv * hidden
        state["gated_deltanet"] = ((2 * nk * dk + nv * dv) * (k - 1) + nv * dk * dv) * state_bytes
    if any("laurel" in layer for layer in blocks):  # gemma3n.py Gemma3nLaurelBlock: hidden -> rank -> hidden
        params["laurel"] = 2 * hidden * w("laurel_rank", default=64)
    if any("lightning_attention" in layer for layer in blocks):  # layers/mamba/linear_attn.py, q = heads x head_dim:
        q = w("num_attention_heads", default=1) * w("head_dim", default=max(1, hidden // w("num_attention_heads", default=1)))
        params["lightning_attention"] = 5 * hidden * q + q  # qkv_proj 3 h q, output_gate h q, out_proj q h, norm q
        state["lightning_attention"] = q * (q // w("num_attention_heads", default=1)) * 4  # float32 kv [heads, d, d]
    if "short_conv" in kinds:  # layers/mamba/short_conv.py: in_proj d -> 3 d, conv d x L, out_proj d -> d
        d, k = w("conv_dim", default=hidden), w("conv_L_cache", default=3)
        params["short_conv"] = 3 * d * d + d * k + d * d
        state["short_conv"] = d * (k - 1) * state_bytes
    return {"mixer_params": params, "state_bytes_per_seq": state, **sizes}


def _architecture_names(raw: dict, name: str) -> tuple[str, ...]:
    """The top-level `architectures` (a name or a list of names, as vLLM reads it), or ()."""
    value = raw.get("architectures")
    value = [value] if isinstance(value, str) else value
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CommbenchError(f"{name}: `architectures` must be a list of model class names "
                             f"(e.g. [\"LlamaForCausalLM\"]), got {value!r}")
    return tuple(value)


def card_from_config(raw: dict, name: str, source: str = "") -> ModelCard:
    """Build a ModelCard from a parsed config.json dict (HF field names)."""
    # long: one config field per line, read in the order a config.json lists them
    cfg = _text_config(raw, name)  # multimodal wrappers keep the LM under text_config
    family = family_of(cfg)
    if family.unsupported:
        raise CommbenchError(f"model config {name!r}: model_type {cfg.get('model_type')!r} cannot be traced: {family.unsupported}")
    unmodelled = _architectures().get("unsupported_architectures", {})
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
    layer_list = _layer_list(cfg, name)
    layers = _whole(cfg, name, "num_hidden_layers", default=len(layer_list[1]) if layer_list else None)
    cfg, per_layer, notes = _collapse_per_layer(cfg, name, layers, family.text_first)
    notes += interval_note
    hidden = _whole(cfg, name, "hidden_size")
    heads = _whole(cfg, name, "num_attention_heads")
    _whole(cfg, name, "vocab_size")
    kv_heads = _whole(cfg, name, "num_key_value_heads", default=1 if cfg.get("multi_query") else heads)
    head_dim = _whole(cfg, name, "head_dim", default=max(1, hidden // heads))
    num_experts = _whole(cfg, name, "num_experts", default=0)
    k = _whole(cfg, name, "num_experts_per_tok", default=0) if num_experts else 0  # a top-k without experts is unused
    if num_experts and not k:
        raise CommbenchError(f"model config {name!r} has {num_experts} experts but no 'num_experts_per_tok'")
    if k > num_experts:
        raise CommbenchError(f"model config {name!r}: num_experts_per_tok = {k} exceeds the {num_experts} experts")
    check_counts(cfg, name, heads, kv_heads)  # fields that do not fit together (config_checks)
    ffn_kinds_listed = bool(layer_list and {"mlp", "moe"} & set(map(str, layer_list[1])))
    notes = [*notes, *model_type_note(cfg, _architectures()), *expert_note(cfg, num_experts, ffn_kinds_listed)]
    moe_inter = _whole(cfg, name, "moe_intermediate_size", "intermediate_size", default=0) if num_experts else 0
    # GPT-2 / BLOOM / GPT-J leave the MLP width out: 4 x hidden (their config classes' default)
    dense_inter = _whole(cfg, name, "intermediate_size_mlp", "intermediate_size",
                         default=family.mlp_width_per_hidden * hidden)
    if family.ff_dim_field:  # LFM2: the MLP width from block_ff_dim (lfm2.py Lfm2MLP)
        dense_inter = _lfm2_ff_dim(cfg, _whole(cfg, name, family.ff_dim_field))

    moe_mask = _moe_mask(cfg, name, layers, num_experts)
    off = {b for b, key in family.block_if.items() if not cfg.get(key)}  # blocks the config turns off (Molmo)
    layer_family = replace(family, blocks=tuple(b for b in family.blocks if b not in off)) if off else family
    blocks = _layer_blocks(cfg, name, layers, layer_family, moe_mask)
    widths = list(per_layer.get("intermediate_size", [dense_inter] * layers)) if "intermediate_size_mlp" not in cfg \
        else [dense_inter] * layers
    if family.shared_mlp_width:  # a shared expert's dense MLP in the MoE layers (`mlp_if_moe`)
        shared = _whole(cfg, name, family.shared_mlp_width, default=0, minimum=0)
        widths = [shared if moe else w for w, moe in zip(widths, moe_mask)]
    if cfg.get("block_configs") is not None:
        blocks = _apply_block_configs(cfg, name, layers, hidden, blocks, widths)
    moe_mask = tuple("moe" in b for b in blocks)
    if not num_experts and any(moe_mask):
        raise CommbenchError(f"model config {name!r} has MoE layers but no expert count (num_experts / n_routed_experts)")
    if any("mlp" in b for b in blocks) and not dense_inter and not cfg.get("block_configs"):
        raise CommbenchError(f"model config {name!r} is missing required field 'intermediate_size'")
    ple = _whole(cfg, name, "hidden_size_per_layer_input", default=0, minimum=0) \
        if family.per_layer_inputs or "per_layer_inputs" in family.boundary else 0
    window = _whole(cfg, name, "sliding_window", default=0) or None
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == layers:
        sliding = tuple(t == "sliding_attention" for t in layer_types)
    else:
        uses_window = window is not None and cfg.get("use_sliding_window", True) is not False
        sliding = tuple(uses_window and "attention" in b for b in blocks)
    act, wb = _serving_block(raw, cfg)
    mixers = _mixers(cfg, name, blocks, hidden, act)
    card = ModelCard(
        name=name,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=_whole(cfg, name, "vocab_size"),
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
        context_length=(context_length(cfg) or (None, ""))[0],
        context_field=(context_length(cfg) or (None, ""))[1],
        architectures=_architecture_names(raw, name),
        family=family.name,
        layer_blocks=blocks,
        layer_mlp_width=tuple(widths),
        # a tensor a family may send is sent only where the config has it (Gemma 4 without per-layer inputs)
        boundary_tensors=tuple(t for t in family.boundary if t != "per_layer_inputs" or ple),
        per_layer_input_size=ple,
        boundary_none=family.boundary_none,
        per_layer_embed=not family.per_layer_embed_archs or bool(set(family.per_layer_embed_archs) & set(
            map(str, raw.get("architectures") or ()))),
        altup_num_inputs=_whole(cfg, name, "altup_num_inputs", default=4) if family.altup else 0,
        pp_unsupported=family.pp_unsupported,
        gated_mlp=family.gated_mlp,
        mamba_gated_norm=bool(cfg.get("mamba_rms_norm", True)),
        router_dtype=_router_dtype(cfg, name, family),
        router_dtype_engines=family.router_dtype_engines,
        sequence_parallel_moe=family.sequence_parallel_moe,
        **_sp_residual(family, moe_mask),
        warnings=tuple(notes),
        **mixers,
    )
    return card


def _lfm2_ff_dim(cfg: dict, ff_dim: int) -> int:
    """vllm/model_executor/models/lfm2.py Lfm2MLP: with block_auto_adjust_ff_dim, int(2 ff / 3),
    times block_ffn_dim_multiplier (if any), rounded up to a multiple of block_multiple_of."""
    if not cfg.get("block_auto_adjust_ff_dim"):
        return ff_dim
    ff_dim = int(2 * ff_dim / 3)
    if cfg.get("block_ffn_dim_multiplier") is not None:
        ff_dim = int(float(cfg["block_ffn_dim_multiplier"]) * ff_dim)
    multiple = int(cfg.get("block_multiple_of") or 256)
    return multiple * ((ff_dim + multiple - 1) // multiple)


def _sp_residual(family: Family, moe_mask: tuple) -> dict:
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


def _router_dtype(cfg: dict, name: str, family: Family) -> str:
    """The MoE gate's logits dtype: the config's router-dtype field where the family reads one,
    else the family's fixed one ("" = the activation dtype)."""
    value = cfg.get(family.router_dtype_field) if family.router_dtype_field else None
    if value is None:
        return family.router_dtype
    if str(value) not in ROUTER_DTYPES:
        raise CommbenchError(f"model config {name!r}: {family.router_dtype_field} = {value!r}; valid: "
                             f"{', '.join(ROUTER_DTYPES)}")
    return ROUTER_DTYPES[str(value)]
