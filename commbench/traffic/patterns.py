"""Parallel patterns: declarative TOML files in patterns/ naming each communication site.

A site has a name, a collective, a `repeat` (how often per forward pass of a stage; per_block sites
name the layer blocks that issue them), a shape as a list of named dimensions or whole numbers
(resolved in commbench.traffic.trace._dims; no formula strings), and the dtype ("activation" or a
fixed one). Nothing here is evaluated from strings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache

from commbench import CommbenchError
from commbench.collectives import COLLECTIVES
from commbench.data import check_choices, data_dir, names_in

REPEATS = ("per_forward", "per_block", "per_boundary", "per_step")
SITE_DTYPES = ("activation", "router", "float32", "int64", "int32", "uint8")  # router: the MoE gate's logits dtype
OWNERS = ("every_stage", "first_stage", "last_stage")


@dataclass(frozen=True)
class Site:
    name: str
    collective: str
    repeat: str
    shape: tuple  # named dimensions and whole numbers
    dtype: str = "activation"
    owner: str = "every_stage"
    split_across_tp: bool = False
    blocks: tuple[str, ...] = ()  # per_block: the layer blocks that issue the site
    when: str = ""  # a named rule in commbench.traffic.slots._WHEN that must hold
    per_tensor: bool = False  # per_boundary: once per boundary tensor of the model card
    cpu_group: bool = False  # carried by the CPU (gloo) group, not the device communicator
    engines: tuple[str, ...] = ()  # engine generations that make the call (all when empty)
    times: str = ""  # a named count of calls at this point (commbench.traffic.slots._times); "" = one
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
        site = Site(**{**entry, "shape": tuple(entry["shape"]), "blocks": tuple(entry.get("blocks", ())),
                       "engines": tuple(entry.get("engines", ()))})
        check_choices((("collective", site.collective, tuple(COLLECTIVES)), ("repeat", site.repeat, REPEATS),
                       ("owner", site.owner, OWNERS), ("dtype", site.dtype, SITE_DTYPES)),
                      prefix=f"pattern {name}: site {site.name} has ")
        sites.append(site)
    return Pattern(raw["name"], raw["group"], raw.get("description", ""), tuple(sites))
