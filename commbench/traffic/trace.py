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

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache

from commbench import lazy_module

pd = lazy_module("pandas")  # imported on first use

from commbench.collectives import get_collective
from commbench.data import check_choices
from commbench.links import LINKS, wire_time_s
from commbench.dtypes import ELEMENT_BYTES
from commbench.traffic.model_card import ModelCard
from commbench.traffic.weight_formats import QUANT_WEIGHT_BYTES
from commbench.traffic.patterns import Site, load_pattern
from commbench.traffic import sequence_parallel as sp
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.registry import choose_engine, served_by
from commbench.traffic.workload import Workload, build_schedule

PHASES = ("prefill", "decode")
THEORY_LINKS = ("200gbe", "pcie5x16")


@dataclass(frozen=True)
class StepShape:
    tokens: float  # tokens in the (micro-batch) step
    sampled: float  # sequences whose logits the step computes


#: Engine generations whose traffic differs (the PP sampled-token broadcast; capture sizes).
ENGINES = {
    "vllm-v1": "vLLM 0.11.0's V1 GPUModelRunner, the generation the review ran",
    "vllm-v2": "current vLLM's model runner v2 (vllm/v1/worker/gpu/model_runner.py)",
}
DEFAULT_ENGINE = "vllm-v1"

#: Hidden-size alignment of the MXFP4 MoE kernels before the MoE all-reduce
#: (vllm/model_executor/layers/quantization/mxfp4.py, Mxfp4MoEMethod.create_weights: Marlin and
#: FlashInfer TRT-LLM round_up(hidden_size, 256), FlashInfer CUTLASS / SM90 128, Triton none).
MOE_KERNEL_HIDDEN_ALIGN = {"triton": 1, "marlin": 256, "flashinfer-trtllm": 256, "flashinfer-cutlass": 128}

#: How expert-parallel MoE layers move tokens (VLLM_ALL2ALL_BACKEND; patterns/ep.toml).
ALL2ALL_BACKENDS = {"allgather_reducescatter": "all2all_allgather", "all_to_all": "all2all_kernels"}

def _ep_dispatch_note(plan: ParallelPlan, engine: RunnerOptions) -> list[str]:
    """The current release's all-gather dispatch carries what the MoE kernel takes: a monolithic
    kernel the router logits (MoEPrepareAndFinalizeNaiveDPEPMonolithic), a modular one the top-k
    weights and ids (MoEPrepareAndFinalizeNaiveDPEPModular -> AgRsAll2AllManager.dispatch); which
    one vLLM picks depends on the GPU and the weights' format, so the trace says which it shows."""
    if plan.dp > 1 and engine.name == "vllm-v2" and ALL2ALL_BACKENDS[engine.all2all] == "all2all_allgather":
        return ["vllm-v2 EP dispatch traced with the router logits (monolithic MoE kernels); a modular kernel "
                "(vllm/model_executor/layers/fused_moe/prepare_finalize/naive_dp_ep.py) gathers top-k weights "
                "(float32) and ids (int32), [tokens, top_k] each, instead"]
    return []


#: vLLM's default ceiling on CUDA-graph capture sizes: min(2 x max_num_seqs, 512) with
#: max_num_seqs >= 256 (vllm/config/scheduler.py in 0.11.0; vllm/config/vllm.py now, 1024 on SM 10.x).
DEFAULT_MAX_CAPTURE_SIZE = 512


@dataclass(frozen=True)
class RunnerOptions:
    """How vLLM's model runner runs a step, as far as it shapes the traffic: the engine generation
    (ENGINES), CUDA graphs or eager (the padding), the MoE kernel and the EP all2all. The serving
    engine's host costs are a different object (commbench.predict.recipes.Engine)."""

    name: str = DEFAULT_ENGINE
    cuda_graphs: bool = True
    max_capture_size: int = DEFAULT_MAX_CAPTURE_SIZE
    moe_kernel: str = "triton"
    all2all: str = "allgather_reducescatter"  # VLLM_ALL2ALL_BACKEND family, for mode ep

    def __post_init__(self) -> None:
        from commbench import CommbenchError

        check_choices((("engine", self.name, ENGINES), ("MoE kernel", self.moe_kernel, MOE_KERNEL_HIDDEN_ALIGN),
                       ("all2all backend", self.all2all, ALL2ALL_BACKENDS)))
        if self.max_capture_size < 1:
            raise CommbenchError(f"max capture size must be >= 1, got {self.max_capture_size}")

    def capture_sizes(self, max_num_tokens: int) -> tuple[int, ...]:
        """The token counts vLLM captures graphs for (none when eager), at most max_num_tokens.

        vllm-v1 (0.11.0 vllm/config/__init__.py _set_cudagraph_sizes): [1, 2, 4] + range(8, max + 1, 8).
        vllm-v2 (vllm/config/vllm.py): [1, 2, 4] + range(8, min(max + 1, 256), 8) + range(256, max + 1, 16),
        plus max_num_tokens itself when it is within max.
        """
        if not self.cuda_graphs:
            return ()
        top = self.max_capture_size
        sizes = [s for s in (1, 2, 4) if s <= top]
        if self.name == "vllm-v1":
            sizes += range(8, top + 1, 8)
        else:
            sizes += list(range(8, min(top + 1, 256), 8)) + list(range(256, top + 1, 16))
            if max_num_tokens <= top:
                sizes.append(max_num_tokens)
        return tuple(sorted({s for s in sizes if s <= max_num_tokens}))

    def padded_tokens(self, tokens: float, max_num_tokens: int) -> float:
        """Tokens the forward runs: a step of up to the largest capture size is padded up to the
        next one (GPUModelRunner: num_input_tokens = pad_for_cudagraph(num_scheduled_tokens))."""
        sizes = _capture_sizes(self, max_num_tokens)  # cached: the whole-run walk pads every step
        if not sizes or tokens > sizes[-1] or tokens <= 0:
            return tokens
        whole = math.ceil(tokens)
        return next(s for s in sizes if s >= whole)


EngineOptions = RunnerOptions  # the old name, kept while issue 20's edits land; use RunnerOptions
_DEFAULT_OPTIONS = RunnerOptions()


@lru_cache(maxsize=64)
def _capture_sizes(engine: RunnerOptions, max_num_tokens: int) -> tuple[int, ...]:
    return engine.capture_sizes(max_num_tokens)


def _int_pickle_bytes(value: int) -> int:
    """Bytes pickle protocol 4 spends on a non-negative int: BININT1, BININT2 or BININT."""
    return 2 if value < 256 else 3 if value < 65536 else 5


def metadata_pickle_bytes(tensors: tuple, dtype: str, none_keys: tuple = ()) -> int:
    """Size of pickle.dumps(metadata_list) that send_tensor_dict sends before the tensors:
    [(key, TensorMetadata("cuda", torch.<dtype>, torch.Size(shape))), ...], protocol 4, for
    `tensors` = ((key, shape), ...):

        96 + len(dtype name) + sum over tensors of (24 + len(key) + sum of each dim's int opcode)

    The first entry carries the globals (TensorMetadata, torch.<dtype>, torch.Size) and later
    ones refer back to them; a shape's tuple is one opcode whatever its length (TUPLE1-3). An
    entry whose value is None (`none_keys`, after the tensors) adds 7 + len(key).
    tests/test_trace_architectures.py checks this against pickle with torch.
    """
    return 96 + len(dtype) + sum(24 + len(key) + sum(_int_pickle_bytes(int(d)) for d in shape) for key, shape in tensors) \
        + sum(7 + len(key) for key in none_keys)


#: The shape of each tensor a stage boundary may carry (IntermediateTensors), in _dims' names.
BOUNDARY_SHAPES = {"hidden_states": ("tokens", "hidden"), "residual": ("tokens", "hidden"),
                   # vllm/model_executor/models/gemma4.py make_empty_intermediate_tensors
                   "per_layer_inputs": ("tokens", "num_layers", "per_layer_input")}


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
    dims = {
        "tokens": tokens,
        # an MoE block's tokens on one rank: sequence_parallel_chunk splits them over TP (padded to a multiple)
        "moe_tokens": -(-tokens // plan.tp) if sp.sequence_parallel_moe(plan, _engine(engine).name) else tokens,
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
        "topk_per_ep": m.experts_per_token / sp.ep_group_size(plan, _engine(engine).name),
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


#: Named rules a site's `when` refers to (patterns/*.toml): each takes the plan, the engine
#: options (None: the serving model's view, read as the defaults) and the layer (None before the
#: layers, -1 after them); the sequence-parallel MoE rules are in commbench.traffic.sequence_parallel.
_WHEN = {
    "": lambda plan, engine, layer: True,
    "mamba_single_group": lambda plan, engine, layer: plan.model.mamba_n_groups == 1 and plan.model.mamba_gated_norm,
    "per_layer_inputs": lambda plan, engine, layer: plan.model.per_layer_input_size > 0,
    "per_layer_embed": lambda plan, engine, layer: plan.model.per_layer_input_size > 0 and plan.model.per_layer_embed,
    "altup": lambda plan, engine, layer: plan.model.altup_num_inputs > 1,
    "all2all_allgather": lambda plan, engine, layer: ALL2ALL_BACKENDS[_engine(engine).all2all] == "all2all_allgather",
    "all2all_kernels": lambda plan, engine, layer: ALL2ALL_BACKENDS[_engine(engine).all2all] == "all2all_kernels",
    **{name: (lambda rule: lambda plan, engine, layer: rule(plan, _engine(engine).name, layer))(rule)
       for name, rule in sp.RULES.items()},
}


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


def _engine(engine: RunnerOptions | None) -> RunnerOptions:
    return engine or _DEFAULT_OPTIONS


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
class _Slot:
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
def _slots(plan: ParallelPlan, engine: RunnerOptions | None) -> tuple[_Slot, ...]:
    """Every call of a step in engine order (see engine_calls), without sizes."""
    # long: the engine's order of a step, stage by stage, in one loop the reader can follow
    m = plan.model
    tp_sites = _engine_sites("tp", engine) if plan.tp > 1 else ()
    ep_sites = _engine_sites("ep", engine) if plan.dp > 1 else ()
    pp_sites = _engine_sites("pp", engine) if plan.pp > 1 else ()
    slots: list[_Slot] = []
    for stage in range(plan.pp):
        for layer in (None, *plan.stage_layer_range(stage), -1):
            # a layer's blocks, after "layer_start" (sites a layer issues before its first block)
            blocks = (None,) if layer is None or layer < 0 else ("layer_start", *m.blocks_of(layer))
            for block in blocks:
                # the EP exchange of an MoE block comes before its TP all-reduce (FusedMoE.forward_impl)
                for site in ep_sites:
                    if _issues(site, plan, stage, layer, block, engine):
                        label = "ep_cpu" if site.cpu_group else "ep"
                        site = _router_site(site, m, _engine(engine).name)
                        if site.repeat == "per_block" and sp.sequence_parallel_moe(plan, _engine(engine).name):
                            # one EP group of every rank (dp x tp; plan refuses dp with pp > 1)
                            slots.append(_Slot(site.name, site, "collective", label, tuple(range(plan.world_size)),
                                               plan.dp * plan.tp, stage))
                            continue
                        slots += [_Slot(site.name, site, "collective", label, group, plan.dp, stage, t)
                                  for t, group in enumerate(plan.dp_groups())]
                for site in tp_sites:
                    if _issues(site, plan, stage, layer, block, engine):
                        slots += [_Slot(site.name, site, "collective", "tp", tuple(plan.ranks_of_stage(stage, r)),
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
                slots.append(_Slot(name, sent, "send", "pp_cpu" if site.cpu_group else "pp", tuple(zip(group, dst)),
                                   2, stage, split=split))
                if split > 1:  # the receiving stage all-gathers the split tensor (all_gather_group)
                    slots.append(_Slot(name + ".all_gather", sent, "regather", "pp", dst, plan.tp, stage + 1))
    for site in (s for s in pp_sites if s.repeat == "per_step"):
        for t in range(plan.tp):  # one PP group per TP rank: (t, t + tp, ...), rooted at the last stage
            members = tuple(stage * plan.tp + t for stage in range(plan.pp))
            slots.append(_Slot(site.name, site, "collective", "pp", members, plan.pp, plan.pp - 1, t))
    return tuple(slots)


def _sized(slot: _Slot, dims: dict, m: ModelCard) -> Call:
    """The Call a slot makes in a step of these dimensions."""
    site = slot.site
    count = _product(dims, site.shape)
    typesize, dtype, shape = _typesize(site, m), _dtype(site, m), _shape(site.shape, dims)
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
    return [_sized(slot, dims, plan.model) for slot in _slots(plan, engine)]


def _typesize(site: Site, m: ModelCard) -> float:
    dtype = _dtype(site, m)
    return ELEMENT_BYTES[dtype]  # a fixed site dtype (int64 metadata, float32 norms) or the card's


def _dtype(site: Site, m: ModelCard) -> str:
    """The site's dtype: the card's activation dtype, the MoE gate's (`router`: the activation
    dtype unless the family's gate runs in another), or a fixed one."""
    if site.dtype == "router":
        return m.router_dtype or m.activation_dtype
    return m.activation_dtype if site.dtype == "activation" else site.dtype


@lru_cache(maxsize=256)
def _site_summary(plan: ParallelPlan, engine: RunnerOptions | None) -> tuple:
    """Per site, in display order (EP and TP sites in pattern order, then the boundaries in stage
    order): (first slot, calls per step, members). Concurrent copies (each DP replica's TP call,
    each TP rank's PP broadcast or DP exchange) are listed in members and counted once."""
    by_site: dict[str, list[_Slot]] = {}
    for slot in _slots(plan, engine):
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


def step_ops(plan: ParallelPlan, step: StepShape, phase: str, engine: RunnerOptions | None = None,
             token_budget: int = 1 << 30) -> list[CommOp]:
    """engine_calls aggregated per site (_site_summary's order and counts)."""
    dims = _dims(plan, step, engine, token_budget)
    ops = []
    for slot, calls, members in _site_summary(plan, engine):
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
