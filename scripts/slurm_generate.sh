#!/usr/bin/env bash
# Multi-node generation on Slurm: one cosmos-cli per node (it becomes that node's torchrun agent with
# GPUS_PER_NODE workers); the JSONL batch is split over the data-parallel groups of all nodes.
#
#   sbatch --nodes 2 scripts/slurm_generate.sh prompts.jsonl /shared/outputs
#   TP=8 GPUS_PER_NODE=8 sbatch --nodes 4 scripts/slurm_generate.sh prompts.jsonl /shared/outputs
#
# OUTPUT_DIR, the batch file, its clips and COSMOS_CHECKPOINT_DIR must be on a filesystem every node sees:
# each data-parallel group writes its own samples there. Optional environment: TP (tensor-parallel size;
# default chosen from the number of samples), RDZV_PORT (29500), EXTRA_ARGS (more generate options).
#
#SBATCH --job-name=cosmos-generate
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=02:00:00
#SBATCH --output=%x-%j.log
set -euo pipefail

BATCH=${1:?usage: sbatch scripts/slurm_generate.sh BATCH.jsonl OUTPUT_DIR}
OUT=${2:?usage: sbatch scripts/slurm_generate.sh BATCH.jsonl OUTPUT_DIR}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
RDZV_ENDPOINT="$HEAD:${RDZV_PORT:-29500}"
TP=${TP:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
export BATCH OUT GPUS_PER_NODE RDZV_ENDPOINT TP EXTRA_ARGS
export NCCL_NVLS_ENABLE=0  # no NVLink multicast (cosmos-cli sets it too)

# One task per node; each runs the same command with its own --node-rank (SLURM_NODEID).
# shellcheck disable=SC2016  # expanded by the per-node shell, where SLURM_NODEID is set
srun --kill-on-bad-exit=1 bash -c 'exec cosmos-cli generate \
  --batch-input "$BATCH" --output-dir "$OUT" \
  --gpus "$GPUS_PER_NODE" --nnodes "$SLURM_JOB_NUM_NODES" --node-rank "$SLURM_NODEID" \
  --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-backend c10d \
  ${TP:+--tp "$TP"} $EXTRA_ARGS'
