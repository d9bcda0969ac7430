#!/usr/bin/env bash
# The GPU check of the speed switches (fp32 / bf16 autocast / channels-last / compile) on one GPU, in
# under 5 minutes: loss agreement with fp32 over the first steps, then images/s and peak memory of
# the ResNet-50 224 px AASAE step, against a plain torchvision ResNet-50 step on the same GPU.
#   benchmarks/gpu_check.sh                 # on a GPU: benchmarks/results/gpu_check_<gpu>.json
#   benchmarks/gpu_check.sh --dry-run       # the same code on the CPU, tiny (what CI can run)
# Extra arguments go to benchmarks/gpu_check.py (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [[ " $* " == *" --dry-run "* ]]; then
  out=${GPU_CHECK_JSON:-/tmp/aasae_gpu_check_dry_run.json}
else
  gpu=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else 'none')")
  out=${GPU_CHECK_JSON:-benchmarks/results/gpu_check_${gpu}.json}
fi
exec timeout 600 "$PYTHON" benchmarks/gpu_check.py --json "$out" "$@"
