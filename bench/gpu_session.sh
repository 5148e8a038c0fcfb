#!/usr/bin/env bash
# The one command run on a lent GPU machine (see BENCHMARKS.md): the dataset and the synthetic
# training images travel in .gpu/ (git-ignored); results come back in $OUT.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 CHNMNIST_CACHE=/tmp/chnmnist-cache HF_HUB_OFFLINE=1
OUT="${OUT:-/tmp/gpu-out}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm, huggingface_hub, safetensors; print('torch', torch.__version__, 'timm', timm.__version__, 'hub', huggingface_hub.__version__)"
# Canonicalize the dataset (and synthetic images) once, before CUDA starts: every run reuses it.
python3 - <<'PY'
import os, numpy as np, chnmnist_hub as ch
from chnmnist_hub import preprocess as P
P.canonicalize_dataset(ch.load_dataset(".gpu/chinese-mnist.zip").images)
if os.path.exists(".gpu/synth_train.npz"):
    P.canonicalize_dataset(np.load(".gpu/synth_train.npz")["images"])
print("canonical cache ready")
PY
extra=()
[ -f .gpu/synth_train.npz ] && extra=(--extra-train .gpu/synth_train.npz)
timeout "${GPU_TIMEOUT:-300}" python3 bench/gpu.py --data .gpu/chinese-mnist.zip --out /tmp/gpu-runs "${extra[@]}" \
  --budget "${GPU_BUDGET:-240}" "$@" 2>&1 | tee /tmp/gpu_log.txt
python3 bench/gpu.py --out /tmp/gpu-runs --pack-to "$OUT"
cp /tmp/gpu_log.txt "$OUT/gpu_log.txt"
ls -la "$OUT"
