"""CUDA-graph timing (`sweep --timing cuda-graph`, nccl-tests' `-G`): capture CALLS_PER_GRAPH calls of
one collective into a CUDA graph once, replay the graph, time each replay with CUDA events.

    sample_s = elapsed(replay) / CALLS_PER_GRAPH        (seconds per call, one sample per replay)

A graph launches its CALLS_PER_GRAPH kernels with one host call, so the per-call host cost
(Python, the library's enqueue) leaves the timed region and what is left is the device's time per
call: the figure vLLM's decode steps see, since they run their all-reduces inside CUDA graphs.

Backends that capture: nccl (torch.distributed's ProcessGroupNCCL, captured with
torch.cuda.graph after a warm-up on a side stream, as torch's CUDA-graph notes ask) and cupy (the
backend's own stream, Stream.begin_capture / end_capture, Graph.launch). Every other backend, and
any machine without a CUDA device, is refused in one line before a rank starts (check_cuda_graph).
The graph is captured once per timed op (per size and placement) and kept on the op, so the
adaptive loop's later blocks replay the same graph.
"""

from __future__ import annotations

import numpy as np

from commbench import CommbenchError

CALLS_PER_GRAPH = 20
"""Calls captured in one graph: nccl-tests' default iteration count (-n 20), each replay runs them all."""
GRAPH_BACKENDS = ("nccl", "cupy")
CAPTURE_WARMUP = 3
"""Eager calls on the capture stream before capturing (lazy library state must exist before capture)."""


def _cuda_present() -> bool:
    """Whether this machine has a CUDA device, asked of torch, else of CuPy; False if neither is installed."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        pass
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a driver
        return False


def check_cuda_graph(backend: str, cuda_present=None) -> None:
    """One-line refusal of --timing cuda-graph where it cannot run: a host backend, or no CUDA device."""
    if backend not in GRAPH_BACKENDS:
        raise CommbenchError(f"--timing cuda-graph captures NCCL calls in a CUDA graph: --backend "
                             f"{' or '.join(GRAPH_BACKENDS)}, not {backend} (use blocking or back-to-back)")
    if not (_cuda_present() if cuda_present is None else cuda_present):
        raise CommbenchError("--timing cuda-graph needs a CUDA device; this machine has none "
                             "(on CPU use --timing blocking or back-to-back)")


def _capture_torch(op, calls: int):
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(CAPTURE_WARMUP):
            op()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            op()
    return graph.replay


def _capture_cupy(op, backend, calls: int):
    stream = backend.stream
    for _ in range(CAPTURE_WARMUP):
        op()
    stream.synchronize()
    stream.begin_capture()
    try:
        for _ in range(calls):
            op()
    finally:
        graph = stream.end_capture()
    return lambda: graph.launch(stream)


def replay_of(op, backend, calls: int = CALLS_PER_GRAPH):
    """The zero-argument replay of `calls` captured calls of `op`, captured on first use and kept on the op."""
    replay = getattr(op, "graph_replay", None)
    if replay is None:
        check_cuda_graph(backend.name)
        replay = _capture_cupy(op, backend, calls) if backend.name == "cupy" else _capture_torch(op, calls)
        op.graph_replay, op.calls_per_sample = replay, calls  # calls_per_sample: the adaptive loop's time budget
    return replay


def time_replays(op, backend, iters: int, warmup: int = 1, calls: int = CALLS_PER_GRAPH) -> np.ndarray:
    """`iters` samples, each one timed replay of the captured graph divided by `calls`; max over ranks."""
    replay = replay_of(op, backend, calls)
    for _ in range(warmup):
        replay()
    backend.synchronize()
    marks = [(backend.new_event(), backend.new_event()) for _ in range(iters)]
    for start, end in marks:
        backend.barrier()
        start.record()
        replay()
        end.record()
    backend.synchronize()
    return backend.max_over_ranks(np.array([backend.elapsed_s(s, e) / calls for s, e in marks]))
