"""Trace: the exact communication a serving engine (vLLM conventions) performs for a plan.

For one engine step of a phase (a prefill chunk, a decode step; for PP one micro-batch step) every
site of the plan's patterns becomes a CommOp: collective, dtype, msg_bytes (nccl-tests' S), the
number of calls per step and the peers. Whole-run totals walk the engine schedule
(commbench.traffic.workload.build_schedule). Which sites each stage issues, in engine order, is
commbench.traffic.slots; how the runner shapes a step (capture sizes, MoE kernel, all2all),
commbench.traffic.runner_options; a stage boundary's tensors and metadata, commbench.traffic.boundary.

Worked example, gpt-oss-120b TP=2 decode at batch 128 (hidden 2880, bf16, 36 layers):
    per layer 2 all-reduces of [128, 2880] x 2 B = 737,280 B; + 1 embedding all-reduce = 73 calls;
    logits all-gather of [128, 201088/2] x 2 B per rank -> S = 128 * 201088 * 2 = 51,478,528 B.
PP=2 decode micro-batch (64 requests): hidden_states and residual [64, 2880] x 2 B = 368,640 B each,
sent stage0 -> stage1 once per micro-batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench.collectives import get_collective
from commbench.links import LINKS, wire_time_s
from commbench.dtypes import ELEMENT_BYTES
from commbench.traffic.boundary import BOUNDARY_SHAPES, metadata_pickle_bytes
from commbench.traffic.model_card import ModelCard
from commbench.traffic.weight_formats import QUANT_WEIGHT_BYTES
from commbench.traffic.patterns import Site
from commbench.traffic import sequence_parallel as sp
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.registry import choose_engine, served_by
from commbench.traffic.runner_options import (ALL2ALL_BACKENDS, ENGINES, MOE_KERNEL_HIDDEN_ALIGN, RunnerOptions,
                                              runner_or_default)
from commbench.traffic.slots import Slot, site_summary, step_slots
from commbench.traffic.workload import Workload, build_schedule

PHASES = ("prefill", "decode")
THEORY_LINKS = ("200gbe", "pcie5x16")


@dataclass(frozen=True)
class StepShape:
    tokens: float  # tokens in the (micro-batch) step
    sampled: float  # sequences whose logits the step computes


def _ep_dispatch_note(plan: ParallelPlan, engine: RunnerOptions) -> list[str]:
    """The current release's all-gather dispatch carries what the MoE kernel takes: a monolithic
    kernel the router logits (MoEPrepareAndFinalizeNaiveDPEPMonolithic), a modular one the top-k
    weights and ids (MoEPrepareAndFinalizeNaiveDPEPModular -> AgRsAll2AllManager.dispatch); which
    one vLLM picks depends on the GPU and the weights' format, so the trace says which it shows."""
    if plan.dp > 1 and engine.name == "vllm-v2" and ALL2ALL_BACKENDS[engine.all2all] == "all2all_allgather":
        return ["vllm-v2 EP dispatch traced with the router logits (monolithic MoE kernels); a modular kernel "
                "(vllm/model_executor/layers/fused_moe/prepare_finalize/naive_dp_ep.py) gathers top-k weights "
                "(float32) and ids (int32), [tokens, top_k] each, instead"]
    if plan.dp > 1 and engine.all2all_kernels and plan.model.moe_expert_parallel:
        return [f"{engine.name} EP all_to_all traced as DeepEP high-throughput (prepare_finalize/deepep_ht.py "
                "buffer.dispatch): each token carries its top-k ids (int64) and weights (float32), not router "
                "logits; DeepEP low-latency (deepep_ll.py) sends the ids only and may dispatch fp8"]
    return []


@dataclass(frozen=True)
class Call:
    """One communication call of an engine step, in the order the engine makes it."""

    site: str  # pattern site name (TP) or "stageA->stageB.<tensor>" (PP boundary)
    collective: str
    msg_bytes: float  # nccl-tests S
    count: float  # elements in S
    group: str  # "tp" (a stage's tensor-parallel ranks), "pp" (a stage boundary), "pp_cpu" (its gloo group)
    members: tuple  # the ranks: a group (r, ...), or a send's (src, dst) pairs ((s, d), ...)
    group_size: int
    shape: str
    stage: int  # the stage that issues the call (a boundary's sending stage)
    dtype: str = ""
    replica: int = 0  # which of the concurrent copies (DP replica, or the TP rank of a PP/DP group) makes it


@dataclass(frozen=True)
class CommOp:
    """A site's calls of one (micro-batch) step through all stages, aggregated from engine_calls
    (concurrent copies in other DP replicas or PP/DP groups are listed in members, counted once)."""

    phase: str
    site: str
    collective: str
    dtype: str
    msg_bytes: float  # nccl-tests S of one call
    count: float  # elements in S
    calls: int  # calls per (micro-batch) step of this phase
    group: str  # "tp", "pp" or "pp_cpu": which communicator carries the calls
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


def _dims(plan: ParallelPlan, step: StepShape, engine: RunnerOptions | None, token_budget: int) -> dict[str, float]:
    m = plan.model
    tokens = engine.padded_tokens(step.tokens, token_budget) if engine else step.tokens
    moe_hidden = m.hidden_size
    if engine and m.weight_bytes("experts") == QUANT_WEIGHT_BYTES["mxfp4"]:
        align = MOE_KERNEL_HIDDEN_ALIGN[engine.moe_kernel]
        moe_hidden = -(-m.hidden_size // align) * align
    kv_per_tp = max(1, m.num_key_value_heads // plan.tp) * m.head_dim  # KV heads replicated when tp > kv heads
    runner = runner_or_default(engine)
    dims = {
        "tokens": tokens,
        # an MoE block's tokens on one rank: sequence_parallel_chunk splits them over TP (padded to a multiple)
        "moe_tokens": -(-tokens // plan.tp) if sp.sequence_parallel_moe(plan, runner.name) else tokens,
        "sampled": step.sampled,
        "hidden": m.hidden_size,
        "hidden_per_tp": m.hidden_size // plan.tp,
        "moe_hidden": moe_hidden,
        "mamba_x_proj": m.mamba_x_proj_width,
        "vocab_per_tp": plan.padded_vocab // plan.tp,
        "experts": m.num_experts,
        "q_per_tp": m.q_size // plan.tp,
        "kv_per_tp": kv_per_tp,
        "qkv_per_tp": m.q_size // plan.tp + 2 * kv_per_tp,
        "topk": m.experts_per_token,
        "topk_per_ep": m.experts_per_token / sp.ep_group_size(plan, runner.name, runner.all2all_kernels),
        "sp_exit_width": m.hidden_size * len(m.sp_residual_exit),
        "dp": plan.dp,
        "num_layers": m.num_hidden_layers,
        "per_layer_input": m.per_layer_input_size,
        "per_layer_total": m.num_hidden_layers * m.per_layer_input_size,
        "per_layer_total_per_tp": m.num_hidden_layers * m.per_layer_input_size // plan.tp,
    }
    dims["metadata_bytes"] = metadata_pickle_bytes(
        tuple((t, tuple(int(math.ceil(dims[d])) for d in BOUNDARY_SHAPES[t])) for t in m.boundary_tensors),
        m.activation_dtype, m.boundary_none)
    return dims


def _sized(slot: Slot, dims: dict, m: ModelCard) -> Call:
    """The Call a slot makes in a step of these dimensions."""
    site = slot.site
    count = _product(dims, site.shape)
    dtype, shape = _dtype(site, m), _shape(site.shape, dims)
    typesize = ELEMENT_BYTES[dtype]  # a fixed site dtype (int64 metadata, float32 norms) or the card's
    if slot.kind == "send":
        return Call(slot.name, site.collective, count / slot.split * typesize, count / slot.split, slot.group,
                    slot.members, 2, shape + (f"/{slot.split}" if slot.split > 1 else ""), slot.stage, dtype)
    if slot.kind == "regather":
        return Call(slot.name, "all_gather", count * typesize, count, slot.group, slot.members, slot.n, shape,
                    slot.stage, dtype)
    coll = get_collective(site.collective)
    return Call(slot.name, site.collective, coll.msg_bytes(count, typesize, slot.n),
                count * (slot.n if coll.gathers else 1), slot.group, slot.members, slot.n, shape, slot.stage, dtype,
                slot.replica)


def engine_calls(plan: ParallelPlan, step: StepShape, engine: RunnerOptions | None = None,
                 token_budget: int = 1 << 30) -> list[Call]:
    """Every communication call of one (micro-batch) step through all stages, in engine order.

    Stage by stage: its EP and TP calls (first-stage sites, then layer by layer each block's sites,
    then last-stage sites), then its boundary to the next stage (the metadata over the CPU group,
    then each boundary tensor's send, split 1/tp per pair when tp > 1 and all-gathered by the
    receiving stage, vLLM V1's all_gather_group); last, the per-step sites (vllm-v2's sampled-token
    broadcast from the last stage). The one place where the patterns' repeat and owner fields are read.
    `engine` None gives the bytes-linear view the serving model uses (no padding, no metadata).
    """
    dims = _dims(plan, step, engine, token_budget)
    return [_sized(slot, dims, plan.model) for slot in step_slots(plan, engine)]


def _dtype(site: Site, m: ModelCard) -> str:
    """The site's dtype: the card's activation dtype or a fixed one (a `router` site arrives as the
    gate's dtype for its engine, commbench.traffic.slots._router_site)."""
    return m.activation_dtype if site.dtype == "activation" else site.dtype


def step_ops(plan: ParallelPlan, step: StepShape, phase: str, engine: RunnerOptions | None = None,
             token_budget: int = 1 << 30) -> list[CommOp]:
    """engine_calls aggregated per site (site_summary's order and counts)."""
    dims = _dims(plan, step, engine, token_budget)
    ops = []
    for slot, calls, members in site_summary(plan, engine):
        c = _sized(slot, dims, plan.model)
        ops.append(CommOp(phase, slot.name, c.collective, c.dtype, c.msg_bytes, c.count, calls, c.group, members,
                          c.group_size, c.shape))
    return ops


def _product(dims: dict[str, float], shape: tuple) -> float:
    value = 1.0
    for dim in shape:
        value *= dim if isinstance(dim, int) else dims[dim]
    return int(value) if float(value).is_integer() else value


def _shape(shape: tuple, dims: dict[str, float]) -> str:
    return "[" + ", ".join(f"{d if isinstance(d, int) else dims[d]:g}" for d in shape) + "]"


def phase_steps(plan: ParallelPlan, w: Workload) -> dict[str, StepShape]:
    """Representative step of each phase: the first full prefill chunk and a full decode step.

    PP keeps pp micro-batches in flight, so its decode step is a micro-batch of ceil(B/pp)
    requests; a prefill micro-batch is one chunk of up to the token budget. With dp replicas
    (mode ep) each replica schedules its own ceil(B/dp) requests.
    """
    w = replica_workload(plan, w)
    decode = -(-w.batch // plan.pp)
    return {
        "prefill": StepShape(w.prefill_chunk_tokens, w.prefill_chunk_requests),
        "decode": StepShape(decode, decode),
    }


def replica_workload(plan: ParallelPlan, w: Workload) -> Workload:
    """What one DP replica's scheduler sees: ceil(B/dp) of the B requests (the workload itself when dp = 1)."""
    return w if plan.dp == 1 else dataclasses.replace(w, batch=-(-w.batch // plan.dp))


@dataclass(frozen=True)
class Trace:
    plan: ParallelPlan
    workload: Workload
    steps: dict = field(hash=False)
    ops: tuple[CommOp, ...]
    engine: RunnerOptions = RunnerOptions()
    engine_notes: tuple = ()  # what the engine registry check said (traffic/registry.py): a switch, a backend

    @property
    def inputs(self) -> dict:
        w, e = self.workload, self.engine
        return {"model": self.plan.model.name, "mode": self.plan.mode, "tp": self.plan.tp, "pp": self.plan.pp,
                "batch": w.batch, "isl": w.isl, "osl": w.osl, "scenario": w.scenario,
                "token_budget": w.token_budget, "world_size": self.plan.world_size,
                "engine": e.name, "cuda_graphs": e.cuda_graphs, "moe_kernel": e.moe_kernel}

    @property
    def warnings(self) -> list[str]:
        """What the trace could not derive exactly (from the model card), said in every output."""
        return [*self.plan.model.warnings, *self.engine_notes, *_ep_dispatch_note(self.plan, self.engine)]

    def ops_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.ops_records())

    def ops_records(self) -> list[dict]:
        """The op rows (the --json / --csv schema) as plain dicts: no pandas on the trace path."""
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
        return rows

    @cached_property
    def run_totals(self) -> dict:
        """Calls, bytes and wire time over the whole run (B requests of ISL in, OSL out).

        PP runs the schedule with pp micro-batches in flight, each up to the token budget, so the
        scheduler sees pp x budget tokens per round; a round of T tokens over s sequences becomes
        m = min(pp, s) micro-batches of T/m tokens. With dp replicas the totals are one replica's
        (every replica makes the same calls on its share of the requests).
        """
        plan, w = self.plan, replica_workload(self.plan, self.workload)
        schedule = build_schedule(w, w.token_budget * plan.pp)
        totals = dict.fromkeys(("calls", "msg_bytes", "wire_bytes_per_rank", *(f"wire_s_{l}" for l in THEORY_LINKS)), 0.0)
        for group in schedule.groups:
            micro = plan.micro_batches(group.seqs)
            shape = StepShape(group.tokens / micro, group.seqs / micro)
            phase = "prefill" if group.prefill_segments else "decode"
            for op in step_ops(plan, shape, phase, self.engine, w.token_budget):
                n = group.count * micro * op.calls
                totals["calls"] += n
                totals["msg_bytes"] += n * op.msg_bytes
                totals["wire_bytes_per_rank"] += n * op.wire_bytes_per_rank
                for link in THEORY_LINKS:
                    totals[f"wire_s_{link}"] += n * op.wire_time_s(link)
        totals["steps"] = schedule.num_steps
        return totals

    def totals_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.totals_records())

    def totals_records(self) -> list[dict]:
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
        out_tokens = replica_workload(self.plan, self.workload).output_tokens
        for scope, div in (("per output token", out_tokens), ("whole run", 1)):
            rows.append({
                "scope": scope,
                "calls": run["calls"] / div,
                "msg_bytes": run["msg_bytes"] / div,
                "wire_bytes_per_rank": run["wire_bytes_per_rank"] / div,
                **{f"wire_ms_{l}": run[f"wire_s_{l}"] / div * 1e3 for l in THEORY_LINKS},
            })
        return rows

    def to_dict(self) -> dict:
        return {
            **self.inputs,
            "engine_description": ENGINES[self.engine.name],
            "family": self.plan.model.family,
            "served_by": served_by(self.plan.model.architectures, self.plan.model.block_kinds),  # generations serving it
            "warnings": self.warnings,
            "steps": {phase: asdict(s) for phase, s in self.steps.items()},
            "ops": self.ops_records(),
            "totals": self.totals_records(),
        }


def make_trace(plan: ParallelPlan, workload: Workload, engine: RunnerOptions | None = None,
               engine_explicit: bool | None = None) -> Trace:
    """The trace under `engine`, once its model registry can serve the model (registry.choose_engine):
    refused in one line when it cannot; switched, and said, when the engine was not chosen
    (engine_explicit False; default: chosen when `engine` is given)."""
    explicit = engine is not None if engine_explicit is None else engine_explicit
    engine = engine or RunnerOptions()
    name, notes = choose_engine(plan.model.architectures, engine.name, explicit, plan.model.block_kinds)
    engine = engine if name == engine.name else dataclasses.replace(engine, name=name)
    steps = phase_steps(plan, workload)
    ops = tuple(op for phase, shape in steps.items()
                for op in step_ops(plan, shape, phase, engine, workload.token_budget))
    return Trace(plan, workload, steps, ops, engine, notes)
