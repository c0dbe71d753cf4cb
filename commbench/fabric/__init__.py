"""Fabric: what a collective costs on a named interconnect, fitted or from a profile.

The cost model (piecewise alpha-beta per size segment) is described in commbench.fabric.model.
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
