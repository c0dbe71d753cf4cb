"""Trace: the exact communication a serving engine (vLLM conventions) performs for a plan.

For one engine step of a phase (a prefill chunk, a decode step; for PP one micro-batch step) every
site of the plan's patterns becomes a CommOp: collective, dtype, msg_bytes (nccl-tests' S), the
number of calls per step and the peers. Whole-run totals walk the engine schedule
(commbench.traffic.workload.build_schedule).

Worked example, gpt-oss-120b TP=2 decode at batch 128 (hidden 2880, bf16, 36 layers):
    per layer 2 all-reduces of [128, 2880] x 2 B = 737,280 B; + 1 embedding all-reduce = 73 calls;
    logits all-gather of [128, 201088/2] x 2 B per rank -> S = 128 * 201088 * 2 = 51,478,528 B.
PP=2 decode micro-batch (64 requests): hidden_states and residual [64, 2880] x 2 B = 368,640 B each,
sent stage0 -> stage1 once per micro-batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

import pandas as pd

from commbench.collectives import get_collective
from commbench.fabric.links import LINKS, wire_time_s
from commbench.traffic.model_card import DTYPE_BYTES, ModelCard
from commbench.traffic.patterns import Site, load_pattern
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.workload import Workload, build_schedule

PHASES = ("prefill", "decode")
THEORY_LINKS = ("200gbe", "pcie5x16")


@dataclass(frozen=True)
class StepShape:
    tokens: float  # tokens in the (micro-batch) step
    sampled: float  # sequences whose logits the step computes


@dataclass(frozen=True)
class Call:
    """One communication call of an engine step, in the order the engine makes it."""

    site: str  # pattern site name (TP) or "stageA->stageB.<tensor>" (PP boundary)
    collective: str
    msg_bytes: float  # nccl-tests S
    count: float  # elements in S
    group: str  # the pattern's group: "tp" (a stage's tensor-parallel ranks) or "pp" (a stage boundary)
    members: tuple  # the ranks: a TP group (r, ...), or a send's (src, dst) pairs ((s, d), ...)
    group_size: int
    shape: str
    stage: int  # the stage that issues the call (a boundary's sending stage)


@dataclass(frozen=True)
class CommOp:
    """A site's calls of one (micro-batch) step through all stages, aggregated from engine_calls."""

    phase: str
    site: str
    collective: str
    dtype: str
    msg_bytes: float  # nccl-tests S of one call
    count: float  # elements in S
    calls: int  # calls per (micro-batch) step of this phase
    group: str  # "tp" or "pp": which parallel dimension's communicator carries the calls
    members: tuple  # TP: every stage's rank group; PP send: (src, dst) pairs; PP all-gather: (receiving group,)
    group_size: int
    shape: str

    @property
    def peers(self) -> str:
        """The members as text, as trace --json and --csv print them: '[0,1] [2,3]' or '0->2,1->3'."""
        if self.collective == "send_recv":
            return ",".join(f"{a}->{b}" for a, b in self.members)
        return " ".join("[" + ",".join(map(str, g)) + "]" for g in self.members)

    @property
    def wire_bytes_per_rank(self) -> float:
        return get_collective(self.collective).wire_bytes(self.msg_bytes, self.group_size)

    def wire_time_s(self, link_name: str) -> float:
        return wire_time_s(self.collective, self.msg_bytes, self.group_size, LINKS[link_name])


def _dims(plan: ParallelPlan, step: StepShape) -> dict[str, float]:
    return {
        "tokens": step.tokens,
        "sampled": step.sampled,
        "hidden": plan.model.hidden_size,
        "vocab_per_tp": plan.padded_vocab // plan.tp,
    }


def _issues(site: Site, plan: ParallelPlan, stage: int, layer: int | None) -> bool:
    """Whether `stage` issues `site` at this point of its forward: before its layers (layer None,
    first-stage per_forward sites), at `layer`, or after them (layer -1, last-stage per_forward)."""
    m: ModelCard = plan.model
    if site.repeat == "per_forward":
        owner_ok = site.owner == "every_stage" or (site.owner == "first_stage" and stage == 0) or \
            (site.owner == "last_stage" and stage == plan.pp - 1)
        wanted = -1 if site.owner == "last_stage" else None
        return owner_ok and layer == wanted
    if layer is None or layer < 0:
        return False
    return site.repeat == "per_layer" or (site.repeat == "per_moe_layer" and m.moe_layer_mask[layer]) or \
        (site.repeat == "per_dense_layer" and not m.moe_layer_mask[layer])


def engine_calls(plan: ParallelPlan, step: StepShape) -> list[Call]:
    """Every communication call of one (micro-batch) step through all stages, in engine order.

    Stage by stage: its TP calls (first-stage sites, then layer by layer, then last-stage sites),
    then its boundary to the next stage (each tensor's send, split 1/tp per pair when tp > 1 and
    all-gathered by the receiving stage, vLLM V1's all_gather_group). The one place where the
    patterns' repeat and owner fields are read.
    """
    dims = _dims(plan, step)
    typesize = DTYPE_BYTES[plan.model.activation_dtype]
    tp_sites = load_pattern("tp").sites if plan.tp > 1 else ()
    calls: list[Call] = []
    for stage in range(plan.pp):
        group = tuple(plan.ranks_of_stage(stage))
        for layer in (None, *plan.stage_layer_range(stage), -1):
            for site in tp_sites:
                if _issues(site, plan, stage, layer):
                    count = _product(dims, site.shape)
                    coll = get_collective(site.collective)
                    calls.append(Call(site.name, site.collective, coll.msg_bytes(count, typesize, plan.tp),
                                      count * (plan.tp if coll.gathers else 1), "tp", group, plan.tp,
                                      _shape(site.shape, dims), stage))
        if stage == plan.pp - 1:
            continue
        dst = tuple(plan.ranks_of_stage(stage + 1))
        for site in load_pattern("pp").sites:
            count = _product(dims, site.shape)
            split = plan.tp if site.split_across_tp and plan.tp > 1 else 1
            name = f"stage{stage}->stage{stage + 1}.{site.name.split('.')[-1]}"
            calls.append(Call(name, site.collective, count / split * typesize, count / split, "pp",
                              tuple(zip(group, dst)), 2, _shape(site.shape, dims) + (f"/{split}" if split > 1 else ""),
                              stage))
            if split > 1:  # the receiving stage all-gathers the split tensor (all_gather_group)
                calls.append(Call(name + ".all_gather", "all_gather", count * typesize, count, "pp", dst, plan.tp,
                                  _shape(site.shape, dims), stage + 1))
    return calls


def step_ops(plan: ParallelPlan, step: StepShape, phase: str) -> list[CommOp]:
    """engine_calls aggregated per site: TP sites in pattern order, then the boundaries in stage order."""
    by_site: dict[str, list[Call]] = {}
    for call in engine_calls(plan, step):
        by_site.setdefault(call.site, []).append(call)
    order = {site.name: i for i, site in enumerate(load_pattern("tp").sites)}
    dtype = plan.model.activation_dtype
    ops = []
    for name in sorted(by_site, key=lambda n: (by_site[n][0].group != "tp", order.get(n, 0))):
        calls = by_site[name]
        first = calls[0]
        members = tuple(dict.fromkeys(c.members for c in calls)) if first.group == "tp" else \
            (first.members if first.collective == "send_recv" else (first.members,))
        ops.append(CommOp(phase, name, first.collective, dtype, first.msg_bytes, first.count, len(calls), first.group,
                          members, first.group_size, first.shape))
    return ops


def _product(dims: dict[str, float], shape: tuple[str, ...]) -> float:
    value = 1.0
    for dim in shape:
        value *= dims[dim]
    return int(value) if float(value).is_integer() else value


def _shape(shape: tuple[str, ...], dims: dict[str, float]) -> str:
    return "[" + ", ".join(f"{dims[d]:g}" for d in shape) + "]"


def phase_steps(plan: ParallelPlan, w: Workload) -> dict[str, StepShape]:
    """Representative step of each phase: the first full prefill chunk and a full decode step.

    PP keeps pp micro-batches in flight, so its decode step is a micro-batch of ceil(B/pp)
    requests; a prefill micro-batch is one chunk of up to the token budget.
    """
    decode = -(-w.batch // plan.pp)
    return {
        "prefill": StepShape(w.prefill_chunk_tokens, w.prefill_chunk_requests),
        "decode": StepShape(decode, decode),
    }


@dataclass(frozen=True)
class Trace:
    plan: ParallelPlan
    workload: Workload
    steps: dict = field(hash=False)
    ops: tuple[CommOp, ...]

    @property
    def inputs(self) -> dict:
        w = self.workload
        return {"model": self.plan.model.name, "mode": self.plan.mode, "tp": self.plan.tp, "pp": self.plan.pp,
                "batch": w.batch, "isl": w.isl, "osl": w.osl, "scenario": w.scenario,
                "token_budget": w.token_budget, "world_size": self.plan.world_size}

    def ops_frame(self) -> pd.DataFrame:
        rows = []
        for op in self.ops:
            row = {k: v for k, v in asdict(op).items() if k not in ("members", "group")}
            row["peers"] = op.peers  # the --json / --csv schema: members as text
            row = {k: row[k] for k in ("phase", "site", "collective", "dtype", "msg_bytes", "count", "calls", "peers",
                                       "group_size", "shape")}
            row["group"] = op.group
            row["wire_bytes_per_rank"] = op.wire_bytes_per_rank
            for link in THEORY_LINKS:
                row[f"wire_us_{link}"] = op.wire_time_s(link) * 1e6
            rows.append(row)
        return pd.DataFrame(rows)

    @cached_property
    def run_totals(self) -> dict:
        """Calls, bytes and wire time over the whole run (B requests of ISL in, OSL out).

        PP runs the schedule with pp micro-batches in flight, each up to the token budget, so the
        scheduler sees pp x budget tokens per round; a round of T tokens over s sequences becomes
        m = min(pp, s) micro-batches of T/m tokens.
        """
        plan, w = self.plan, self.workload
        schedule = build_schedule(w, w.token_budget * plan.pp)
        totals = dict.fromkeys(("calls", "msg_bytes", "wire_bytes_per_rank", *(f"wire_s_{l}" for l in THEORY_LINKS)), 0.0)
        for group in schedule.groups:
            micro = plan.micro_batches(group.seqs)
            shape = StepShape(group.tokens / micro, group.seqs / micro)
            phase = "prefill" if group.prefill_segments else "decode"
            for op in step_ops(plan, shape, phase):
                n = group.count * micro * op.calls
                totals["calls"] += n
                totals["msg_bytes"] += n * op.msg_bytes
                totals["wire_bytes_per_rank"] += n * op.wire_bytes_per_rank
                for link in THEORY_LINKS:
                    totals[f"wire_s_{link}"] += n * op.wire_time_s(link)
        totals["steps"] = schedule.num_steps
        return totals

    def totals_frame(self) -> pd.DataFrame:
        rows = []
        for phase in PHASES:
            ops = [o for o in self.ops if o.phase == phase]
            unit = "micro-batch step" if self.plan.pp > 1 else "step"
            rows.append({
                "scope": f"per {phase} {unit}",
                "calls": sum(o.calls for o in ops),
                "msg_bytes": sum(o.calls * o.msg_bytes for o in ops),
                "wire_bytes_per_rank": sum(o.calls * o.wire_bytes_per_rank for o in ops),
                **{f"wire_ms_{l}": sum(o.calls * o.wire_time_s(l) for o in ops) * 1e3 for l in THEORY_LINKS},
            })
        run = self.run_totals
        out_tokens = self.workload.output_tokens
        for scope, div in (("per output token", out_tokens), ("whole run", 1)):
            rows.append({
                "scope": scope,
                "calls": run["calls"] / div,
                "msg_bytes": run["msg_bytes"] / div,
                "wire_bytes_per_rank": run["wire_bytes_per_rank"] / div,
                **{f"wire_ms_{l}": run[f"wire_s_{l}"] / div * 1e3 for l in THEORY_LINKS},
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            **self.inputs,
            "steps": {phase: asdict(s) for phase, s in self.steps.items()},
            "ops": self.ops_frame().to_dict(orient="records"),
            "totals": self.totals_frame().to_dict(orient="records"),
        }


def make_trace(plan: ParallelPlan, workload: Workload) -> Trace:
    steps = phase_steps(plan, workload)
    ops = tuple(op for phase, shape in steps.items() for op in step_ops(plan, shape, phase))
    return Trace(plan, workload, steps, ops)
