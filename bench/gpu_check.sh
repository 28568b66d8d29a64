#!/usr/bin/env bash
# Everything a GPU session needs to verify the CUDA kernels, in one call of at most 8 minutes:
#   1. builds lsmia_ext._C in place with the CUDA kernels for the local GPU, unless the importable
#      build already has them (at most 180 s);
#   2. every test marked `cuda` (python_tests/test_cuda_kernels.py and the cuda rows of the other
#      kernel tests: NaN rows, device-side label asserts, CUDA-graph capture, agreement with the CPU
#      kernels) (at most 90 s);
#   3. the GPU rows of both benchmarks, one quick round each, written next to the CPU tables
#      (bench/results_*_gpu.md) (at most 60 s);
#   4. the study's GPU path: the digits study (quick preset) on one Dask worker that advertises the GPU,
#      its training and attack stages scheduled with {GPU: 1} and run on CUDA (at most 150 s).
# Usage: bench/gpu_check.sh        (PYTHON=... to choose the interpreter; default python3)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
status=0
if ! PYTHONPATH=. "$PY" -c "import sys, torch, lsmia_ext; sys.exit(not (torch.cuda.is_available() and lsmia_ext.cuda_kernels_built()))" 2>/dev/null; then
  echo "== building the CUDA kernels for this GPU"
  CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    timeout 180 "$PY" setup.py build_ext --inplace > /tmp/lsmia_gpu_build.log 2>&1 \
    || { tail -30 /tmp/lsmia_gpu_build.log; echo "build failed"; exit 1; }
fi
echo "== CUDA tests"
(cd python_tests && PYTHONPATH=.. timeout 90 "$PY" -m pytest -q -m cuda -p no:cacheprovider .) || status=1
echo "== GPU benchmark rows"
PYTHONPATH=. timeout 45 "$PY" -m bench.bench_ls_ce --devices cuda --quick --out bench/results_ls_ce_gpu.md || status=1
PYTHONPATH=. timeout 15 "$PY" -m bench.bench_latent_adam --devices cuda --quick --out bench/results_latent_adam_gpu.md || status=1
echo "== a study on a GPU worker"
out=$(mktemp -d)
PYTHONPATH=. timeout 150 "$PY" -m lsmia_ext.cli experiment --config experiment-digits --preset quick --workers 1 \
  --out "$out/study" > /tmp/lsmia_gpu_study.log 2>&1 \
  && PYTHONPATH=. "$PY" - "$out/study" <<'PY' || { tail -20 /tmp/lsmia_gpu_study.log; status=1; }
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
results = json.loads((out / "results.json").read_text())
workers = {t.get("worker") for k, t in results["timings"]["stages"].items() if k.startswith(("target:", "attack:"))}
# a stage needing {GPU: 1} only runs on a worker advertising it: finishing at all shows the resource path
print(f"{len(results['rows'])} rows; training and attack stages ran on {sorted(workers)}")
sys.exit(0 if results["rows"] and workers and None not in workers else 1)
PY
rm -rf "$out"
exit $status
