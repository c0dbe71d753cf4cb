"""Parallel patterns: declarative TOML files in patterns/ naming each communication site.

A site has a name, a collective, a `repeat` (how often per forward pass of a stage), a shape as a
list of named dimensions (resolved in commbench.traffic.trace.DIMENSIONS; no formula strings), and the
dtype ("activation"). Nothing here is evaluated from strings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache

from commbench import CommbenchError
from commbench.collectives import COLLECTIVES
from commbench.data import data_dir, names_in

REPEATS = ("per_forward", "per_layer", "per_dense_layer", "per_moe_layer", "per_boundary")
OWNERS = ("every_stage", "first_stage", "last_stage")


@dataclass(frozen=True)
class Site:
    name: str
    collective: str
    repeat: str
    shape: tuple[str, ...]
    dtype: str = "activation"
    owner: str = "every_stage"
    split_across_tp: bool = False
    source: str = ""


@dataclass(frozen=True)
class Pattern:
    name: str
    group: str
    description: str
    sites: tuple[Site, ...]


@lru_cache(maxsize=None)
def load_pattern(name: str) -> Pattern:
    path = data_dir("patterns") / f"{name}.toml"
    if not path.is_file():
        raise CommbenchError(f"unknown pattern {name!r}; valid: {', '.join(names_in('patterns', '.toml'))}")
    raw = tomllib.loads(path.read_text())
    sites = []
    for entry in raw.get("site", []):
        site = Site(**{**entry, "shape": tuple(entry["shape"])})
        if site.collective not in COLLECTIVES:
            raise CommbenchError(f"pattern {name}: site {site.name} has unknown collective {site.collective!r}")
        if site.repeat not in REPEATS:
            raise CommbenchError(f"pattern {name}: site {site.name} has unknown repeat {site.repeat!r}; valid: {', '.join(REPEATS)}")
        if site.owner not in OWNERS:
            raise CommbenchError(f"pattern {name}: site {site.name} has unknown owner {site.owner!r}; valid: {', '.join(OWNERS)}")
        sites.append(site)
    return Pattern(raw["name"], raw["group"], raw.get("description", ""), tuple(sites))
