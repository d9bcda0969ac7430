#!/usr/bin/env bash
# The whole GPU table in one run of under 10 minutes on one GPU (H100 / H200):
#   1. throughput.py on pretrain/aasae/imagenet (ResNet-50 pair, 224 px, batch 128, fake JPEGs):
#      step / plain / reference in bf16 and fp32, FLOPs per image, the peak measured in the same run,
#      MFU against it and against the datasheet, step / reference;
#   2. gpu_check.py: the speed switches (fp32 / channels-last / bf16 / compile) agree with fp32 over
#      the first steps, and their images/s, MFU and peak memory;
#   3. throughput.py on the three 32-px models of benchmarks/RESULTS.md (the CIFAR-10 config's
#      ResNet-50, the quickstart's ResNet-18, the study's ResNet-18 x0.25), as far as time allows;
#   4. the MFU table of every result file written (throughput.py --summarize).
# Each part runs only if the time left (GPU_CHECK_SECONDS, default 570; dry run 1100) covers its
# estimate, and is cut at the time left; what was skipped is printed.
#   benchmarks/gpu_check.sh                 # on a GPU: benchmarks/results/gpu_<gpu>_*.json
#   benchmarks/gpu_check.sh --dry-run       # parts 1, 2 and 4 on the CPU, tiny (what CI can run)
# Extra arguments go to benchmarks/gpu_check.py (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [[ " $* " == *" --dry-run "* ]]; then
  BUDGET=${GPU_CHECK_SECONDS:-1100} # two cores: minutes per part
  dry=1
  device=cpu
  gpu=dry_run
  dir=${GPU_CHECK_DIR:-/tmp/aasae_gpu_check_dry_run}
  out=${GPU_CHECK_JSON:-$dir/gpu_check_dry_run.json}
else
  BUDGET=${GPU_CHECK_SECONDS:-570}
  dry=0
  device=cuda
  # the model in the device's name: NVIDIA H100 80GB HBM3 -> h100, NVIDIA H200 -> h200
  gpu=$("$PYTHON" -c "
import re, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
found = re.search(r'\b[A-Z]+[0-9]{2,3}[A-Z]?\b', name)
print((found.group(0) if found else name.split()[-1]).lower())")
  if [[ $gpu == none ]]; then
    echo "error: no CUDA device here; benchmarks/gpu_check.sh --dry-run checks the scripts on the CPU" >&2
    exit 2
  fi
  dir=${GPU_CHECK_DIR:-benchmarks/results}
  out=${GPU_CHECK_JSON:-$dir/gpu_check_${gpu}.json}
fi
mkdir -p "$dir"
written=()
status=0

# run <estimated seconds> <name> <command...>: runs it if the time left covers the estimate
run() {
  local need=$1 name=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if ((left < need)); then
    echo "=== skipped: $name (needs ~${need} s, ${left} s left of ${BUDGET})"
    return 0
  fi
  echo "=== $name (${left} s left)"
  timeout "$left" "$@" || {
    local rc=$?
    echo "=== $name: exit $rc$( ((rc == 124)) && echo ' (cut at the time limit)')"
    status=1
    return 0
  }
}

throughput() {  # throughput <estimate> <json name> <args...>
  local need=$1 json=$dir/gpu_${gpu}_$2.json
  shift 2
  run "$need" "throughput.py $*" "$PYTHON" benchmarks/throughput.py --device "$device" \
    --modes step,plain,reference --json "$json" "$@"
  [[ -f $json ]] && written+=("$json")
  return 0
}

if ((dry)); then
  throughput 0 quickstart_rn18_32px_b2 --config pretrain/aasae/quickstart --batch-size 2 --precision bf16,fp32 \
    --warmup 1 --iterations 1 --workers 0 --peak-seconds 0.1
  run 0 "gpu_check.py" "$PYTHON" benchmarks/gpu_check.py --json "$out" "$@" || true
else
  throughput 150 imagenet_rn50_224px_b128 --config pretrain/aasae/imagenet --fake-data 1536 --batch-size 128 \
    --precision bf16,fp32 --warmup 3 --iterations 8
  run 150 "gpu_check.py" "$PYTHON" benchmarks/gpu_check.py --json "$out" "$@"
  throughput 90 cifar10_rn50_32px_b256 --config pretrain/aasae/cifar10 --fake-data 4096 --batch-size 256 \
    --precision bf16,fp32 --warmup 3 --iterations 8
  throughput 75 quickstart_rn18_32px_b64 --config pretrain/aasae/quickstart --batch-size 64 --precision bf16,fp32 \
    --warmup 3 --iterations 8
  throughput 75 study_rn18w025_32px_b128 --config pretrain/aasae/quickstart --batch-size 128 \
    --precision bf16,fp32 --warmup 3 --iterations 8 +config/pretrain/aasae/models=resnet18_w0.25 \
    config.MODEL.AASAE.LATENT_DIM=64
fi
[[ -f $out ]] || status=1
if ((${#written[@]})); then
  echo "=== MFU (fraction of the peak measured in the same run; datasheet: dense peak) and step / reference"
  "$PYTHON" benchmarks/throughput.py --summarize "${written[@]}"
fi
echo "=== done in ${SECONDS} s; results: ${written[*]} $out"
exit $status
