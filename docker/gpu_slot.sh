#!/usr/bin/env bash
# Runs a command on a GPU of its own: each Triton container of docker-compose.yml (`triton` and every
# `triton-replica`) sees all of the host's GPUs and takes the first free slot, so on a multi-GPU host
# the replicas spread over the GPUs instead of all landing on GPU 0 (compose's `count: 1` reserves
# the same first GPU for each). Slot i means GPU i mod N: with more replicas than GPUs they share
# evenly. A slot is an flock on a file in a volume the containers share; the lock lives as long as
# the command (the exec'd process keeps the descriptor), so a restarted container takes a free slot.
#
#   gpu_slot.sh COMMAND...            env: SOTAI_GPU_SLOTS_DIR (default /run/sotai-gpus),
#                                          SOTAI_GPU_COUNT (default: `nvidia-smi -L`, else 1)
set -euo pipefail
SLOTS=${SOTAI_GPU_SLOTS_DIR:-/run/sotai-gpus}
COUNT=${SOTAI_GPU_COUNT:-$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU ' || true)}
[ "${COUNT:-0}" -ge 1 ] || COUNT=1
mkdir -p "$SLOTS"
slot=0
while :; do
    exec 9>>"$SLOTS/slot-$slot.lock"
    if flock -n 9; then
        break
    fi
    exec 9>&-
    slot=$((slot + 1))
done
gpu=$((slot % COUNT))
echo "[gpu-slot] slot $slot of $COUNT GPU(s): CUDA_VISIBLE_DEVICES=$gpu" >&2
export CUDA_VISIBLE_DEVICES=$gpu
exec "$@"
