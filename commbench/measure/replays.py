"""Replay: run a trace's communication for real, in engine order, one step kind at a time.

For each phase (a prefill chunk, a decode step) the step's calls are issued in the order the
engine makes them: the embedding all-reduce, then layer by layer the attention o_proj all-reduce
and the MLP / MoE all-reduce, then the logits all-gather (TP); or every stage boundary's
hidden_states and residual sends (PP); with both, each stage's TP calls in its own group, then
the boundary. Buffers hold the traced dtype (bf16 activations, int64 metadata sizes, ...) where
the backend has it, else float32 of the same byte size (MPI has no bfloat16; the bytes on the
wire are what matter); `type` says which each row used.

Per phase and site the table gives:
    measured_us_per_step   time spent in that site's calls inside the replayed step (p50 over steps)
    isolated_us_per_step   calls x the p50 of the same call timed alone (commbench.measure.timing)
    wire_us_per_step       calls x S x busbw factor / link rate (bandwidth only)
and a `step` row per phase with the whole step timed end to end.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd

from commbench import CommbenchError
from commbench.links import LinkProfile, wire_time_s
from commbench.measure.backends import CAPABILITIES, DTYPE_BYTES
from commbench.measure.collective_specs import SPECS, prepared
from commbench.traffic.plan import ParallelPlan
from commbench.measure.timing import time_adaptive, time_calls
from commbench.traffic.trace import Trace, engine_calls



def engine_order(trace: Trace, phase: str) -> list[tuple]:
    """Every call of one step of `phase` in engine order (commbench.traffic.trace.engine_calls), as
    (site, collective, msg_bytes, members): members are the group's ranks, or a send's
    (src, dst) pairs. With pp > 1 a TP site is named per stage ("stage0.layer.attn.o_proj"); a
    concurrent copy in another DP replica (or PP / DP group) gets a suffix ("layer.moe#1")."""
    return [(_site(trace.plan, c), c.collective, c.msg_bytes, c.members) for c in _phase_calls(trace, phase)]


def _phase_calls(trace: Trace, phase: str):
    return engine_calls(trace.plan, trace.steps[phase], trace.engine, trace.workload.token_budget)


def _site(plan: ParallelPlan, call) -> str:
    return (f"stage{call.stage}." if plan.pp > 1 and call.group == "tp" else "") + call.site \
        + (f"#{call.replica}" if call.replica else "")


def buffer_dtype(traced: str, backend: str, override: str | None = None) -> str:
    """The element type a replayed call's buffers use: `override` or the traced dtype where the
    backend has it (CAPABILITIES), else float32 (same bytes)."""
    wanted = override or traced
    return wanted if wanted in CAPABILITIES.get(backend, {}).get("dtypes", ()) else "float32"


def _groups(backend, calls_by_phase: dict) -> dict:
    """A communicator handle per TP group the calls use (None where this rank is not a member).

    Every rank creates every group in the same order, as torch.distributed and MPI require.
    """
    handles = {}
    world = tuple(range(backend.world_size))
    for calls in calls_by_phase.values():
        for _, coll, _, members, _ in calls:
            if coll == "send_recv" or members in handles:
                continue
            handles[members] = backend if members == world else backend.subgroup(members)
    return handles


REPLAY_IN_PLACE = ("all_reduce", "broadcast")
"""The replay's placements: the engine's all-reduce reduces its tensor in place (the one placement
torch.distributed has), a broadcast has one buffer; the gathers and scatters take two."""


def _call(backend, handles: dict, collective: str, msg_bytes: float, members, buffers: dict, dtype: str = "float32"):
    """(op, check) for this rank's part of one call: the zero-argument op to time (a no-op where it
    takes no part) and check() -> the wrong elements this rank sees when the call runs once on the
    known inputs of the collective's spec (commbench.measure.collective_specs: the member at position
    g of the group holds g + 1; a broadcast is from the last member, the last PP stage, as vLLM's
    sampled-token broadcast). Buffers are shared by the calls of one shape and type (`buffers`)."""
    if collective not in SPECS:
        raise CommbenchError(f"replay cannot run {collective!r} yet")
    spec = SPECS[collective]
    typesize = DTYPE_BYTES[dtype]
    if collective == "send_recv":
        mine = [(src, dst) for src, dst in members if backend.rank in (src, dst)]
        if not mine:
            return _noop, _none_wrong
        return prepared(backend, backend.bound, spec, max(1, int(msg_bytes) // typesize), 2, 0, dtype, peer=mine[0],
                        buffers=buffers)
    group = handles[members]
    if group is None:
        return _noop, _none_wrong
    n, g = len(members), sorted(members).index(backend.rank)  # a group's ranks in world order, as both libraries
    per_rank = max(1, int(msg_bytes) // typesize // (n if spec.collective.gathers else 1))
    return prepared(backend, group.bound, spec, per_rank, n, g, dtype, in_place=collective in REPLAY_IN_PLACE,
                    peer=members[-1] if collective == "broadcast" else None, buffers=buffers)


def _none_wrong() -> int:
    return 0


def _noop():
    pass


def replay_job(calls_by_phase: dict, iters: int, warmup: int, wire: dict, world_size: int):
    """A picklable job: (backend, on_row) -> the replay table, run by every rank of the world."""
    return functools.partial(_replay, calls_by_phase, iters, warmup, wire, world_size)


def _replay(calls_by_phase, iters, warmup, wire, world_size, backend, on_row):
    # long: per phase, one pass of setup, the instrumented and the plain timed steps, and the rows, in order
    if backend.world_size != world_size:
        raise CommbenchError(f"this replay needs a world of {world_size} ranks; the launcher made {backend.world_size}")
    handles = _groups(backend, calls_by_phase)
    rows = []
    buffers: dict = {}
    sync = backend.synchronize
    clock = time.perf_counter
    for phase, calls in calls_by_phase.items():
        placed = [_call(backend, handles, coll, size, members, buffers, dtype) for _, coll, size, members, dtype in calls]
        ops = [op for op, _ in placed]
        sites = [site for site, *_ in calls]
        names = list(dict.fromkeys(sites))
        per_site = np.zeros((len(names), iters))
        index = [names.index(site) for site in sites]
        counter = {"i": None}  # None while warming up

        def step_instrumented():
            i = counter["i"]
            for k, op in zip(index, ops):
                t0 = clock()
                op()
                sync()
                if i is not None:
                    per_site[k, i] += clock() - t0
            if i is not None:
                counter["i"] = i + 1

        for _ in range(warmup):
            step_instrumented()
        counter["i"] = 0
        # one timing loop: the instrumented step (host backends' calls return when done, so the
        # per-call sync is free there; device backends pay it, and get an uninstrumented total below)
        step_samples = time_calls(step_instrumented, backend, iters, 0)
        if backend.events:
            step_samples = time_calls(lambda: [op() for op in ops], backend, iters, warmup)
        # a site's time is its slowest rank's (ranks outside a stage's group record zeros)
        per_site = backend.max_over_ranks(per_site.ravel()).reshape(per_site.shape)
        isolated = {}
        for (site, coll, size, members, _), op in zip(calls, ops):
            if (coll, size, members) not in isolated:
                # the same adaptive rule as a sweep's: the p50 to +-3%, not the p50 of `iters` samples
                isolated[(coll, size, members)] = float(np.median(time_adaptive(op, backend, warmup)))
        # every call's result on every rank, once on known inputs after the timing (wrong: summed over ranks)
        wrong = [backend.sum_over_ranks(placed[sites.index(site)][1]()) for site in names]
        for k, site in enumerate(names):
            first = calls[sites.index(site)]
            coll, size, members, dtype = first[1], first[2], first[3], first[4]
            n_calls = sites.count(site)
            row = {"phase": phase, "site": site, "collective": coll, "msg_bytes": size, "type": dtype, "calls": n_calls,
                   "group_size": 2 if coll == "send_recv" else len(members),
                   "measured_us_per_step": float(np.median(per_site[k])) * 1e6,
                   "isolated_us_per_step": n_calls * isolated[(coll, size, members)] * 1e6,
                   "wire_us_per_step": n_calls * wire[phase][site] * 1e6, "wrong": wrong[k]}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        site_rows = [r for r in rows if r["phase"] == phase]
        rows.append({"phase": phase, "site": "step", "collective": "", "type": "",
                     "msg_bytes": sum(r["msg_bytes"] * r["calls"] for r in site_rows),
                     "calls": len(calls), "group_size": backend.world_size,
                     "measured_us_per_step": float(np.median(step_samples)) * 1e6,
                     "isolated_us_per_step": sum(r["isolated_us_per_step"] for r in site_rows),
                     "wire_us_per_step": sum(r["wire_us_per_step"] for r in site_rows),
                     "wrong": sum(r["wrong"] for r in site_rows)})
        if on_row is not None:
            on_row(rows[-1])
    return pd.DataFrame(rows)


def replay_plan(trace: Trace, link: LinkProfile, phases=("prefill", "decode"), backend: str = "gloo",
                dtype: str | None = None) -> tuple[dict, dict]:
    """(calls by phase, wire seconds per call by phase and site) for replay_job; each call is
    (site, collective, msg_bytes, members, buffer dtype: buffer_dtype of the traced one or `dtype`)."""
    calls_by_phase, wire = {}, {}
    for phase in phases:
        calls = [(_site(trace.plan, c), c.collective, c.msg_bytes, c.members, buffer_dtype(c.dtype, backend, dtype))
                 for c in _phase_calls(trace, phase)]
        calls_by_phase[phase] = calls
        wire[phase] = {site: wire_time_s(coll, size, 2 if coll == "send_recv" else len(members), link)
                       for site, coll, size, members, _ in calls}
    return calls_by_phase, wire


def total_steps(calls_by_phase: dict) -> int:
    """Rows the replay reports (progress total): one per site and one per phase."""
    return sum(len(dict.fromkeys(site for site, *_ in calls)) + 1 for calls in calls_by_phase.values())
