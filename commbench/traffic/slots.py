"""A step's calls before their sizes: which sites each stage issues, layer by layer and block by
block, in engine order (Slot), built once per plan and runner options; the patterns' repeat,
owner and `when` fields are read here and nowhere else. commbench.traffic.trace sizes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from commbench.traffic import sequence_parallel as sp
from commbench.traffic.boundary import BOUNDARY_SHAPES
from commbench.traffic.model_card import ModelCard
from commbench.traffic.patterns import Site, load_pattern
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.runner_options import ALL2ALL_BACKENDS, RunnerOptions, runner_or_default


#: Named rules a site's `when` refers to (patterns/*.toml): each takes the plan, the engine
#: options (None: the serving model's view, read as the defaults) and the layer (None before the
#: layers, -1 after them); the sequence-parallel MoE rules are in commbench.traffic.sequence_parallel.
_WHEN = {
    "": lambda plan, engine, layer: True,
    "mamba_single_group": lambda plan, engine, layer: plan.model.mamba_n_groups == 1 and plan.model.mamba_gated_norm,
    "per_layer_inputs": lambda plan, engine, layer: plan.model.per_layer_input_size > 0,
    "per_layer_embed": lambda plan, engine, layer: plan.model.per_layer_input_size > 0 and plan.model.per_layer_embed,
    "altup": lambda plan, engine, layer: plan.model.altup_num_inputs > 1,
    "all2all_allgather": lambda plan, engine, layer:
        ALL2ALL_BACKENDS[runner_or_default(engine).all2all] == "all2all_allgather",
    "all2all_kernels": lambda plan, engine, layer: runner_or_default(engine).all2all_kernels,
    **{name: (lambda rule: lambda plan, engine, layer: rule(plan, runner_or_default(engine).name, layer))(rule)
       for name, rule in sp.RULES.items()},
    # the MoE block's TP all-reduce: not under sequence-parallel MoE (an all-gather instead), and under the
    # all2all kernels only where the block calls it itself (architectures.toml moe_reduce "explicit", in its
    # moe_reduce_engines) or, in the current release, of the shared output the MoE runner holds
    "moe_tp_all_reduce": lambda plan, engine, layer: not sp.sequence_parallel_moe(plan, runner_or_default(engine).name)
        and (not _kernels(plan, engine) or _kept_under_kernels(plan.model, runner_or_default(engine).name)),
    # vLLM 0.11.0: a shared expert whose reduce_results is must_reduce_shared_expert_outputs(): true under the kernels
    "kernel_shared_expert": lambda plan, engine, layer: plan.model.kernel_shared_expert and _kernels(plan, engine)
        and runner_or_default(engine).name == "vllm-v1"
        and not sp.sequence_parallel_moe(plan, runner_or_default(engine).name),
}


def _kept_under_kernels(m: ModelCard, engine: str) -> bool:
    """Whether an MoE block still all-reduces over TP under the all2all kernels: its own call (moe_reduce
    "explicit" in its engines), or the current release's runner reducing a shared expert's output alone."""
    explicit = m.moe_reduce == "explicit" and (not m.moe_reduce_engines or engine in m.moe_reduce_engines)
    return explicit or (engine == "vllm-v2" and m.runner_shared_expert)


def _kernels(plan: ParallelPlan, engine: RunnerOptions | None) -> bool:
    """Whether the MoE blocks exchange through the DeepEP / pplx kernels (sequence_parallel.kernel_exchange)."""
    runner = runner_or_default(engine)
    return sp.kernel_exchange(plan, runner.name, runner.all2all_kernels)


def _router_site(site: Site, m: ModelCard, engine: str) -> Site:
    """A `router` dtype site in the gate's dtype for this engine generation: the family's
    (architectures.toml router_dtype, router_dtype_engines) or the activation dtype."""
    if site.dtype != "router":
        return site
    gate = m.router_dtype if m.router_dtype and (not m.router_dtype_engines or engine in m.router_dtype_engines) else ""
    return dataclasses.replace(site, dtype=gate or "activation")


def _times(site: Site, m: ModelCard) -> int:
    """Calls a site makes at its point of the forward: 1, or the count its `times` names
    (altup_extra: Gemma 3n's altup_num_inputs - 1 gathered projections)."""
    return {"": 1, "altup_extra": max(0, m.altup_num_inputs - 1)}[site.times]


def _issues(site: Site, plan: ParallelPlan, stage: int, layer: int | None, block: str | None,
            engine: RunnerOptions | None) -> bool:
    """Whether `stage` issues `site` at this point of its forward: before its layers (layer None,
    first-stage per_forward sites), in `layer`'s `block`, or after them (layer -1, last-stage per_forward)."""
    if site.repeat == "per_forward":
        owner_ok = site.owner == "every_stage" or (site.owner == "first_stage" and stage == 0) or \
            (site.owner == "last_stage" and stage == plan.pp - 1)
        wanted = -1 if site.owner == "last_stage" else None
        return owner_ok and layer == wanted and block is None and _WHEN[site.when](plan, engine, layer)
    return block is not None and block in site.blocks and _WHEN[site.when](plan, engine, layer)


def _engine_sites(pattern: str, engine: RunnerOptions | None) -> tuple[Site, ...]:
    """The pattern's sites this engine makes. Without engine options (the serving model's
    bytes-linear view) only the sites that scale with tokens: no metadata, no per-step broadcast."""
    sites = load_pattern(pattern).sites
    if engine is None:
        return tuple(s for s in sites if not s.cpu_group and s.repeat != "per_step")
    return tuple(s for s in sites if not s.engines or engine.name in s.engines)


@dataclass(frozen=True)
class Slot:
    """One call of a step before its sizes are known: the plan's structure, built once per plan."""

    name: str
    site: Site
    kind: str  # "collective"; "send" (a boundary tensor, 1/split per pair); "regather" (the receiver's all-gather)
    group: str
    members: tuple
    n: int
    stage: int
    replica: int = 0
    split: int = 1


@lru_cache(maxsize=256)
def step_slots(plan: ParallelPlan, engine: RunnerOptions | None) -> tuple[Slot, ...]:
    """Every call of a step in engine order (see engine_calls), without sizes."""
    # long: the engine's order of a step, stage by stage, in one loop the reader can follow
    m = plan.model
    tp_sites = _engine_sites("tp", engine) if plan.tp > 1 else ()
    ep_sites = _engine_sites("ep", engine) if plan.dp > 1 else ()
    pp_sites = _engine_sites("pp", engine) if plan.pp > 1 else ()
    slots: list[Slot] = []
    for stage in range(plan.pp):
        for layer in (None, *plan.stage_layer_range(stage), -1):
            # a layer's blocks, after "layer_start" (sites a layer issues before its first block)
            blocks = (None,) if layer is None or layer < 0 else ("layer_start", *m.blocks_of(layer))
            for block in blocks:
                # the EP exchange of an MoE block comes before its TP all-reduce (FusedMoE.forward_impl)
                for site in ep_sites:
                    if site.repeat == "per_block" and not m.moe_expert_parallel:
                        continue  # not a FusedMoE layer: no exchange (architectures.toml moe_expert_parallel)
                    if _issues(site, plan, stage, layer, block, engine):
                        label = "ep_cpu" if site.cpu_group else "ep"
                        site = _router_site(site, m, runner_or_default(engine).name)
                        if site.repeat == "per_block" and (sp.sequence_parallel_moe(plan, runner_or_default(engine).name)
                                                           or _kernels(plan, engine)):
                            # one EP group of every rank (dp x tp; plan refuses dp with pp > 1)
                            slots.append(Slot(site.name, site, "collective", label, tuple(range(plan.world_size)),
                                               plan.dp * plan.tp, stage))
                            continue
                        slots += [Slot(site.name, site, "collective", label, group, plan.dp, stage, t)
                                  for t, group in enumerate(plan.dp_groups())]
                for site in tp_sites:
                    if _issues(site, plan, stage, layer, block, engine):
                        slots += [Slot(site.name, site, "collective", "tp", tuple(plan.ranks_of_stage(stage, r)),
                                        plan.tp, stage, r) for r in range(plan.dp)] * _times(site, m)
        if stage == plan.pp - 1:
            continue
        group, dst = tuple(plan.ranks_of_stage(stage)), tuple(plan.ranks_of_stage(stage + 1))
        for site in (s for s in pp_sites if s.repeat == "per_boundary"):
            split = plan.tp if site.split_across_tp and plan.tp > 1 else 1
            for tensor in (m.boundary_tensors if site.per_tensor else (site.name.split(".")[-1],)):
                name = f"stage{stage}->stage{stage + 1}.{tensor}"
                # a per-tensor site takes the tensor's own shape (BOUNDARY_SHAPES), not the pattern's default
                sent = dataclasses.replace(site, shape=BOUNDARY_SHAPES[tensor]) if site.per_tensor else site
                slots.append(Slot(name, sent, "send", "pp_cpu" if site.cpu_group else "pp", tuple(zip(group, dst)),
                                   2, stage, split=split))
                if split > 1:  # the receiving stage all-gathers the split tensor (all_gather_group)
                    slots.append(Slot(name + ".all_gather", sent, "regather", "pp", dst, plan.tp, stage + 1))
    for site in (s for s in pp_sites if s.repeat == "per_step"):
        for t in range(plan.tp):  # one PP group per TP rank: (t, t + tp, ...), rooted at the last stage
            members = tuple(stage * plan.tp + t for stage in range(plan.pp))
            slots.append(Slot(site.name, site, "collective", "pp", members, plan.pp, plan.pp - 1, t))
    return tuple(slots)


@lru_cache(maxsize=256)
def site_summary(plan: ParallelPlan, engine: RunnerOptions | None) -> tuple:
    """Per site, in display order (EP and TP sites in pattern order, then the boundaries in stage
    order): (first slot, calls per step, members). Concurrent copies (each DP replica's TP call,
    each TP rank's PP broadcast or DP exchange) are listed in members and counted once."""
    by_site: dict[str, list[Slot]] = {}
    for slot in step_slots(plan, engine):
        by_site.setdefault(slot.name, []).append(slot)
    order = {site.name: i for i, site in enumerate((*load_pattern("ep").sites, *load_pattern("tp").sites))}
    summary = []
    for name in sorted(by_site, key=lambda n: (by_site[n][0].group not in ("tp", "ep", "ep_cpu"), order.get(n, 0))):
        slots = by_site[name]
        first = slots[0]
        if first.kind == "send":
            members = first.members
        elif first.group in ("tp", "ep", "ep_cpu") or first.site.collective == "broadcast":
            members = tuple(dict.fromkeys(s.members for s in slots))
        else:
            members = (first.members,)
        summary.append((first, sum(1 for s in slots if s.replica == 0), members))
    return tuple(summary)
