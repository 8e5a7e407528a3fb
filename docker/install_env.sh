#!/usr/bin/env bash
# The Python environment of SotaiGenerator, in one place: the dev venv (`make venv`) and the GPU serving
# image (docker/triton.Dockerfile) both run this script, so the tests run in the image's environment less
# the GPU wheels (tests/test_gpu_image.py checks that both call it and what each mode installs).
#
#   docker/install_env.sh PYTHON [--gpu] [--dry-run]
#
#   (no flag)   CPU: torch, requirements.lock, the two --no-deps data packages
#   --gpu       then docker/requirements-gpu.txt in place of the lock's onnxruntime (onnxruntime-gpu,
#               TensorRT's Python API)
#   --dry-run   print each pip command, one a line (shell-quoted), and run nothing
#
# PYTHON is the venv's interpreter. The project itself (`pip install --no-deps -e .`) is installed by
# the caller once its sources are there (the image copies them after this layer, for the build cache).
#
# TORCH_INDEX_URL (environment, default empty): an extra index holding the `+cpu` torch build. The image
# sets it to PyTorch's CPU index (an ARG of docker/triton.Dockerfile), because PyPI's torch of the lock's
# version is a CUDA 13 build, GBs that could not run on the image's CUDA 12.6 anyway (the GPU work is
# onnxruntime-gpu's and TensorRT's; the loop's scheduler math is a few small tensors a step). Left empty,
# no extra index is asked: the configured one answers `torch==VERSION`, which on the dev machine is the
# local CPU build, and where that index is unreachable nothing waits on it.
set -euo pipefail
usage="usage: install_env.sh PYTHON [--gpu] [--dry-run]"
PY=${1:?$usage}
shift
GPU=0
DRY=0
for arg in "$@"; do
    case $arg in
        --gpu) GPU=1 ;;
        --dry-run) DRY=1 ;;
        *) echo "install_env.sh: unknown option '$arg'; $usage" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=$ROOT/requirements.lock
# torch's version is the lock's (one pin, not a second copy here).
TORCH_VERSION=$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' "$LOCK")
if [ -z "$TORCH_VERSION" ]; then
    echo "install_env.sh: $LOCK pins no torch==VERSION" >&2
    exit 1
fi

run_pip() {
    local argv=("$PY" -m pip --disable-pip-version-check "$@")
    if [ "$DRY" = 1 ]; then
        printf '%q ' "${argv[@]}"
        echo
    else
        "${argv[@]}"
    fi
}

run_pip install --quiet --upgrade pip
# torch before the lock: installed on its own it takes the CPU build, which then satisfies the lock's
# `torch==VERSION` (a local label such as +cpu matches it); resolved with the rest, an index could hand
# out the CUDA build.
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    run_pip install --quiet --extra-index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION+cpu"
else
    run_pip install --quiet "torch==$TORCH_VERSION"
fi
run_pip install --quiet -r "$LOCK"
# text2tags-lib only carries the embedded tag list; its llama-cpp dependency is not used.
run_pip install --quiet --no-deps text2tags-lib==0.0.7
# open_clip_torch only carries CLIP's BPE merges (sotai.export.snapshots builds the real CLIP tokenizers
# from them); its own dependencies (torchvision, ...) are not used.
run_pip install --quiet --no-deps open_clip_torch==3.3.0
if [ "$GPU" = 1 ]; then
    # onnxruntime-gpu provides the same `onnxruntime` module: the CPU wheel must go first.
    run_pip uninstall --yes --quiet onnxruntime
    run_pip install --quiet --no-deps -r "$ROOT/docker/requirements-gpu.txt"
fi
