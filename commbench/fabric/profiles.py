"""Fabric profiles: a shipped name, a fabrics/*.toml file, or a measured table to fit, read as a
FabricModel (load_fabric); a model written back as fabrics/*.toml text (fabric_toml).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from commbench import CommbenchError
from commbench.data import data_dir, names_in, number, read_toml, unknown_name_error
from commbench.fabric.fit import check_sweep_table, fit_replay, fit_sweep, refuse_wrong
from commbench.fabric.model import FabricModel, Segment


def shipped_fabrics() -> list[str]:
    return names_in("fabrics", ".toml")


def load_fabric(name_or_path: str, allow_wrong: bool = False) -> FabricModel:
    """A shipped profile name, a fabric .toml, or a measured sweep to fit: a commbench table
    (.csv/.json/.parquet, sweep or replay) or a nccl-tests / OSU log (commbench.importers). A table
    with wrong values (wrong > 0) is refused unless `allow_wrong` (refuse_wrong)."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and name_or_path not in shipped_fabrics() and (path.is_file() or path.suffix in
                                                                             (".csv", ".json", ".parquet")):
        if not path.is_file():
            raise CommbenchError(f"fabric file {name_or_path!r} not found")
        from commbench.importers import read_sweep

        table, _, source = read_sweep(path)
        if not allow_wrong:
            refuse_wrong(table, str(path))
        if "measured_us_per_step" in table.columns:
            return fit_replay(table, name=path.stem)
        model = fit_sweep(check_sweep_table(table, str(path)), name=path.stem)
        return replace(model, source=source)
    if path.suffix != ".toml":
        if name_or_path not in shipped_fabrics():
            raise unknown_name_error("fabric", name_or_path, shipped_fabrics() + ["<sweep.csv>", "<fabric.toml>"])
        path = data_dir("fabrics") / f"{name_or_path}.toml"
    elif not path.is_file():
        raise CommbenchError(f"fabric file {name_or_path!r} not found")
    raw = read_toml(path, "fabric")
    if not isinstance(raw.get("segment"), list) or not raw["segment"]:
        raise CommbenchError(f"fabric file {path}: needs [[segment]] tables with up_to_bytes, alpha_us, busbw_gbps")
    try:
        segments = tuple(
            Segment(number(s["up_to_bytes"], f"fabric file {path}: up_to_bytes"),
                    number(s["alpha_us"], f"fabric file {path}: alpha_us", inclusive=True) * 1e-6,
                    number(s["busbw_gbps"], f"fabric file {path}: busbw_gbps") * 1e9,
                    **_fitted_range(s, path))
            for s in raw["segment"]
        )
    except (KeyError, TypeError) as exc:
        raise CommbenchError(f"fabric file {path}: each [[segment]] needs up_to_bytes, alpha_us, busbw_gbps ({exc})") from None
    if list(segments) != sorted(segments, key=lambda seg: seg.up_to_bytes) or not math.isinf(segments[-1].up_to_bytes):
        raise CommbenchError(f"fabric file {path}: segments must rise in up_to_bytes and the last must be inf")
    return FabricModel(raw.get("name", path.stem), raw.get("description", ""), segments, raw.get("link", ""), str(path))


def _fitted_range(seg: dict, path: Path) -> dict:
    """A fitted profile's segment keeps what it was fitted on (fabric fit --out writes these keys):
    points (distinct sizes) and measured_from_bytes / measured_to_bytes; all three or none."""
    keys = ("points", "measured_from_bytes", "measured_to_bytes")
    if not any(k in seg for k in keys):
        return {}
    if not all(k in seg for k in keys):
        raise CommbenchError(f"fabric file {path}: a [[segment]] with any of {', '.join(keys)} needs all three")
    points = number(seg["points"], f"fabric file {path}: points")
    lo = number(seg["measured_from_bytes"], f"fabric file {path}: measured_from_bytes")
    hi = number(seg["measured_to_bytes"], f"fabric file {path}: measured_to_bytes")
    if points % 1 or hi < lo:
        raise CommbenchError(f"fabric file {path}: points must be whole and measured_from_bytes <= measured_to_bytes")
    return {"points": int(points), "sizes_bytes": (lo, hi)}


def fabric_toml(model: FabricModel, header: str) -> str:
    """A model as fabrics/*.toml text (the default collective's segments, with CIs where fitted)."""
    # JSON string syntax is TOML basic-string syntax: quotes, backslashes and newlines are escaped
    lines = [f"# {' '.join(header.split())}", f"name = {json.dumps(model.name)}",
             f"description = {json.dumps(model.description)}"]
    lines += [f"link = {json.dumps(model.link)}", ""] if model.link else [""]
    for seg in model.segments:
        up_to = "inf" if math.isinf(seg.up_to_bytes) else f"{seg.up_to_bytes:.0f}"
        lines += ["[[segment]]", f"up_to_bytes = {up_to}", f"alpha_us = {seg.alpha_s * 1e6:.6g}",
                  f"busbw_gbps = {seg.busbw_Bps / 1e9:.6g}"]
        if seg.sizes_bytes is not None:  # what the fit was made on: commands warn when they price far outside
            lines += [f"points = {seg.points}", f"measured_from_bytes = {seg.sizes_bytes[0]:.0f}",
                      f"measured_to_bytes = {seg.sizes_bytes[1]:.0f}"]
        if seg.alpha_ci_s:
            lines.append(f"# 95% CI: alpha [{seg.alpha_ci_s[0] * 1e6:.3f}, {seg.alpha_ci_s[1] * 1e6:.3f}] us, "
                         f"busbw [{seg.busbw_ci_Bps[0] / 1e9:.5g}, {seg.busbw_ci_Bps[1] / 1e9:.5g}] GB/s")
        lines.append("")
    return "\n".join(lines)
