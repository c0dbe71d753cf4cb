"""The formats a model card is served in: the activation / KV dtype and the weight bytes per
parameter of each weight group, read from a config's `serving` block or derived from its
`torch_dtype` (`dtype`) and `quantization_config`.

A derived block puts every group in the activation dtype and the quantised groups at their
format's bytes per parameter (QUANT_WEIGHT_BYTES): MXFP4 quantises the experts only, FP8 and
NVFP4 attention, dense MLP and experts.
"""

from __future__ import annotations

from commbench import CommbenchError
from commbench.dtypes import sizes_of

#: The activation / KV dtypes a card may name, with their bytes per element (commbench.dtypes).
DTYPE_BYTES = sizes_of("float32", "float16", "bfloat16", "fp8", "float8_e4m3fn", "fp8_e4m3", "fp8_e5m2", "q8_0", "q4_0")

#: Weight bytes per parameter of the served formats (docs/sources.md#weight-formats):
#: MXFP4 = 4-bit values + one 8-bit scale per 32 values = 4.25 bit; NVFP4 = 4-bit + FP8 scale per 16.
QUANT_WEIGHT_BYTES = {"mxfp4": 4.25 / 8, "fp8": 1.0, "nvfp4": 4.5 / 8, "modelopt_fp4": 4.5 / 8}

WEIGHT_GROUPS = ("attention", "dense_mlp", "experts", "router", "embedding", "lm_head")


#: The activation dtype vLLM serves a config's dtype in with --dtype auto (vllm/config/model.py
#: _find_dtype, _resolve_auto_dtype): float32 checkpoints (or none named) are downcast to the
#: platform's preferred dtype, bfloat16 on CUDA GPUs from Ampere on.
AUTO_DTYPE = {"float32": "bfloat16", "bfloat16": "bfloat16", "float16": "float16"}


def serving_block(raw: dict, cfg: dict) -> tuple[str, dict]:
    """(activation dtype, weight bytes per parameter by WEIGHT_GROUPS): the config's `serving` block
    where it has one, else derived (the module docstring)."""
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
