"""The measured commands as library calls: a checked spec, one call, a table back (as pyperf's
Runner().bench_func() or sqlite-utils' one call per command).

    from commbench.measure import SweepSpec, sweep
    table = sweep(SweepSpec("all_reduce", max_bytes=64 * 2**10, iters=5))   # 2 local gloo ranks
    table[["msg_bytes", "time_us_p50", "busbw_gbps", "wrong"]]

SweepSpec and ReplaySpec are checked once, on construction: one CommbenchError names every bad value
and its valid choices (by the command-line option that sets it: each field is the option of that name). sweep(spec, world=None, on_row=None) and replay(spec, ...) then run where
this process is (commbench.measure.world.run_job: a launcher's world, else the embedded gloo world or
mpiexec), or, given a joined Backend as `world`, on it in this process. They return the table
(attrs: hosts, launcher, ranks) on the reporting rank and None on the others, raise WorldFailed
(the finished rows in .rows) when a run ends early, and never exit the process. `fabric validate`'s
call is commbench.fabric.validate.validate (it judges, which is the fabric layer's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from commbench import CommbenchError, require
from commbench.measure.backends import BACKENDS
from commbench.measure.timing import TARGET_CI, TIMING_MODES

MAX_TIMEOUT_S = 86_400.0
"""Longest timeout (a day): a peer silent that long is gone, and past 2^31 ms (24.8 days) the
transports' 32-bit millisecond timeouts overflow."""
BUFFER_KINDS = ("host", "cuda")
PLACEMENT_CHOICES = ("both", "in_place", "out_of_place")


def _problems(checks) -> list[str]:
    """Run each zero-argument check; the messages of those that raise CommbenchError."""
    found = []
    for check in checks:
        try:
            check()
        except CommbenchError as exc:
            found.append(str(exc))
    return found


def _need(condition: bool, message: str):
    def check():
        if not condition:
            raise CommbenchError(message)
    return check


@dataclass(frozen=True)
class SweepSpec:
    """One nccl-tests-style sweep: what to measure, where, how long (the `commbench sweep` options).

    Sizes run from min_bytes to max_bytes, each `factor` times the last (commbench.measure.sweeps
    .sizes_between); iters None samples adaptively until the p50's 95% CI is within target_ci;
    buffers is the mpi (or launched gloo) backend's buffer kind; timeout_s bounds a silent peer.
    """

    collective: str = "all_reduce"
    min_bytes: int = 8
    max_bytes: int = 4 * 2**20
    factor: float = 2.0
    backend: str = "gloo"
    dtype: str = "float32"
    op: str = "sum"
    placement: str = "both"
    ranks: int = 2
    iters: int | None = None
    warmup: int = 3
    target_ci: float = TARGET_CI
    timing: str = "blocking"
    buffers: str = "host"
    timeout_s: float = 60.0
    sizes: tuple = field(init=False, repr=False, compare=False)
    placements: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        from commbench.measure.sweeps import check_sweep_choices, sizes_between

        found = _problems([
            _need(self.ranks >= 2, f"--ranks {self.ranks} must be >= 2"),
            _need(self.iters is None or self.iters >= 1, f"--iters {self.iters} must be >= 1"),
            _need(self.warmup >= 0, f"--warmup {self.warmup} must be >= 0"),
            _need(0 < self.target_ci < 1, f"--target-ci {self.target_ci:g} must be between 0 and 1 (a fraction of the "
                                          "p50, e.g. 0.03)"),
            _need(0 < self.timeout_s <= MAX_TIMEOUT_S, f"--timeout {self.timeout_s:g} must be a number of seconds "
                                                       f"above 0 and at most {MAX_TIMEOUT_S:,.0f} (a day)"),
            _need(self.timing in TIMING_MODES, f"unknown timing mode {self.timing!r}; valid: {', '.join(TIMING_MODES)}"),
            _need(self.buffers in BUFFER_KINDS, f"unknown --mpi-buffers {self.buffers!r}; valid: {', '.join(BUFFER_KINDS)}"),
            _need(self.placement in PLACEMENT_CHOICES,
                  f"unknown placement {self.placement!r}; valid: {', '.join(PLACEMENT_CHOICES)}"),
            _need(self.buffers != "cuda" or self.backend in ("mpi", "gloo"),
                  f"--mpi-buffers cuda goes with --backend mpi (or gloo under a launcher), not {self.backend}"),
            _need(self.timing != "c-loop" or self.backend == "mpi",
                  f"--timing c-loop is the mpi backend's compiled loop; --backend {self.backend} has none "
                  "(use back-to-back)"),
            _need(self.timing != "c-loop" or self.collective in ("all_reduce", "all_gather", "reduce_scatter"),
                  f"--timing c-loop times all_reduce, all_gather and reduce_scatter, not {self.collective}"),
        ])
        if self.placement in PLACEMENT_CHOICES:
            found += _problems([lambda: object.__setattr__(self, "placements", check_sweep_choices(
                self.collective, self.backend, self.dtype, self.op, self.placement))])
        found += _problems([lambda: object.__setattr__(self, "sizes", tuple(sizes_between(
            self.min_bytes, self.max_bytes, self.factor)))])
        if found:
            raise CommbenchError("; ".join(found))

    @property
    def rows(self) -> int:
        """Rows the sweep reports: one per size and placement."""
        return len(self.sizes) * len(self.placements)

    def options(self) -> dict | None:
        """The backend's own options (buffers for mpi and gloo)."""
        return {"buffers": self.buffers} if self.backend in ("mpi", "gloo") else None

    def job(self):
        """The picklable job every rank runs (commbench.measure.sweeps.sweep_job)."""
        from commbench.measure import sweeps

        return sweeps.sweep_job(self)

    def prepare(self) -> None:
        """What this machine must offer before any rank starts: a CUDA device for cuda buffers, a
        launcher for gloo on them, the c-loop library built (without MPI_Init here), CUDA graphs."""
        from commbench.measure.launcher import detect

        if self.buffers == "cuda":
            if self.backend == "gloo" and detect() is None:  # the embedded world keeps host buffers
                raise CommbenchError("cuda buffers on gloo run under a launcher: torchrun --nproc-per-node 2 -m "
                                     "commbench sweep ... --backend gloo --buffers cuda")
            if not require("torch").cuda.is_available():
                raise CommbenchError("--mpi-buffers cuda needs a CUDA device; use host buffers on CPU")
        if self.timing == "c-loop":
            from commbench.measure.backends.c_loop import build_c_loop

            build_c_loop()
        if self.timing == "cuda-graph":
            from commbench.measure.cuda_graph import check_cuda_graph

            check_cuda_graph(self.backend)


@dataclass(frozen=True)
class ReplaySpec:
    """A trace's calls replayed in engine order (`commbench trace ... --replay`): the trace
    (commbench.traffic.trace.make_trace), the backend, the phases, the buffer type (None: the
    traced one where the backend has it), steps timed and warmed per phase, and the link of the
    wire-time column (commbench.links.parse_link)."""

    trace: object
    backend: str = "gloo"
    phases: tuple = ("prefill", "decode")
    dtype: str | None = None
    iters: int = 3
    warmup: int = 1
    timeout_s: float = 120.0
    link: str = "200gbe"

    def __post_init__(self):
        from commbench.links import parse_link
        from commbench.measure.backends import check_backend, check_datatype

        found = _problems([
            lambda: check_backend(self.backend),
            _need(bool(self.phases) and set(self.phases) <= {"prefill", "decode"},
                  f"unknown phases {self.phases!r}; valid: prefill, decode, both"),
            _need(self.iters >= 1, f"--iters {self.iters} must be >= 1"),
            _need(self.warmup >= 0, f"--warmup {self.warmup} must be >= 0"),
            _need(0 < self.timeout_s <= MAX_TIMEOUT_S, f"--timeout {self.timeout_s:g} must be a number of seconds "
                                                       f"above 0 and at most {MAX_TIMEOUT_S:,.0f} (a day)"),
            lambda: parse_link(self.link),
        ])
        if self.dtype is not None and self.backend in BACKENDS:
            found += _problems([lambda: check_datatype(self.dtype, self.backend)])
        if found:
            raise CommbenchError("; ".join(found))

    @property
    def world_size(self) -> int:
        return self.trace.plan.world_size

    def plan(self):
        """(calls by phase, wire seconds per call) for the replay job (commbench.measure.replays.replay_plan)."""
        from commbench.links import parse_link
        from commbench.measure.replays import replay_plan

        return replay_plan(self.trace, parse_link(self.link), self.phases, self.backend, self.dtype)


def _run(job, backend: str, ranks: int, timeout_s: float, world, on_row, options, how_to_launch: str):
    """A job where this process is (world None) or on a joined backend; the table with its attrs."""
    if world is not None:
        from commbench.measure.join import run_joined

        launcher, ranks = "given backend", world.world_size  # its world, as under a launcher (a replay checks its own)
        frame = run_joined(world, job, on_row, close=False)
        if world.rank != 0:
            return None
    else:
        from commbench.measure.world import run_job

        ran = run_job(job, backend, ranks, timeout_s, on_row, options, how_to_launch)
        if ran is None:
            return None
        frame, launcher, ranks = ran
    frame.attrs.update(launcher=launcher, ranks=ranks)
    return frame


def sweep(spec: SweepSpec, world=None, on_row=None):
    """Run `spec` (see the module docstring); `on_row(row)` sees each row as it finishes (rank 0)."""
    spec.prepare()
    return _run(spec.job(), spec.backend, spec.ranks, spec.timeout_s, world, on_row, spec.options(),
                f"sweep {spec.collective}")


def replay(spec: ReplaySpec, world=None, on_row=None):
    """Replay `spec`'s trace (see the module docstring): per phase and site the measured, isolated and
    wire time (wire_us_per_step_<link>) and the wrong values of every call's check."""
    from commbench.links import parse_link
    from commbench.measure.replays import replay_job

    calls, wire = spec.plan()
    plan = spec.trace.plan
    frame = _run(replay_job(calls, spec.iters, spec.warmup, wire, plan.world_size), spec.backend, plan.world_size,
                 spec.timeout_s, world, on_row, None, f"trace {plan.model.name} --replay")
    if frame is not None:
        renamed = frame.rename(columns={"wire_us_per_step": f"wire_us_per_step_{parse_link(spec.link).name}"})
        renamed.attrs.update(frame.attrs)
        return renamed
    return frame
