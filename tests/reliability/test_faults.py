"""Faults: Triton killed and restarted under a running gateway; start-up with broken model files.

Each test starts its own tritonserver (own ports, and for start-up faults a linked copy of the tiny
repository with one file broken), never the session's.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sotai.errors import MissingArtifact
from sotai.serving.server import TritonServer, TritonStartupError, free_port

from .repo_copy import link_copy, replace_with

SCENE = "夜の桜の下の少女"


def own_server(repository: Path, work: Path, ports: dict | None = None) -> TritonServer:
    ports = ports or {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    return TritonServer(repository, **ports, work_dir=work / "_triton", log_file=work / "tritonserver.log")


# -- Triton killed and restarted while the gateway runs ----------------------------------------


def test_gateway_answers_503_while_triton_is_down_and_recovers_by_itself(tiny_repository, test_settings, tmp_path):
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread

    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    first = own_server(tiny_repository, tmp_path, ports).start()
    second = own_server(tiny_repository, tmp_path, ports)
    settings = test_settings.model_copy(update={"default_steps": 1, "default_width": 512, "default_height": 512})
    gateway = ServerThread(create_app(settings, triton_urls=first.grpc_url, api_key="", ui=False), free_port()).start()
    try:
        with httpx.Client(base_url=gateway.url, timeout=120) as http:
            assert http.post("/v1/tags", json={"text": SCENE, "seed": 1}).status_code == 200

            # A request in the middle of painting when Triton dies: 503, not a hang or a 500.
            in_flight: dict = {}
            request = threading.Thread(target=lambda: in_flight.setdefault("response", http.post(
                "/sdapi/v1/txt2img", json={"prompt": "1girl, night", "steps": 100, "seed": 1})))
            request.start()
            deadline = time.monotonic() + 60
            while http.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 2:
                assert time.monotonic() < deadline and request.is_alive(), "painting never started"
                time.sleep(0.05)
            os.killpg(first.process.pid, signal.SIGKILL)  # the server and its Python stubs
            first.process.wait()
            request.join(60)
            assert_unavailable(in_flight["response"])

            # Down: every endpoint that needs Triton says 503 + Retry-After; the process itself is fine.
            for path, body in (("/v1/tags", {"text": SCENE}), ("/v1/images", {"text": SCENE}),
                               ("/sdapi/v1/txt2img", {"prompt": "1girl"})):
                assert_unavailable(http.post(path, json=body))
            assert_stream_unavailable(http.post("/v1/images/stream", json={"text": SCENE}))
            assert_unavailable(http.get("/readyz"))
            assert http.get("/healthz").status_code == 200
            time.sleep(3)  # long enough for gRPC's reconnect backoff to grow

            # Restarted on the same ports: 503 while it loads, then answers without touching the gateway.
            restart = threading.Thread(target=second.start)
            restart.start()
            statuses = []
            while restart.is_alive():
                response = http.post("/v1/tags", json={"text": SCENE, "seed": 1})
                statuses.append(response.status_code)
                if response.status_code != 200:
                    assert_unavailable(response)
                time.sleep(0.2)
            ready_at = time.monotonic()
            while (status := http.post("/v1/tags", json={"text": SCENE, "seed": 1}).status_code) != 200:
                assert status == 503 and time.monotonic() - ready_at < 10, f"no recovery: {status}"
                time.sleep(0.2)
            assert 503 in statuses
            images = http.post("/v1/images", json={"text": SCENE, "seed": 3})
            assert images.status_code == 200 and len(images.json()["images"]) == 1
            assert http.get("/readyz").status_code == 200
    finally:
        gateway.stop()
        first.stop()
        second.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    if not response.request.url.path.endswith("readyz"):
        assert "make serve" in response.json()["detail"]


def assert_stream_unavailable(response: httpx.Response) -> None:
    """The SSE stream has opened (200) before Triton is asked: its one event is an `error` with status 503."""
    assert response.status_code == 200, response.text
    events = [block for block in response.text.replace("\r\n", "\n").split("\n\n") if block.strip()
              and not block.startswith(":")]
    assert len(events) == 1, events
    lines = dict(line.split(": ", 1) for line in events[0].splitlines() if ": " in line)
    assert lines["event"] == "error", events
    error = json.loads(lines["data"])
    assert error["status"] == 503 and "make serve" in error["detail"], error


# -- start-up with broken files -------------------------------------------------------------------


def _drop(path: str):
    return lambda repo: (repo / path).unlink()


def _corrupt_onnx(repo: Path) -> None:
    replace_with(repo / "unet" / "1" / "model.onnx", b"\x08\x07this is not an ONNX graph" * 100)


def _mismatched_index(repo: Path) -> None:
    manifest_path = repo / "rag" / "1" / "index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["dim"] = manifest["dim"] // 2  # the vectors stay as they are
    replace_with(manifest_path, json.dumps(manifest).encode())


def _truncated_ids(repo: Path) -> None:
    ids_path = repo / "rag" / "1" / "index" / "tags.ids.npy"
    ids = np.load(ids_path, allow_pickle=False)
    ids_path.unlink()
    np.save(ids_path, ids[: len(ids) // 2], allow_pickle=False)


# (what breaks, model that fails, words the message must hold: the file, the reason, the fix)
BREAKAGES = {
    "missing-dart-model": (_drop("dart/1/model.onnx"), "dart",
                           ["dart/1/model.onnx", "run `make export`"]),
    "corrupt-unet-onnx": (_corrupt_onnx, "unet",
                          ["unet/1/model.onnx", "cannot be loaded", "run `make export`"]),
    "missing-index": (_drop("rag/1/index/manifest.json"), "rag",
                      ["rag/1/index", "no manifest.json", "run `make export`"]),
    "mismatched-index": (_mismatched_index, "rag",
                         ["rag/1/index", "manifest says", "run `make export`"]),
    "index-ids-disagree": (_truncated_ids, "rag",
                           ["rag/1/index", "ids for", "run `make export`"]),
}


@pytest.fixture(scope="module")
def startup_failures(tiny_repository, tmp_path_factory) -> dict[str, TritonStartupError | None]:
    """Start one broken copy per breakage, two at a time (each start-up loads every model)."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(name: str) -> TritonStartupError | None:
        work = tmp_path_factory.mktemp(name)
        repo = link_copy(tiny_repository, work / "repository")
        BREAKAGES[name][0](repo)
        server = own_server(repo, work)
        try:
            server.start(timeout_s=180)
        except TritonStartupError as exc:
            return exc
        finally:
            server.stop()
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(BREAKAGES, pool.map(attempt, BREAKAGES)))


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_startup_fails_with_one_message_naming_the_file_and_the_fix(startup_failures, name):
    error = startup_failures[name]
    assert error is not None, f"tritonserver started although {name}"
    _, model, words = BREAKAGES[name]
    message = str(error)
    assert list(error.failures) == [model], message
    assert "\n" not in message and message.startswith("tritonserver could not load its models: ")
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_a_missing_repository_names_the_export_command(tmp_path):
    with pytest.raises(MissingArtifact) as error:
        own_server(tmp_path / "nothing-here", tmp_path).start()
    assert "run `make export`" in str(error.value)


def test_make_export_redoes_a_step_whose_files_were_broken(tmp_path):
    """The fix the start-up errors name must work: a stamp alone does not make a step "up to date"."""
    from sotai.export.build import _cached

    builds = []

    def build():
        builds.append(1)
        (tmp_path / "step" / "model.onnx").write_bytes(b"x" * 100)
        (tmp_path / "out" / "1").mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / "1" / "model.onnx").write_bytes(b"y" * 50)

    run = lambda: _cached(tmp_path / "step", "key-1", build, "test step", outputs=(tmp_path / "out" / "1",))  # noqa: E731
    run()
    run()
    assert len(builds) == 1, "an intact step is reused"
    (tmp_path / "step" / "model.onnx").write_bytes(b"corrupt")
    run()
    assert len(builds) == 2, "a replaced file redoes the step"
    (tmp_path / "out" / "1" / "model.onnx").unlink()
    run()
    assert len(builds) == 3, "a file the step wrote elsewhere counts too"
    run()
    assert len(builds) == 3


def test_a_failure_that_is_no_models_fault_quotes_the_servers_own_error():
    from sotai.serving.server import startup_message

    log = ['I1125 11:48:12.6 1 server.cc:674] "successfully loaded \'rag\'"\n',
           'E1125 11:48:12.6 1 server.cc:241] "CudaDriverHelper has not been initialized."\n',
           'E1125 11:49:01.1 1 http_server.cc:4866] "failed to start HTTP service: Address already in use"\n',
           'error: creating server: Unavailable - failed to start HTTP service\n']
    error = startup_message(1, log, Path("/tmp/x.log"))
    message = str(error)
    assert message.startswith("tritonserver exited with code 1 during start-up: ")
    assert "Address already in use" in message and "CudaDriverHelper" not in message
    assert error.failures == {} and "(full log: /tmp/x.log)" in message
