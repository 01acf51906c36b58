#!/usr/bin/env bash
# One RunPod pod with 1-8 GPUs: install cosmos-cli, download the checkpoints once to the network volume,
# then generate a JSONL batch on every GPU of the pod (torchrun, tensor + data parallel).
#
#   HF_TOKEN=hf_... bash scripts/runpod_generate.sh prompts.jsonl [/workspace/outputs]
#
# Optional environment: COSMOS_CHECKPOINT_DIR (/workspace/checkpoints), GPUS (all visible), TP
# (tensor-parallel size; default chosen from the number of samples), EXTRA_ARGS (more generate options).
set -euo pipefail

BATCH=${1:?usage: runpod_generate.sh BATCH.jsonl [OUTPUT_DIR]}
OUT=${2:-/workspace/outputs}
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export COSMOS_CHECKPOINT_DIR=${COSMOS_CHECKPOINT_DIR:-/workspace/checkpoints}
export NCCL_NVLS_ENABLE=0  # no NVLink multicast (cosmos-cli sets it too)
GPUS=${GPUS:-$(nvidia-smi --list-gpus | wc -l)}

cd "$REPO_DIR"
python -m pip install --quiet -e '.[guardrail]'  # keeps the pod's CUDA torch
cosmos-cli download
cosmos-cli doctor

tp_args=()
if [[ -n "${TP:-}" ]]; then tp_args=(--tp "$TP"); fi
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of options
cosmos-cli generate --batch-input "$BATCH" --output-dir "$OUT" --gpus "$GPUS" "${tp_args[@]}" ${EXTRA_ARGS:-}
