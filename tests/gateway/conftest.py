"""The gateway, in-process: uvicorn in a thread on a free port, in front of the session's Triton."""

from __future__ import annotations

import httpx
import pytest

from sotai.gateway.background import ServerThread


@pytest.fixture(scope="session")
def gateway_settings(test_settings):
    # Small defaults keep the browser test (which paints with the page's defaults) fast on CPU.
    return test_settings.model_copy(update={"default_steps": 2, "default_width": 512, "default_height": 512})


@pytest.fixture(scope="session")
def gateway(triton, gateway_settings):
    from sotai.gateway import create_app
    from sotai.serving.server import free_port

    app = create_app(gateway_settings, triton_urls=triton.grpc_url, api_key="")
    server = ServerThread(app, free_port()).start()
    yield server
    server.stop()


@pytest.fixture()
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client
