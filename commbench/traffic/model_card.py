"""Model cards: a Hugging Face config.json plus a small serving block, as a frozen dataclass.

Any user's config.json loads the same way as the shipped cards in model_traces/: the HF field
names are read directly (nested `text_config` for multimodal wrappers such as Mistral3), and a
missing serving block is derived from `torch_dtype` and `quantization_config`.
Parameter counts follow the gated-MLP decoder layout of Llama / Mistral / Qwen3-MoE / gpt-oss:
    attention = hidden*(heads*head_dim) + 2*hidden*(kv_heads*head_dim) + (heads*head_dim)*hidden
    dense MLP = 3*hidden*intermediate            (gate, up, down)
    expert    = 3*hidden*moe_intermediate        (gate_up fused or not, plus down)
    router    = hidden*num_experts
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from commbench import CommbenchError
from commbench.data import data_dir, names_in, unknown_name_error

#: Bytes per element of the activation / KV dtypes a card may name.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "float8_e4m3fn": 1, "fp8_e4m3": 1,
               "fp8_e5m2": 1, "q8_0": 34 / 32, "q4_0": 18 / 32}

#: Weight bytes per parameter of the served formats (models.md):
#: MXFP4 = 4-bit values + one 8-bit scale per 32 values = 4.25 bit; NVFP4 = 4-bit + FP8 scale per 16.
QUANT_WEIGHT_BYTES = {"mxfp4": 4.25 / 8, "fp8": 1.0, "nvfp4": 4.5 / 8, "modelopt_fp4": 4.5 / 8}

WEIGHT_GROUPS = ("attention", "dense_mlp", "experts", "router", "embedding", "lm_head")

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")


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

    @property
    def total_params(self) -> int:
        layers = (
            self.num_hidden_layers * self.attention_params_per_layer
            + self.num_dense_layers * self.dense_mlp_params_per_layer
            + self.num_moe_layers * (self.num_experts * self.params_per_expert + self.router_params_per_layer)
        )
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return layers + self.embedding_params + lm_head

    @property
    def active_params(self) -> int:
        """Parameters one token multiplies through (embedding lookup excluded, lm_head included)."""
        return (
            self.num_hidden_layers * self.attention_params_per_layer
            + self.num_dense_layers * self.dense_mlp_params_per_layer
            + self.num_moe_layers * (self.experts_per_token * self.params_per_expert + self.router_params_per_layer)
            + self.embedding_params
        )

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
    if path.suffix == ".json" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise CommbenchError(f"cannot read model config {str(path)!r}: no such file")
        return path
    shipped = shipped_models()
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
    if not isinstance(raw, dict):
        raise CommbenchError(f"model config {str(path)!r} is not a JSON object")
    name = path.stem if path.name != "config.json" else path.parent.name
    return card_from_config(raw, name=name, source=str(path))


def _serving_block(raw: dict, cfg: dict) -> tuple[str, dict]:
    serving = raw.get("serving") or {}
    act = serving.get("activation_dtype") or raw.get("torch_dtype") or cfg.get("torch_dtype") or "bfloat16"
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
    """The first of `keys` present (and truthy) in cfg as a whole number in minimum..FIELD_MAX, or `default`."""
    for key in keys:
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


def card_from_config(raw: dict, name: str, source: str = "") -> ModelCard:
    """Build a ModelCard from a parsed config.json dict (HF field names)."""
    # long: one config field per line, read in the order a config.json lists them
    cfg = raw.get("text_config") or raw  # multimodal wrappers keep the LM under text_config
    for key in REQUIRED_FIELDS:
        if cfg.get(key) is None:
            raise CommbenchError(f"model config {name!r} is missing required field {key!r}")
    layers = _whole(cfg, name, "num_hidden_layers")
    hidden = _whole(cfg, name, "hidden_size")
    heads = _whole(cfg, name, "num_attention_heads")
    kv_heads = _whole(cfg, name, "num_key_value_heads", default=heads)  # HF default: multi-head attention
    head_dim = _whole(cfg, name, "head_dim", default=max(1, hidden // heads))
    num_experts = _whole(cfg, name, "num_local_experts", "num_experts", "n_routed_experts", default=0)
    k = _whole(cfg, name, "num_experts_per_tok", "experts_per_token", default=0)
    if num_experts and not k:
        raise CommbenchError(f"model config {name!r} has {num_experts} experts but no 'num_experts_per_tok'")
    if k > num_experts:
        raise CommbenchError(f"model config {name!r}: num_experts_per_tok = {k} exceeds the {num_experts} experts")
    moe_inter = _whole(cfg, name, "moe_intermediate_size", "intermediate_size", default=0) if num_experts else 0
    dense_inter = _whole(cfg, name, "intermediate_size", default=0)
    if not num_experts and not dense_inter:
        raise CommbenchError(f"model config {name!r} is missing required field 'intermediate_size'")

    # Which layers are MoE: Qwen's mlp_only_layers / decoder_sparse_step, DeepSeek's first_k_dense_replace.
    dense_only = set(cfg.get("mlp_only_layers") or [])
    step = _whole(cfg, name, "decoder_sparse_step", default=1)
    first_dense = _whole(cfg, name, "first_k_dense_replace", default=0, minimum=0)
    moe_mask = tuple(
        bool(num_experts) and i not in dense_only and (i + 1) % step == 0 and i >= first_dense for i in range(layers)
    )

    window = _whole(cfg, name, "sliding_window", default=0) or None
    layer_types = cfg.get("layer_types")
    if layer_types:
        if len(layer_types) != layers:
            raise CommbenchError(f"model config {name!r}: layer_types has {len(layer_types)} entries, num_hidden_layers is {layers}")
        sliding = tuple(t == "sliding_attention" for t in layer_types)
    else:
        uses_window = window is not None and cfg.get("use_sliding_window", True) is not False
        sliding = (uses_window,) * layers
    act, wb = _serving_block(raw, cfg)
    return ModelCard(
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
    )
