#!/usr/bin/env bash
# The first thing to run on a GPU box (issue 21): every CUDA path of commbench in one command.
#
#   scripts/device-check.sh [--dry-run] [--keep-going] OUTDIR
#
# Runs from the working tree (PYTHONPATH=the tree, python3 -m commbench; torchrun as
# python3 -m torch.distributed.run): no pip, no network, no venv needed. Steps, in order:
#   1 env        nvidia-smi; python, torch, CUDA, NCCL, CuPy, MPI versions; GPU name and memory
#   2 gpu-tests  pytest -m gpu (the GPU tests, verbose)
#   3 nccl       NCCL at world size 1 under torchrun: all_reduce / all_gather 8 B to 256 MiB, blocking and
#                back-to-back, every datatype and op the backend claims, send_recv_bidir to oneself (a probe)
#   4 graph      --cuda-graph timing (nccl-tests -G) on nccl and cupy
#   5 cupy       CuPy's NCCL at world size 1, the same sizes, every datatype and op it claims
#   6 two-ranks  two ranks on the one GPU: gloo on CUDA tensors (CUDA events, device buffers, the 2-rank
#                check); CUDA-aware MPI where that MPI is (a probe)
#   7 replay     trace gpt-oss-120b --mode tp --batch 128 --replay --backend nccl at world size 1 (a probe:
#                TP=2 needs two ranks, NCCL refuses two on one GPU, so a one-line refusal is the pass)
#   8 compute    commbench compute for gpt-oss-120b and llama-3.1-8b-instruct (tp and pp, tokens per step
#                1 to 8192) saved as hardware profiles; predict with each beside predict --hardware h200
# Output (few files): OUTDIR/summary.md, OUTDIR/plan.tsv (every command, commbench argv), and
# OUTDIR/device-check.tar.gz (logs, env.json, raw tables). Stops at the first broken required step
# (exit 1) having bundled what ran; --keep-going runs every step and exits 1 if any failed. Each step
# has its own timeout and the whole run a budget (DEVICE_CHECK_BUDGET_S, default 345 s).
# --dry-run (CPU, CI): runs the steps that need no CUDA (env, GPU-test collection, predict --hardware
# h200, the sweep matrix helper on gloo), parses every commbench command line with commbench's own
# click commands, and prints what it would run.
set -u -o pipefail

DRY=0 KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1; shift ;;
    --keep-going) KEEP=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "device-check: unknown option $1; valid: --dry-run, --keep-going" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: scripts/device-check.sh [--dry-run] [--keep-going] OUTDIR" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
WORK=$(mktemp -d "$OUT/.device-check.XXXXXX") || exit 2
RAW=$WORK/raw LOGS=$WORK/logs
mkdir -p "$RAW" "$LOGS"
PLAN=$OUT/plan.tsv
printf 'step\tkind\targv\tcommand\n' >"$PLAN"
printf 'step\tkind\tstatus\tseconds\tcommand\n' >"$WORK/steps.tsv"
BUDGET=${DEVICE_CHECK_BUDGET_S:-345}
FAILED=0
TR1="$PY -m torch.distributed.run --standalone --nproc-per-node 1"
TR2="$PY -m torch.distributed.run --standalone --nproc-per-node 2"

finish() {  # summary.md and the bundle, whatever happened; exit with the run's status
  local rc=$1
  trap - EXIT INT TERM
  "$PY" scripts/device_check.py summary "$OUT" "$WORK" >>"$LOGS/summary.log" 2>&1 ||
    { echo "# Device check"; echo; echo "(summary helper failed; see logs/summary.log)"; cat "$WORK/steps.tsv"; } >"$OUT/summary.md"
  tar -czf "$OUT/device-check.tar.gz" -C "$WORK" . && rm -rf "$WORK"
  echo "device-check: $(grep -c . "$PLAN") lines in plan.tsv; summary in $OUT/summary.md; exit $rc"
  exit "$rc"
}
trap 'finish 1' INT TERM
trap 'finish $?' EXIT

# step KIND NAME TIMEOUT_S COMMAND...
#   KIND cuda: needs the GPU (the dry run prints it); cpu: runs in the dry run too; probe: needs the GPU,
#   a failure is recorded and the run goes on. Every command is written to plan.tsv, a commbench one with
#   its argv (after `-m commbench`) for the parse check.
step() {
  local kind=$1 name=$2 limit=$3; shift 3
  local argv="" seen=0 a prev=""
  for a in "$@"; do
    if [ $seen -eq 1 ]; then argv+="${argv:+$'\x1f'}$a"; fi
    if [ "$prev" = "-m" ] && [ "$a" = "commbench" ]; then seen=1; fi
    prev=$a
  done
  printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$argv" "$*" >>"$PLAN"
  if [ $DRY -eq 1 ] && [ "$kind" != cpu ]; then
    echo "would run [$name, $kind, ${limit}s]: $*"
    printf '%s\t%s\tplanned\t0\t%s\n' "$name" "$kind" "$*" >>"$WORK/steps.tsv"
    return 0
  fi
  local left=$((BUDGET - SECONDS))
  if [ $left -lt 10 ]; then
    echo "device-check: out of time before $name" | tee -a "$LOGS/$name.log"
    printf '%s\t%s\tnot run (budget)\t0\t%s\n' "$name" "$kind" "$*" >>"$WORK/steps.tsv"
    FAILED=1
    [ $KEEP -eq 1 ] || exit 1
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== [$name, ${limit}s] $*"
  local t0=$SECONDS rc
  timeout -k 5 "$limit" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
  rc=$?
  tail -q -n 3 "$LOGS/$name.out" "$LOGS/$name.err" 2>/dev/null | sed "s/^/   /"
  local status=ok
  [ $rc -eq 0 ] || status="exit $rc"
  [ $rc -eq 124 ] && status="timed out (${limit}s)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$status" $((SECONDS - t0)) "$*" >>"$WORK/steps.tsv"
  if [ $rc -ne 0 ] && [ "$kind" != probe ]; then
    FAILED=1
    echo "device-check: step $name failed ($status)" >&2
    [ $KEEP -eq 1 ] || exit 1
  fi
  return 0
}

# 1 environment
step cuda env-nvidia-smi 20 nvidia-smi
step cpu env-versions 60 "$PY" scripts/device_check.py env "$WORK/env.json"

# 2 the GPU tests (the dry run collects them)
if [ $DRY -eq 1 ]; then
  step cpu gpu-tests-collect 120 "$PY" -m pytest -m gpu --collect-only -q -p no:cacheprovider tests
  # steps 3-5 and 7 run one rank under torchrun (one GPU: NCCL refuses two ranks on one device); on CPU the
  # same one-rank launch on gloo shows whether commbench accepts a world of one
  step cpu world-of-one 90 $TR1 -m commbench sweep all_reduce -b 8 -e 64 --backend gloo --iters 2
fi
step cuda gpu-tests 150 "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider tests

# 3 NCCL at world size 1
SWEEP="sweep -b 8 -e 256M"
step cuda nccl-all_reduce-blocking 60 $TR1 -m commbench $SWEEP all_reduce --backend nccl --timing blocking --out "$RAW/nccl_all_reduce_blocking.csv"
step cuda nccl-all_gather-back-to-back 60 $TR1 -m commbench $SWEEP all_gather --backend nccl --timing back-to-back --out "$RAW/nccl_all_gather_back-to-back.csv"
step probe nccl-send_recv_bidir-self 40 $TR1 -m commbench sweep send_recv_bidir -b 8 -e 1M --backend nccl --iters 10 --out "$RAW/nccl_send_recv_bidir.csv"
step cuda nccl-matrix 120 $TR1 scripts/device_check.py matrix --backend nccl --out "$RAW/matrix_nccl.csv"

# 4 CUDA-graph timing
step cuda nccl-all_reduce-cuda-graph 60 $TR1 -m commbench $SWEEP all_reduce --backend nccl --cuda-graph --out "$RAW/nccl_all_reduce_cuda-graph.csv"
step cuda cupy-all_reduce-cuda-graph 60 $TR1 -m commbench $SWEEP all_reduce --backend cupy --timing cuda-graph --out "$RAW/cupy_all_reduce_cuda-graph.csv"

# 5 CuPy's NCCL at world size 1
step cuda cupy-all_reduce-blocking 60 $TR1 -m commbench $SWEEP all_reduce --backend cupy -d float16 -o max --out "$RAW/cupy_all_reduce_float16_max.csv"
step cuda cupy-matrix 120 $TR1 scripts/device_check.py matrix --backend cupy --out "$RAW/matrix_cupy.csv"

# 6 two ranks on the one GPU
step cuda gloo-cuda-all_reduce 60 $TR2 -m commbench sweep all_reduce -b 8 -e 64M --backend gloo --buffers cuda --iters 20 --out "$RAW/gloo_cuda_all_reduce.csv"
step probe gloo-cuda-all_gather 60 $TR2 -m commbench sweep all_gather -b 8 -e 16M --backend gloo --buffers cuda --iters 20 --out "$RAW/gloo_cuda_all_gather.csv"
step probe mpi-cuda-all_reduce 60 "$PY" -m commbench sweep all_reduce -b 8 -e 16M --backend mpi --mpi-buffers cuda --iters 10 --out "$RAW/mpi_cuda_all_reduce.csv"

# 7 the replay path at world size 1
step probe replay-nccl-tp 60 $TR1 -m commbench trace gpt-oss-120b --mode tp --batch 128 --replay --backend nccl --out "$RAW/replay_nccl_tp.csv"

# 8 measured compute as hardware profiles, predict with them beside the h200 spec profile
TOKENS=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
for model in gpt-oss-120b llama-3.1-8b-instruct; do
  for mode in tp pp; do
    step cuda "compute-$model-$mode" 60 "$PY" -m commbench compute "$model" --mode "$mode" --device cuda --batch 128 --iters 5 --gemm-tokens "$TOKENS" --out "$RAW/compute_${model}_$mode.csv"
    step cuda "predict-$model-$mode-measured" 30 "$PY" -m commbench predict "$model" --mode "$mode" --batch 1,8,32,128 --hardware "$RAW/compute_${model}_$mode.csv" --out "$RAW/predict_${model}_${mode}_measured.csv"
    step cpu "predict-$model-$mode-h200" 30 "$PY" -m commbench predict "$model" --mode "$mode" --batch 1,8,32,128 --hardware h200 --out "$RAW/predict_${model}_${mode}_h200.csv"
  done
done

if [ $DRY -eq 1 ]; then  # the CPU stand-ins: the sweep matrix helper on gloo, then every command line parsed
  step cpu matrix-gloo-quick 180 $TR2 scripts/device_check.py matrix --backend gloo --quick --iters 3 --warmup 1 --out "$RAW/matrix_gloo.csv"
  step cpu parse-plan 60 "$PY" scripts/device_check.py parse "$PLAN" "$WORK/parsed.tsv"
fi
exit $FAILED
