"""Fixtures of the reliability tests: a gRPC client and an in-process gateway (API only) in front of
the session's Triton; the fault tests start their own tritonservers."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="session")
def grpc_client(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def api_gateway(triton, test_settings):
    """The gateway without the web page (nothing here needs Gradio), with the cheapest defaults."""
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread
    from sotai.serving.server import free_port

    settings = test_settings.model_copy(update={"default_steps": 1, "default_width": 512, "default_height": 512})
    app = create_app(settings, triton_urls=triton.grpc_url, api_key="", ui=False)
    server = ServerThread(app, free_port()).start()
    yield server
    server.stop()


@pytest.fixture()
def http(api_gateway):
    with httpx.Client(base_url=api_gateway.url, timeout=120) as client:
        yield client
