# The gateway: HTTP API, A1111-compatible API and web page in front of Triton (docker-compose.yml: `gateway`).
# It needs no model libraries: only sotai.client, FastAPI and Gradio, pinned by requirements.lock.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False
WORKDIR /app

COPY requirements.lock ./
# -c: every package, transitive ones too, at the version the whole project was tested with.
RUN pip install -c requirements.lock \
        fastapi uvicorn gradio "tritonclient[grpc,http]" aiohttp python-rapidjson sse-starlette \
        pydantic pydantic-settings pillow numpy httpx

COPY pyproject.toml README.md ./
COPY sotai/ sotai/
COPY client/ client/
COPY gateway/ gateway/
COPY export/ export/
RUN pip install --no-deps . && useradd --uid 10001 --no-create-home sotai

USER 10001
# In the container the gateway listens on all interfaces; compose publishes it on 127.0.0.1 only.
ENV SOTAI_HOST=0.0.0.0 SOTAI_GATEWAY_PORT=7860 SOTAI_TRITON_URL=triton:8001
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=2)"]
CMD ["python", "-m", "sotai.gateway"]
