"""What-ifs: switch one mechanism of a prediction with NAME=VALUE, for any model.

`commbench predict --what-if fabric=spark-tcp-200g` prices "NCCL fell back to sockets". Each name
(WHAT_IFS) changes the engine (commbench.predict.recipes.Engine: executor, async scheduling, CUDA
graphs, MoE kernel) or the fabric (a profile, or a cost added to every collective call).
"""

from __future__ import annotations

import dataclasses
import math

from commbench import CommbenchError
from commbench.fabric import FabricModel, load_fabric
from commbench.predict.recipes import EXECUTORS, MOE_KERNEL_PADDING, Engine

WHAT_IFS = {
    "fabric": "a fabric profile (fabrics/), a .toml or a sweep file",
    "executor": f"{' or '.join(EXECUTORS)}",
    "async_scheduling": "true or false",
    "cuda_graphs": "true or false (false = --enforce-eager)",
    "moe_kernel": ", ".join(MOE_KERNEL_PADDING),
    "allreduce_extra_us": "microseconds added to every collective call (>= 0)",
}


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise CommbenchError(f"--what-if {name}={value}: valid values: true, false")


def parse_what_ifs(items) -> dict:
    """['fabric=spark-1hca', 'cuda_graphs=false', ...] -> {name: typed value}; one-line errors."""
    out = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in WHAT_IFS:
            raise CommbenchError(f"--what-if {item!r}: expected NAME=VALUE with NAME one of {', '.join(WHAT_IFS)}")
        if name in ("async_scheduling", "cuda_graphs"):
            out[name] = _bool(name, value)
        elif name == "executor" and value not in EXECUTORS:
            raise CommbenchError(f"--what-if executor={value}: valid: {', '.join(EXECUTORS)}")
        elif name == "moe_kernel" and value not in MOE_KERNEL_PADDING:
            raise CommbenchError(f"--what-if moe_kernel={value}: valid: {', '.join(MOE_KERNEL_PADDING)}")
        elif name == "allreduce_extra_us":
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = -1.0
            if not (math.isfinite(out[name]) and out[name] >= 0):
                raise CommbenchError(f"--what-if allreduce_extra_us={value}: must be a number of microseconds >= 0")
        else:
            out[name] = value
    if "fabric" in out:
        load_fabric(out["fabric"])  # a one-line error naming the valid fabrics, before any prediction
    return out


def add_per_call(fabric: FabricModel, extra_s: float) -> FabricModel:
    """The fabric with extra_s added to every call's latency (all segments, all collectives)."""
    def shift(segs):
        return tuple(dataclasses.replace(s, alpha_s=s.alpha_s + extra_s) for s in segs)
    return dataclasses.replace(fabric, name=f"{fabric.name} +{extra_s * 1e6:.4g} us/call", segments=shift(fabric.segments),
                               per_collective={k: shift(v) for k, v in fabric.per_collective.items()})


def cap_busbw(fabric: FabricModel, busbw_Bps: float) -> FabricModel:
    """The fabric with every segment's busbw capped at busbw_Bps (a slower link carries every regime slower)."""
    def cap(segs):
        return tuple(dataclasses.replace(s, busbw_Bps=min(s.busbw_Bps, busbw_Bps)) for s in segs)
    return dataclasses.replace(fabric, name=f"{fabric.name} capped at {busbw_Bps / 1e9:.3g} GB/s", segments=cap(fabric.segments),
                               per_collective={k: cap(v) for k, v in fabric.per_collective.items()})


def apply_what_ifs(engine: Engine, fabric: FabricModel, what: dict) -> tuple[Engine, FabricModel]:
    """The engine and fabric with the what-ifs switched (parse_what_ifs output)."""
    if "fabric" in what:
        fabric = load_fabric(what["fabric"])
    fields = {k: what[k] for k in ("executor", "async_scheduling", "cuda_graphs", "moe_kernel") if k in what}
    engine = dataclasses.replace(engine, **fields)
    if what.get("allreduce_extra_us"):
        fabric = add_per_call(fabric, what["allreduce_extra_us"] * 1e-6)
    return engine, fabric
