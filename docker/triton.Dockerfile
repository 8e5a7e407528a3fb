# Triton for GPU hosts: NGC tritonserver 24.10 (= Triton 2.51, the server nvidia-pytriton 0.7.0 embeds;
# CUDA 12.6, cuDNN 9.5, TensorRT 10.5.0) with its onnxruntime and TensorRT backends, plus what our
# Python-backend models (rag, dart, diffusion) import. Used by docker-compose.yml for `triton`,
# `triton-replica` and the one-shot `export` (which builds the TensorRT engines with this image's TensorRT).
FROM nvcr.io/nvidia/tritonserver:24.10-py3

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The project runs on Python 3.11 (the image's own is 3.10); the Python backend's stub must match it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev libpython3.11 curl \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/sotai/venv
ENV PATH=/opt/sotai/venv/bin:$PATH
WORKDIR /app
# The same script builds the dev venv (`make venv`); --gpu adds docker/requirements-gpu.txt
# (onnxruntime-gpu for CUDA 12, TensorRT 10.5's Python API). TORCH_INDEX_URL gives it the `+cpu` torch:
# PyPI's torch of the lock's version is a CUDA 13 build, GBs this CUDA 12.6 image could not use.
# A build arg, so a mirror can stand in for PyTorch's index (`--build-arg TORCH_INDEX_URL=...`).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.lock ./
COPY docker/install_env.sh docker/requirements-gpu.txt docker/
RUN python3.11 -m venv $VIRTUAL_ENV && bash docker/install_env.sh $VIRTUAL_ENV/bin/python --gpu
# Fail the build, not the first request: onnxruntime has its CUDA provider (no GPU needed to list it),
# and TensorRT's Python API loads against the image's own TensorRT (libnvinfer, libnvonnxparser 10).
RUN python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()" \
    && python -c "import tensorrt_bindings as t; assert t.__version__ == '10.5.0', t.__version__"

COPY pyproject.toml README.md ./
COPY sotai/ sotai/
COPY client/ client/
COPY gateway/ gateway/
COPY export/ export/
COPY model_repository/ model_repository/
COPY docker/gpu_slot.sh /usr/local/bin/sotai-gpu-slot
# The stub is linked, not copied, into Triton's Python backend: through the link its
# RPATH ($ORIGIN/../../../../nvidia_pytriton.libs) resolves inside the venv (sotai.serving.server).
RUN pip install --no-deps -e . \
    && python -m sotai.serving.server install-stub /opt/tritonserver/backends/python

# The stub embeds Python 3.11: it finds the venv's packages and the project through PYTHONPATH.
ENV PYTHONPATH=/app:/opt/sotai/venv/lib/python3.11/site-packages \
    SOTAI_MODELS_DIR=/app/models HF_HOME=/app/models/hf-cache
