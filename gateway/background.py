"""The gateway served by uvicorn in a background thread (tests, `sotai bench triton`)."""

from __future__ import annotations

import threading
import time


class ServerThread:
    """`ServerThread(app, port).start()` ... `.stop()`: uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app, port: int, host: str = "127.0.0.1"):
        import uvicorn

        self.port = port
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
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
