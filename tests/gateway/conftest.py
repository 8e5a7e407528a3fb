"""The gateway, in-process: uvicorn in a thread on a free port, in front of the session's Triton."""

from __future__ import annotations

import threading
import time

import httpx
import pytest


class ServerThread:
    """uvicorn.Server in a daemon thread; `stop()` asks it to exit and waits."""

    def __init__(self, app, port: int):
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{port}", daemon=True)

    def start(self, timeout_s: float = 30.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("the gateway thread died during start-up")
            time.sleep(0.05)
        raise RuntimeError(f"the gateway did not start in {timeout_s:.0f} s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


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
