"""Helpers of scripts/device-check.sh (issue 21), one subcommand each:

  env OUT.json            python, torch, CUDA, NCCL, CuPy, MPI versions and the GPUs, printed and saved
  parse PLAN.tsv          every commbench command line the script runs (column `argv`, tab-separated
                          arguments) parsed by commbench's own click commands (make_context, no
                          execution); sweep lines also checked against the backend's datatypes, ops and
                          placements (check_sweep_choices); exit 2 naming the first line that fails
  matrix --backend B ...  one rank joins the launcher's world once and sweeps every collective x timing
                          x datatype x op the backend claims (CAPABILITIES), one CSV row per size, a
                          status row per combination (ok / wrong / error: text); exit 1 if a required
                          combination failed. Run under `python3 -m torch.distributed.run`.
  summary OUTDIR WORKDIR  summary.md from the steps table and the saved tables

No third-party imports beyond what commbench itself needs (the GPU box has no pip).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the tree: PYTHONPATH may be unset

MiB = 1 << 20


# ---- env ---------------------------------------------------------------------------------------
def _try(fn):
    try:
        return fn()
    except Exception as exc:  # a missing library is a finding, not a failure of the step
        return f"unavailable: {type(exc).__name__}: {exc}".splitlines()[0]


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "host": platform.node()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        env["nccl"] = _try(lambda: ".".join(map(str, torch.cuda.nccl.version())))
        env["gpus"] = [{"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                        "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count}
                       for p in (torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count()))]
    except ImportError:
        env["torch"] = "not installed"
    env["cupy"] = _try(lambda: __import__("cupy").__version__)
    env["cupy_nccl"] = _try(lambda: __import__("cupy.cuda.nccl", fromlist=["nccl"]).get_version())
    env["mpi4py"] = _try(lambda: __import__("mpi4py").__version__)
    env["mpi_library"] = _try(_mpi_library_version)
    for name in ("numpy", "pandas", "click", "rich", "scipy", "matplotlib", "pytest"):
        env[name] = _try(lambda name=name: __import__(name).__version__)
    return env


def _mpi_library_version() -> str:
    """The MPI library's version line without starting MPI (MPI_Get_library_version may be called
    before MPI_Init): a singleton MPI_Init here would leave a /dev/shm segment and an ompi.* session
    folder behind."""
    import mpi4py

    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    from mpi4py import MPI

    return MPI.Get_library_version().splitlines()[0]


def cmd_env(args) -> int:
    env = environment()
    Path(args.out).write_text(json.dumps(env, indent=1))
    for k, v in env.items():
        print(f"{k}: {v}")
    return 0


# ---- parse -------------------------------------------------------------------------------------
def _unparsed(ctx) -> list[str]:
    """A group context's subcommand and its arguments (click 8.2 deprecates protected_args; 9 folds it into args)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *ctx.args]


def parse_command(argv: list[str]):
    """The (command name, parameters) commbench's click group would run for argv; raises on bad usage."""
    import click

    from commbench.cli import main

    ctx = main.make_context("commbench", list(argv))
    name, command, rest = main.resolve_command(ctx, _unparsed(ctx))
    if isinstance(command, click.Group):  # e.g. fabric fit, models show
        sub = command.make_context(name, rest, parent=ctx)
        sub_name, subcommand, rest = command.resolve_command(sub, _unparsed(sub))
        sub2 = subcommand.make_context(sub_name, rest, parent=sub)
        return f"{name} {sub_name}", sub2.params
    return name, command.make_context(name, rest, parent=ctx).params


def check_line(argv: list[str]) -> str:
    """Parse one command line; for a sweep also check its choices against the backend's capabilities."""
    from commbench.measure.sweeps import check_sweep_choices

    name, params = parse_command(argv)
    if name == "sweep":
        placements = check_sweep_choices(params["collective"], params["backend"], params["dtype"], params["redop"],
                                         params["placement"] or "both")
        from commbench.measure.timing import TIMING_MODES

        if params["timing"] not in TIMING_MODES:
            raise ValueError(f"--timing {params['timing']} is not one of {', '.join(TIMING_MODES)}")
        return f"{name} ({', '.join(placements)})"
    return name


def cmd_parse(args) -> int:
    lines = [row for row in csv.DictReader(open(args.plan), delimiter="\t") if row["argv"]]
    results = []
    for i, row in enumerate(lines, 1):
        argv = row["argv"].split("\x1f")
        try:
            what = check_line(argv)
        except BaseException as exc:  # click's UsageError, SystemExit from --help, a CommbenchError
            print(f"line {i} (step {row['step']}): commbench {' '.join(argv)}: does not parse: "
                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
            return 2
        results.append(f"ok\t{row['step']}\t{what}\tcommbench {' '.join(argv)}")
    Path(args.report).write_text("\n".join(results) + "\n")
    print(f"parsed {len(results)} commbench command lines of {args.plan}")
    return 0


# ---- matrix ------------------------------------------------------------------------------------
def matrix_plan(backend: str, world: int, max_bytes: int, quick: bool) -> list[dict]:
    """Every combination to run: (collective, timing, dtype, op, placement, sizes, required).

    float32 sums: every timing (cuda-graph where the backend captures), every size from 8 B to max_bytes
    (x2); the other datatypes: blocking, x8 steps to max_bytes; the other ops: all_reduce, blocking,
    8 B to 1 MiB (x4); every placement the backend claims; send_recv_bidir at one rank is a send to
    oneself (a probe there: NCCL may refuse it)."""
    from commbench.measure.backends import CAPABILITIES
    from commbench.measure.cuda_graph import GRAPH_BACKENDS
    from commbench.measure.sweeps import sizes_between

    caps = CAPABILITIES[backend]
    timings = ["blocking", "back-to-back"] + (["cuda-graph"] if backend in GRAPH_BACKENDS else [])
    full, sparse, small = (sizes_between(8, max_bytes, 2), sizes_between(8, max_bytes, 8),
                           sizes_between(8, min(max_bytes, MiB), 4))
    if quick:
        full = sparse = small = sizes_between(8, min(max_bytes, 4096), 8)
    plan = []
    for collective in ("all_reduce", "all_gather"):
        for timing in timings:
            for dtype in caps["dtypes"]:
                if timing != "blocking" and dtype != "float32":
                    continue
                for placement in caps["placements"][collective]:
                    plan.append(dict(collective=collective, timing=timing, dtype=dtype, op="sum", placement=placement,
                                     sizes=full if dtype == "float32" else sparse, required=True))
    for dtype in caps["dtypes"]:
        for op in caps["ops"]:
            if op != "sum":
                plan.append(dict(collective="all_reduce", timing="blocking", dtype=dtype, op=op,
                                 placement=caps["placements"]["all_reduce"][0], sizes=small, required=True))
    plan.append(dict(collective="send_recv_bidir", timing="blocking", dtype="float32", op="sum", placement="both",
                     sizes=small, required=world > 1))
    return plan


def cmd_matrix(args) -> int:
    import pandas as pd

    from commbench.measure.sweeps import run_sweep
    from commbench.measure.world import join_world

    backend = join_world(args.backend, args.timeout, {"buffers": "cuda"} if args.cuda_buffers else None)
    plan = matrix_plan(args.backend, backend.world_size, args.max_bytes, args.quick)
    failed_required = 0
    out, status = Path(args.out), Path(args.out).with_suffix(".status.csv")
    for path in (out, status):
        path.unlink(missing_ok=True)
    for i, combo in enumerate(plan, 1):
        label = f"{combo['collective']} {combo['timing']} {combo['dtype']} {combo['op']} {combo['placement']}"
        try:
            frame = run_sweep(backend, combo["collective"], combo["sizes"], args.iters, args.warmup, combo["timing"],
                              dtype=combo["dtype"], op=combo["op"], placement=combo["placement"])
            wrong = int(frame["wrong"].sum()) if len(frame) else 0
            result = "ok" if wrong == 0 else f"wrong: {wrong} values"
            if backend.rank == 0:
                frame.drop(columns=["samples_us"]).assign(backend=args.backend, timing=combo["timing"]).to_csv(
                    out, mode="a", header=not out.exists(), index=False)
        except Exception as exc:
            result = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if os.environ.get("DEVICE_CHECK_TRACEBACKS"):
                traceback.print_exc()
        failed_required += combo["required"] and result != "ok"
        if backend.rank == 0:
            pd.DataFrame([{**{k: v for k, v in combo.items() if k != "sizes"}, "sizes": len(combo["sizes"]),
                           "max_bytes": combo["sizes"][-1], "result": result}]).to_csv(
                status, mode="a", header=not status.exists(), index=False)
            print(f"[{i}/{len(plan)}] {label}: {result}", flush=True)
    backend.close()
    if backend.rank == 0:
        print(f"{len(plan)} combinations, {failed_required} required ones failed")
    return 1 if failed_required else 0


# ---- summary -----------------------------------------------------------------------------------
def _table(frame, columns) -> list[str]:
    cols = [c for c in columns if c in frame]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame[cols].iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return lines


def cmd_summary(args) -> int:
    import pandas as pd

    work = Path(args.work)
    lines = ["# Device check", ""]
    env_path = work / "env.json"
    if env_path.exists():
        env = json.loads(env_path.read_text())
        gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in env.get("gpus", [])) or "none"
        lines += [f"GPUs: {gpus}; torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), NCCL {env.get('nccl')}, "
                  f"CuPy {env.get('cupy')}, mpi4py {env.get('mpi4py')}, Python {env.get('python')}", ""]
    steps = work / "steps.tsv"
    if steps.exists():
        frame = pd.read_csv(steps, sep="\t", dtype=str, keep_default_na=False)
        lines += ["## Steps", ""] + _table(frame, ["step", "kind", "status", "seconds", "command"]) + [""]
    raw = work / "raw"
    sweeps = [p for p in sorted(raw.glob("*.csv")) if not p.name.startswith(("compute_", "predict_")) and
              not p.name.endswith(".status.csv")] if raw.exists() else []
    if sweeps:
        lines += ["## Sweeps: p50 at the smallest size, bandwidth at the largest", ""]
        rows = []
        for path in sweeps:
            frame = pd.read_csv(path)
            if not len(frame) or "msg_bytes" not in frame:
                continue
            keys = [k for k in ("collective", "timing", "type", "redop", "placement") if k in frame]
            for key, group in frame.groupby(keys) if keys else [((), frame)]:
                lo, hi = group.loc[group.msg_bytes.idxmin()], group.loc[group.msg_bytes.idxmax()]
                rows.append({"file": path.name, **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                             "sizes": len(group), "p50_us_smallest": lo.time_us_p50, "max_bytes": int(hi.msg_bytes),
                             "algbw_gbps_largest": hi.algbw_gbps, "busbw_gbps_largest": hi.busbw_gbps,
                             "wrong": int(group.wrong.sum())})
        lines += _table(pd.DataFrame(rows), ["file", "collective", "timing", "type", "redop", "placement", "sizes",
                                             "p50_us_smallest", "max_bytes", "algbw_gbps_largest",
                                             "busbw_gbps_largest", "wrong"]) + [""]
    for status in sorted(raw.glob("*.status.csv")) if raw.exists() else []:
        frame = pd.read_csv(status)
        bad = frame[frame.result != "ok"]
        lines += [f"## {status.name}: {len(frame) - len(bad)} of {len(frame)} combinations ok", ""]
        if len(bad):
            lines += _table(bad, ["collective", "timing", "dtype", "op", "placement", "required", "result"]) + [""]
    for path in sorted(raw.glob("compute_*.csv")) if raw.exists() else []:
        frame = pd.read_csv(path)
        lines += [f"## {path.name}: measured on the GPU (compare effective_gbps with the h200 profile's "
                  "memory_bandwidth_gbps, effective_tflops with its peak_tflops x FLOP efficiency)", ""]
        lines += _table(frame, ["phase", "kind", "tokens", "time_ms_per_layer", "stage_ms", "effective_gbps",
                                "effective_tflops", "device"]) + [""]
    measured = sorted(raw.glob("predict_*_measured.csv")) if raw.exists() else []
    for path in measured:
        spec = path.with_name(path.name.replace("_measured.csv", "_h200.csv"))
        if not spec.exists():
            continue
        keys = ["model", "mode", "tp", "pp", "batch", "scenario"]
        both = pd.read_csv(path).merge(pd.read_csv(spec), on=keys, suffixes=("_measured", "_h200"))
        for metric in ("output_tok_s", "ttft_ms", "tpot_ms"):
            both[f"{metric}_ratio"] = both[f"{metric}_measured"] / both[f"{metric}_h200"]
        lines += [f"## predict with the measured compute profile beside --hardware h200 ({path.name})", ""]
        lines += _table(both, keys[:2] + ["batch"] + [f"{m}_{w}" for m in ("output_tok_s", "ttft_ms", "tpot_ms")
                                                      for w in ("measured", "h200", "ratio")]) + [""]
    Path(args.outdir, "summary.md").write_text("\n".join(lines) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="device_check.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env")
    p.add_argument("out")
    p = sub.add_parser("parse")
    p.add_argument("plan")
    p.add_argument("report")
    p = sub.add_parser("matrix")
    p.add_argument("--backend", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-bytes", type=int, default=256 * MiB)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--cuda-buffers", action="store_true", help="gloo: tensors on the GPU")
    p.add_argument("--quick", action="store_true", help="sizes 8 B to 4 KiB only (the CPU dry run)")
    p = sub.add_parser("summary")
    p.add_argument("outdir")
    p.add_argument("work")
    args = parser.parse_args(argv)
    return {"env": cmd_env, "parse": cmd_parse, "matrix": cmd_matrix, "summary": cmd_summary}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
