"""Fabric: what a collective costs on a named interconnect, fitted or from a profile.

A fabric model is piecewise latency-bandwidth (alpha-beta, Hockney) per size segment:

    t(S) = alpha_i + S * f(n) / busbw_i        for S <= up_to_bytes_i (first segment that holds S)

with S nccl-tests' message size and f(n) the collective's busbw factor (commbench.collectives),
so one profile prices all_reduce, all_gather and send/recv alike. Segments exist because NCCL
switches protocol (LL -> LL128 -> Simple) with size: small messages pay latency at a low
incremental bandwidth, large ones stream near the link rate.

Profiles live in fabrics/*.toml; `fit_sweep` builds one from a measured sweep (commbench sweep --out).

The package's names, from the modules that hold them: model (Segment, FabricModel: a call's
price), fit (fits from measured tables), profiles (fabrics/*.toml read and written).
"""

from commbench.fabric.fit import (SWEEP_COLUMNS, LineFit, check_sweep_table, fit_alpha_beta, fit_piecewise,
                                  fit_replay, fit_sweep, refuse_wrong)
from commbench.fabric.model import CI_COLUMNS, FabricModel, Segment
from commbench.fabric.profiles import fabric_toml, load_fabric, shipped_fabrics

__all__ = ["CI_COLUMNS", "SWEEP_COLUMNS", "FabricModel", "LineFit", "Segment", "check_sweep_table", "fabric_toml",
           "fit_alpha_beta", "fit_piecewise", "fit_replay", "fit_sweep", "load_fabric", "refuse_wrong",
           "shipped_fabrics"]
