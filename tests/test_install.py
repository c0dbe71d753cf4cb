"""scripts/install.sh picks CuPy's wheel for the driver's CUDA major version (issue 11)."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "install.sh"


@pytest.mark.parametrize("cuda, extra", [("12.8", ",gpu-cuda12"), ("13.0", ",gpu-cuda13"), (None, "")])
def test_gpu_extra_follows_nvidia_smi(tmp_path, cuda, extra):
    path = os.environ["PATH"]
    if cuda is not None:  # a stand-in nvidia-smi printing the header line the real one prints
        fake = tmp_path / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\necho '| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: {cuda}     |'\n")
        fake.chmod(0o755)
        path = f"{tmp_path}:{path}"
    else:
        path = ":".join(p for p in path.split(":") if not (Path(p) / "nvidia-smi").exists())
    done = subprocess.run(["bash", str(SCRIPT), "--print-gpu-extra"], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == extra
