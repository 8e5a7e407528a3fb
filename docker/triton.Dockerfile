# Triton for GPU hosts: NGC tritonserver 24.10 (= Triton 2.51, the server nvidia-pytriton 0.7.0 embeds)
# with its onnxruntime and TensorRT backends, plus what our Python-backend models (rag, dart,
# diffusion) import. Used by docker-compose.yml for `triton`, `triton-replica` and the one-shot `export`.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The project runs on Python 3.11 (the image's own is 3.10); the Python backend's stub must match it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev libpython3.11 curl \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/sotai/venv
ENV PATH=/opt/sotai/venv/bin:$PATH
WORKDIR /app
COPY requirements.lock ./
# torch from PyPI is the CUDA build on Linux x86_64; onnxruntime-gpu replaces the CPU wheel for Dart.
RUN python3.11 -m venv $VIRTUAL_ENV \
    && pip install torch==2.13.0 \
    && pip install -r requirements.lock \
    && pip install --no-deps text2tags-lib==0.0.7 \
    && pip uninstall -y onnxruntime \
    && pip install "onnxruntime-gpu==$(grep -E '^onnxruntime==' requirements.lock | cut -d= -f3)"

COPY pyproject.toml README.md ./
COPY sotai/ sotai/
COPY client/ client/
COPY gateway/ gateway/
COPY export/ export/
COPY model_repository/ model_repository/
RUN pip install --no-deps -e . \
    && cp "$VIRTUAL_ENV/lib/python3.11/site-packages/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
          /opt/tritonserver/backends/python/triton_python_backend_stub

# The stub embeds Python 3.11: it finds the venv's packages and the project through PYTHONPATH.
ENV PYTHONPATH=/app:/opt/sotai/venv/lib/python3.11/site-packages \
    SOTAI_MODELS_DIR=/app/models HF_HOME=/app/models/hf-cache
