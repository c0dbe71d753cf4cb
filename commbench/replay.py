"""Replay: run a trace's communication for real, in engine order, one step kind at a time.

For each phase (a prefill chunk, a decode step) the step's calls are issued in the order the
engine makes them: the embedding all-reduce, then layer by layer the attention o_proj all-reduce
and the MLP / MoE all-reduce, then the logits all-gather (TP); or every stage boundary's
hidden_states and residual sends (PP). Buffers are float32 of the same byte size as the traced
tensors (gloo and MPI reduce float32 everywhere; the bytes on the wire are what matter).

Per phase and site the table gives:
    measured_us_per_step   time spent in that site's calls inside the replayed step (p50 over steps)
    isolated_us_per_step   calls x the p50 of the same call timed alone (commbench.timing)
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
from commbench.patterns import load_pattern
from commbench.plan import ParallelPlan
from commbench.timing import time_calls
from commbench.trace import Trace

TYPESIZE = 4  # float32 buffers of the traced byte size


def engine_order(trace: Trace, phase: str) -> list[tuple[str, str, float, int, int]]:
    """(site, collective, msg_bytes, src, dst) of every call of one step of `phase`, in engine order.

    src/dst are the sending and receiving ranks of a PP send (-1 for TP collectives).
    """
    plan: ParallelPlan = trace.plan
    ops = {op.site: op for op in trace.ops if op.phase == phase}
    calls = []
    if plan.tp > 1:
        if plan.pp > 1:
            raise CommbenchError(f"replay runs tp-only or pp-only plans for now; got {plan.describe()}")
        sites = load_pattern("tp").sites
        model = plan.model

        def emit(site):
            if site.name in ops:
                calls.append((site.name, site.collective, ops[site.name].msg_bytes, -1, -1))

        for site in sites:
            if site.repeat == "per_forward" and site.owner == "first_stage":
                emit(site)
        for layer in range(model.num_hidden_layers):
            for site in sites:
                if site.repeat == "per_layer" or (site.repeat == "per_moe_layer" and model.moe_layer_mask[layer]) or \
                        (site.repeat == "per_dense_layer" and not model.moe_layer_mask[layer]):
                    emit(site)
        for site in sites:
            if site.repeat == "per_forward" and site.owner == "last_stage":
                emit(site)
        return calls
    for op in trace.ops:
        if op.phase == phase and op.collective == "send_recv":
            src, dst = (int(x) for x in op.peers.split(",")[0].split("->"))
            calls.append((op.site, op.collective, op.msg_bytes, src, dst))
    return calls


def _call(backend, collective: str, msg_bytes: float, src: int, dst: int, buffers: dict):
    """A zero-argument op for one call; buffers are shared per (collective, size) as an engine reuses them."""
    n = backend.world_size
    key = (collective, int(msg_bytes))
    if collective == "all_reduce":
        if key not in buffers:
            buffers[key] = backend.buffer(max(1, int(msg_bytes) // TYPESIZE), 0.0)
        return functools.partial(backend.all_reduce, buffers[key])
    if collective == "all_gather":
        if key not in buffers:
            per_rank = max(1, int(msg_bytes) // TYPESIZE // n)
            buffers[key] = (backend.buffer(per_rank * n, 0.0), backend.buffer(per_rank, 1.0))
        out, inp = buffers[key]
        return functools.partial(backend.all_gather, out, inp)
    if collective == "send_recv":
        if key not in buffers:
            buffers[key] = backend.buffer(max(1, int(msg_bytes) // TYPESIZE), 1.0)
        return functools.partial(backend.send_recv, buffers[key], src, dst)
    raise CommbenchError(f"replay cannot run {collective!r} yet")


def replay_job(calls_by_phase: dict, iters: int, warmup: int, wire: dict, world_size: int):
    """A picklable job: (backend, on_row) -> the replay table, run by every rank of the world."""
    return functools.partial(_replay, calls_by_phase, iters, warmup, wire, world_size)


def _replay(calls_by_phase, iters, warmup, wire, world_size, backend, on_row):
    if backend.world_size != world_size:
        raise CommbenchError(f"this replay needs a world of {world_size} ranks; the launcher made {backend.world_size}")
    rows = []
    buffers: dict = {}
    sync = backend.synchronize
    clock = time.perf_counter
    for phase, calls in calls_by_phase.items():
        ops = [_call(backend, coll, size, src, dst, buffers) for _, coll, size, src, dst in calls]
        sites = [site for site, *_ in calls]
        per_site = {site: np.zeros(iters) for site in dict.fromkeys(sites)}
        counter = {"i": None}  # None while warming up

        def step_instrumented():
            i = counter["i"]
            for site, op in zip(sites, ops):
                t0 = clock()
                op()
                sync()
                if i is not None:
                    per_site[site][i] += clock() - t0
            if i is not None:
                counter["i"] = i + 1

        for _ in range(warmup):
            step_instrumented()
        counter["i"] = 0
        # one timing loop: the instrumented step (host backends' calls return when done, so the
        # per-call sync is free there; device backends pay it, and get an uninstrumented total below)
        step_samples = time_calls(step_instrumented, backend, iters, 0)
        if getattr(backend, "new_event", None):
            step_samples = time_calls(lambda: [op() for op in ops], backend, iters, warmup)
        isolated = {}
        for (site, coll, size, src, dst), op in zip(calls, ops):
            if (coll, size) not in isolated:
                isolated[(coll, size)] = float(np.median(time_calls(op, backend, iters, warmup)))
        for site in per_site:
            first = calls[sites.index(site)]
            coll, size = first[1], first[2]
            n_calls = sites.count(site)
            row = {"phase": phase, "site": site, "collective": coll, "msg_bytes": size, "calls": n_calls,
                   "measured_us_per_step": float(np.median(per_site[site])) * 1e6,
                   "isolated_us_per_step": n_calls * isolated[(coll, size)] * 1e6,
                   "wire_us_per_step": n_calls * wire[phase][site] * 1e6}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        site_rows = [r for r in rows if r["phase"] == phase]
        rows.append({"phase": phase, "site": "step", "collective": "", "msg_bytes": sum(r["msg_bytes"] * r["calls"] for r in site_rows),
                     "calls": len(calls), "measured_us_per_step": float(np.median(step_samples)) * 1e6,
                     "isolated_us_per_step": sum(r["isolated_us_per_step"] for r in site_rows),
                     "wire_us_per_step": sum(r["wire_us_per_step"] for r in site_rows)})
        if on_row is not None:
            on_row(rows[-1])
    return pd.DataFrame(rows)


def replay_plan(trace: Trace, link: LinkProfile, phases=("prefill", "decode")) -> tuple[dict, dict]:
    """(calls by phase, wire seconds per call by phase and site) for replay_job."""
    calls_by_phase, wire = {}, {}
    n = trace.plan.world_size
    for phase in phases:
        calls = engine_order(trace, phase)
        calls_by_phase[phase] = calls
        wire[phase] = {site: wire_time_s(coll, size, n, link)
                       for site, coll, size, _, _ in calls}
    return calls_by_phase, wire


def total_steps(calls_by_phase: dict) -> int:
    """Rows the replay reports (progress total): one per site and one per phase."""
    return sum(len(dict.fromkeys(site for site, *_ in calls)) + 1 for calls in calls_by_phase.values())
