"""The non-attention mixers of a card's layers (Mamba-1, Mamba-2, Gated DeltaNet, LAuReL,
lightning attention, short convolution): one layer's parameters and recurrent-state bytes per
sequence by mixer kind, and the sizes the trace's sites read (see mixer_fields for the formulas).
"""

from __future__ import annotations

from commbench.traffic.config_fields import whole
from commbench.traffic.weight_formats import DTYPE_BYTES


def mixer_fields(cfg: dict, name: str, blocks: tuple, hidden: int, act: str) -> dict:
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
    kinds = {b for layer in blocks for b in layer} & _MIXERS.keys()
    cache = str(cfg.get("mamba_ssm_cache_dtype") or act).replace("torch.", "")
    state_bytes = DTYPE_BYTES.get(cache, DTYPE_BYTES[act])
    params, state, sizes = {}, {}, {}
    w = lambda *keys, default: whole(cfg, name, *keys, default=default)  # noqa: E731
    for kind in sorted(kinds, key=list(_MIXERS).index):
        kind_params, kind_state, kind_sizes = _MIXERS[kind](cfg, w, hidden)
        params[kind] = kind_params
        if kind_state is not None:
            state[kind] = kind_state * (4 if kind == "lightning_attention" else state_bytes)
        sizes.update(kind_sizes)
    return {"mixer_params": params, "state_bytes_per_seq": state, **sizes}


def _mamba1(cfg: dict, w, hidden: int):
    """Mamba-1: (params, state elements per sequence, trace sizes)."""
    # pure Mamba (mamba.py MambaDecoderLayer) reads intermediate_size, time_step_rank, state_size, conv_kernel
    # (Falcon-Mamba-7B: expand 16 but intermediate_size 8192); Jamba the mamba_* names
    pure = "time_step_rank" in cfg or "state_size" in cfg
    d = w("intermediate_size", default=2 * hidden) if pure else w("mamba_expand", "expand", default=2) * hidden
    rank = cfg.get("time_step_rank")
    r = -(-hidden // 16) if rank in (None, "auto") else w("time_step_rank", default=0)  # MambaConfig: "auto" = ceil(h/16)
    r = w("mamba_dt_rank", default=r)
    n, k = w("mamba_d_state", "state_size", default=16), w("mamba_d_conv", "conv_kernel", default=4)
    if cfg.get("mamba_step"):  # PLaMo 2 (plamo2.py Plamo2MambaMixer): heads x head size wide, bcdt_proj to
        d = w("mamba_num_heads", default=1) * w("hidden_size_per_head", default=128)  # max(64, h // 16) + 2 N
        r = max(64, hidden // 16)
    params = 2 * hidden * d + d * k + d * (r + 2 * n) + r * d + d + d * n + d + d * hidden
    return params, d * (k - 1) + d * n, {"mamba_x_proj_width": r + 2 * n}


def _mamba2(cfg: dict, w, hidden: int):
    """Mamba-2: (params, state elements per sequence, trace sizes)."""
    heads = w("mamba_num_heads", "mamba_n_heads", "n_mamba_heads", default=0)
    d_ssm = w("mamba_d_ssm", default=0)  # Falcon-H1: the mixer width, its head size "auto" = d_ssm / heads
    head_dim = 0 if cfg.get("mamba_d_head") == "auto" else w("mamba_head_dim", "mamba_d_head", default=0)
    d = d_ssm or (heads * head_dim if heads and head_dim else w("expand", "mamba_expand", default=2) * hidden)
    heads = heads or max(1, d // 64)
    g = w("n_groups", "mamba_n_groups", "mamba_ngroups", default=1)
    n, k = w("ssm_state_size", "mamba_d_state", "state_size", default=128), w("conv_kernel", "mamba_d_conv", default=4)
    params = hidden * (2 * d + 2 * g * n + heads) + (d + 2 * g * n) * k + 3 * heads + d + d * hidden
    return params, (d + 2 * g * n) * (k - 1) + d * n, {"mamba_n_groups": g}


def _gated_deltanet(cfg: dict, w, hidden: int):
    """Gated DeltaNet (qwen3_next.py): (params, state elements per sequence, no trace sizes)."""
    nk, dk = w("linear_num_key_heads", default=16), w("linear_key_head_dim", default=128)
    nv, dv = w("linear_num_value_heads", default=32), w("linear_value_head_dim", default=128)
    k = w("linear_conv_kernel_dim", default=4)
    params = hidden * (2 * nk * dk + 2 * nv * dv) + hidden * 2 * nv + (2 * nk * dk + nv * dv) * k \
        + 2 * nv + dv + nv * dv * hidden
    return params, (2 * nk * dk + nv * dv) * (k - 1) + nv * dk * dv, {}


def _laurel(cfg: dict, w, hidden: int):
    """gemma3n.py Gemma3nLaurelBlock: hidden -> rank -> hidden; no state."""
    return 2 * hidden * w("laurel_rank", default=64), None, {}


def _lightning_attention(cfg: dict, w, hidden: int):
    """layers/mamba/linear_attn.py, q = heads x head_dim: qkv_proj 3 h q, output_gate h q, out_proj q h,
    norm q; state a float32 kv [heads, d, d] (elements; priced at 4 bytes)."""
    heads = w("num_attention_heads", default=1)
    q = heads * w("head_dim", default=max(1, hidden // heads))
    return 5 * hidden * q + q, q * (q // heads), {}


def _short_conv(cfg: dict, w, hidden: int):
    """layers/mamba/short_conv.py: in_proj d -> 3 d, conv d x L, out_proj d -> d."""
    d, k = w("conv_dim", default=hidden), w("conv_L_cache", default=3)
    return 3 * d * d + d * k + d * d, d * (k - 1), {}


# mixer kind -> (cfg, w, hidden) -> (params, state elements per sequence or None, trace sizes)
_MIXERS = {"mamba": _mamba1, "mamba2": _mamba2, "gated_deltanet": _gated_deltanet, "laurel": _laurel,
           "lightning_attention": _lightning_attention, "short_conv": _short_conv}
