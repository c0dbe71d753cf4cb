"""Backends, one file each behind one protocol (see torch_dist.TorchBackend): gloo and NCCL through
torch.distributed, mpi4py, CuPy's NCCL. commbench.world.make_backend builds one by name."""

from commbench import CommbenchError

BACKENDS = ("gloo", "mpi", "nccl", "cupy")
GPU_BACKENDS = ("nccl", "cupy")


def check_backend(name: str) -> None:
    """Raise a one-line error naming a bad backend and the valid choices."""
    if name not in BACKENDS:
        raise CommbenchError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
