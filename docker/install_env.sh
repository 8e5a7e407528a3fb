#!/usr/bin/env bash
# The Python environment of SotaiGenerator, in one place: the CPU dev venv (`make venv`) and the GPU
# serving image (docker/triton.Dockerfile) are built by this same script, so the tests run in the image's
# environment less the GPU wheels.
#
#   docker/install_env.sh PYTHON            # CPU: requirements.lock
#   docker/install_env.sh PYTHON --gpu      # + docker/requirements-gpu.txt (onnxruntime-gpu, TensorRT API)
#
# PYTHON is the venv's interpreter. The project itself (`pip install --no-deps -e .`) is installed by
# the caller once its sources are there (the image copies them after this layer, for the build cache).
set -euo pipefail
PY=${1:?usage: install_env.sh PYTHON [--gpu]}
GPU=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIP=("$PY" -m pip --disable-pip-version-check)

"${PIP[@]}" install --quiet --upgrade pip
# torch first, the CPU build (PyTorch's CPU index; on the dev machine the same wheel comes from its
# local wheel folder): PyPI's torch 2.13 is a CUDA 13 build, GBs that could not run on a CUDA 12.6 host
# anyway. The GPU work is done by onnxruntime-gpu and TensorRT; the denoising loop's scheduler math is
# a few small tensors per step (sotai.diffusion.device).
"${PIP[@]}" install --quiet --extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" "torch==2.13.0+cpu"
"${PIP[@]}" install --quiet -r "$ROOT/requirements.lock"
# text2tags-lib only carries the embedded tag list; its llama-cpp dependency is not used.
"${PIP[@]}" install --quiet --no-deps text2tags-lib==0.0.7
if [ "$GPU" = "--gpu" ]; then
    # onnxruntime-gpu provides the same `onnxruntime` module: the CPU wheel must go first.
    "${PIP[@]}" uninstall --yes --quiet onnxruntime
    "${PIP[@]}" install --quiet --no-deps -r "$ROOT/docker/requirements-gpu.txt"
fi
