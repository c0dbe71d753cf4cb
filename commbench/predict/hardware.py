"""Hardware profiles (hardware/*.toml): one accelerator's memory, bandwidth and peak FLOP/s.

Every figure carries its source in the file. `local` is built from measurements on the machine
at hand (measure_local_profile, timed with commbench.measure.compute) rather than read from a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from commbench import CommbenchError
from commbench.data import data_dir, names_in, number, read_toml, unknown_name_error
from commbench.results import host_memory_bytes

if TYPE_CHECKING:
    import pandas as pd

MEMORY_BW_EFFICIENCY = 232 / 273
"""Achieved / peak memory bandwidth for a profile that gives no measured figure. Unitless, 0.85:
the one measurement this project has, a saturating read kernel on GB10 reaching 231-234 GB/s of
its 273 GB/s spec (antirez/ds4 issue 773; docs/sources.md#gb10-memory-bandwidth). Profiles with their
own measured figure (memory_bandwidth_achieved_gbps) use that instead."""

FLOP_EFFICIENCY = 0.35
"""Fraction of dense peak FLOP/s that prefill GEMMs and attention reach. Unitless. Not measured on
GB10 in this project (no GPU has been lent); grouped MoE GEMMs with 4-8 of 128 experts active and
MXFP4 dequantisation sit well below dense-GEMM efficiency (~0.6-0.7 of peak in cuBLAS). Prefill-heavy
rows depend on it; `commbench compute --out` on the device replaces it with a measurement."""

# Weight formats run on the tensor-core rate of their own dtype when the engine has W8A8 / W4A4
# kernels for them (FP8, NVFP4); MXFP4 experts in gpt-oss run as weight-only (W4A16) on the
# activation dtype's rate. Bytes per param -> dtype name for the FLOP rate.
_FORMAT_DTYPE = {1.0: "fp8", 4.5 / 8: "fp4"}


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    memory_gb: float
    memory_bandwidth_Bps: float  # peak, bytes/s
    peak_flops: dict = field(hash=False, compare=False)  # dtype -> FLOP/s (dense)
    fabric: str = "spark-200gbe"
    source: str = ""
    compare_fabrics: tuple[str, ...] = ()  # fabrics `explain` sets beside the default one
    measured: bool = False  # figures are achieved rates (local, compute table): no efficiency on top
    achieved_bandwidth_Bps: float | None = None  # a measured read bandwidth, bytes/s (source in the file)
    gemm_curve: tuple = field(default=(), hash=False, compare=False)  # ((tokens, efficiency), ...) measured
    eager_launch_s: float | None = None  # measured host seconds per eager op (commbench compute), else the engine's

    @property
    def memory_efficiency(self) -> float:
        """Achieved / peak memory bandwidth: measured where the profile has a figure, else MEMORY_BW_EFFICIENCY."""
        if self.measured:
            return 1.0
        if self.achieved_bandwidth_Bps:
            return self.achieved_bandwidth_Bps / self.memory_bandwidth_Bps
        return MEMORY_BW_EFFICIENCY

    @property
    def effective_bandwidth_Bps(self) -> float:
        """Bytes/s that decode kernels stream from memory: peak x memory_efficiency."""
        return self.memory_bandwidth_Bps * self.memory_efficiency

    @property
    def flop_efficiency(self) -> float:
        return 1.0 if self.measured else FLOP_EFFICIENCY

    def flop_efficiency_at(self, tokens):
        """Fraction of peak FLOP/s a GEMM over `tokens` rows reaches (tokens may be an array).

        Without a measured curve: flop_efficiency at every size. With one (commbench compute
        --gemm-tokens): interpolated in log2(tokens) between measured points, held flat below the
        smallest and above the largest, times flop_efficiency.
        """
        if not self.gemm_curve:
            return self.flop_efficiency if np.ndim(tokens) == 0 else np.full(np.shape(tokens), self.flop_efficiency)
        at, eff = (np.array(v, dtype=float) for v in zip(*sorted(self.gemm_curve)))
        value = np.interp(np.log2(np.maximum(tokens, 1e-9)), np.log2(at), eff) * self.flop_efficiency
        return float(value) if np.ndim(tokens) == 0 else value

    def flops_for(self, activation_dtype: str, weight_bytes_per_param: float) -> float:
        """Peak FLOP/s for a matmul on weights stored at `weight_bytes_per_param`."""
        dtype = _FORMAT_DTYPE.get(weight_bytes_per_param, activation_dtype)
        if dtype not in self.peak_flops:
            dtype = activation_dtype
        try:
            return self.peak_flops[dtype]
        except KeyError:
            raise CommbenchError(f"hardware {self.name} has no peak FLOP/s for {dtype}; "
                                 f"it lists {', '.join(self.peak_flops)}") from None

    def summary(self) -> dict:
        return {"hardware": self.name, "memory_gb": self.memory_gb,
                "memory_bandwidth_gbps": self.memory_bandwidth_Bps / 1e9,
                "achieved_bandwidth_gbps": self.effective_bandwidth_Bps / 1e9,
                **{f"peak_tflops_{k}": v / 1e12 for k, v in self.peak_flops.items()},
                "fabric": self.fabric, "description": self.description}


def shipped_hardware() -> list[str]:
    return names_in("hardware", ".toml")


def load_hardware(name_or_path: str) -> HardwareProfile:
    """A shipped profile name, a profile .toml, or a `compute --out` table.

    `local` (this machine, measured now) needs the measuring code: resolve_hardware.
    """
    if name_or_path == "local":
        raise CommbenchError("hardware 'local' is measured on this machine: use commbench.predict.hardware.resolve_hardware")
    path = Path(name_or_path)
    if path.suffix in (".csv", ".json", ".parquet"):
        if not path.is_file():
            raise CommbenchError(f"compute table {name_or_path!r} not found")
        from commbench.results import load_table

        return profile_from_measurement(load_table(path)[0], name=path.stem)
    if path.suffix != ".toml":
        if name_or_path not in shipped_hardware():
            raise unknown_name_error("hardware", name_or_path, shipped_hardware() + ["local"])
        path = data_dir("hardware") / f"{name_or_path}.toml"
    elif not path.is_file():
        raise CommbenchError(f"hardware file {name_or_path!r} not found")
    raw = read_toml(path, "hardware")
    where = f"hardware file {path}"
    try:
        flops = raw["peak_tflops"]
        if not isinstance(flops, dict) or not flops:
            raise KeyError("peak_tflops")
        return HardwareProfile(
            name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
            memory_gb=number(raw["memory_gb"], f"{where}: memory_gb"),
            memory_bandwidth_Bps=number(raw["memory_bandwidth_gbps"], f"{where}: memory_bandwidth_gbps") * 1e9,
            peak_flops={k: number(v, f"{where}: peak_tflops.{k}") * 1e12 for k, v in flops.items()},
            fabric=str(raw.get("fabric", "spark-200gbe")), compare_fabrics=tuple(raw.get("compare_fabrics", ())),
            source=str(path), achieved_bandwidth_Bps=_optional_gbps(raw, "memory_bandwidth_achieved_gbps", where))
    except (KeyError, TypeError) as exc:
        raise CommbenchError(f"{where}: needs memory_gb, memory_bandwidth_gbps and [peak_tflops] ({exc})") from None


def _optional_gbps(raw: dict, key: str, where: str) -> float | None:
    return number(raw[key], f"{where}: {key}") * 1e9 if key in raw else None




def profile_from_measurement(frame: pd.DataFrame, name: str = "measured") -> HardwareProfile:
    """A hardware profile whose bandwidth and FLOP/s are what `compute` measured at the model's shapes.

    memory bandwidth = decode bytes / decode time (decode is memory-bound);
    FLOP/s = prefill FLOPs / prefill time (prefill is compute-bound). Efficiencies are already in
    these numbers, so the profile is marked `measured` and predict applies none on top. With "gemm"
    rows (compute --gemm-tokens), FLOP/s varies with tokens per step as that curve does, scaled so
    that it equals the prefill rate at the prefill chunk's token count.
    """
    need = {"phase", "bytes_per_layer", "flops_per_layer", "time_ms_per_layer", "layers"}
    if not need <= set(frame.columns):
        raise CommbenchError(f"compute table lacks {sorted(need - set(frame.columns))}; give a file from commbench compute --out")
    dec, pre, gemm = (frame[frame.phase == p] for p in ("decode", "prefill", "gemm"))
    if dec.empty or pre.empty:
        raise CommbenchError("compute table needs both a prefill and a decode row")
    bw = float((dec.bytes_per_layer * dec.layers).sum() / (dec.time_ms_per_layer * dec.layers).sum() * 1e3)
    flops = float((pre.flops_per_layer * pre.layers).sum() / (pre.time_ms_per_layer * pre.layers).sum() * 1e3)
    curve: tuple = ()
    if len(gemm):
        rates = (gemm.flops_per_layer / gemm.time_ms_per_layer * 1e3).to_numpy(float)
        curve = tuple(zip(gemm.tokens.astype(float), rates / rates.max()))
        probe = HardwareProfile("probe", "", 0.0, 1.0, {}, gemm_curve=curve, measured=True)
        flops = flops / probe.flop_efficiency_at(float(pre.tokens.iloc[0]))  # the curve's peak, in prefill units
    launch = frame[frame.phase == "launch"]
    dtypes = ("bfloat16", "float16", "float32", "fp8", "fp4")
    return HardwareProfile(name, f"measured by commbench compute on {frame['device'].iloc[0]}", memory_gb=host_memory_bytes() / 1e9,
                           memory_bandwidth_Bps=bw, peak_flops=dict.fromkeys(dtypes, flops), fabric="loopback-gloo",
                           source="measured", measured=True, gemm_curve=curve,
                           eager_launch_s=float(launch.time_ms_per_layer.iloc[0]) / 1e3 if len(launch) else None)


def resolve_hardware(name_or_path: str) -> HardwareProfile:
    """`local` (this machine, measured now: measure_local_profile) or anything load_hardware reads."""
    return measure_local_profile() if name_or_path == "local" else load_hardware(name_or_path)


_LOCAL_PROFILE: HardwareProfile | None = None


def measure_local_profile(size_mb: int = 256, matmul_n: int = 1024) -> HardwareProfile:
    """The machine at hand: memory bandwidth from a large tensor sum, FLOP/s from a square matmul.

    Peaks here are measured, so they already include the efficiency a profile's spec lacks.
    """
    from commbench import require

    require("torch")
    global _LOCAL_PROFILE
    if _LOCAL_PROFILE is not None:
        return _LOCAL_PROFILE
    import torch

    from commbench.measure.compute import LocalDevice, available_memory_bytes, default_device
    from commbench.measure.timing import time_calls

    device = default_device()
    backend = LocalDevice(device)
    buf = torch.ones(size_mb * 2**20 // 4, device=device)
    t_read = float(np.median(time_calls(lambda: buf.sum(), backend, 5, 1)))
    flops = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(matmul_n, matmul_n, device=device).to(dtype)
        t = float(np.median(time_calls(lambda: a @ a, backend, 5, 1)))
        flops[name] = 2 * matmul_n**3 / t
    flops.update(float16=flops["bfloat16"], fp8=flops["bfloat16"], fp4=flops["bfloat16"])
    _LOCAL_PROFILE = HardwareProfile("local", f"measured now on {device} ({os.cpu_count()} CPUs)",
                                     memory_gb=available_memory_bytes(device) / 1e9,
                                     memory_bandwidth_Bps=buf.numel() * 4 / t_read, peak_flops=flops,
                                     fabric="loopback-gloo", source="measured", measured=True)
    return _LOCAL_PROFILE
