"""Overload and cancellation: bounded queues refuse at once; every way of stopping a job stops its
denoising loop within one step and frees its slot.

One tritonserver of its own (a linked copy of the tiny repository with queues of 2) and a gateway
allowing 1 job per replica. "Within one step" is measured with Triton's own statistics: the UNet runs
once per denoising step (the CFG pair is one batch), so its success count is the loop's step counter,
and the VAE decoder's count says whether an image was decoded.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from sotai.contracts import PIPELINE_CONTRACTS
from sotai.serving.server import TritonServer, free_port

from .repo_copy import link_copy

QUEUE = 2
LONG = 100  # steps of a job that is stopped long before its end (about 12 s of painting on 2 cores)
PROMPT = "1girl, silver hair, night"


@pytest.fixture(scope="module")
def small_queues(tiny_repository, tmp_path_factory):
    """Triton on a copy of the tiny repository whose queueing models hold at most QUEUE waiting requests."""
    work = tmp_path_factory.mktemp("overload")
    repo = link_copy(tiny_repository, work / "repository")
    for name in PIPELINE_CONTRACTS:
        config = repo / name / "config.pbtxt"
        text = config.read_text()
        config.unlink()  # a link into the session's repository: replace it, never write through it
        config.write_text(re.sub(r"max_queue_size: \d+", f"max_queue_size: {QUEUE}", text))
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          work_dir=work / "_triton", log_file=work / "tritonserver.log")
    with server:
        yield server


@pytest.fixture(scope="module")
def steps(small_queues):
    return StepCounter(small_queues.http_url)


@pytest.fixture(scope="module")
def one_job_gateway(small_queues, test_settings):
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread

    settings = test_settings.model_copy(update={"default_steps": 1, "default_width": 512, "default_height": 512,
                                                "max_in_flight": 1, "overload_retry_after_s": 3})
    app = create_app(settings, triton_urls=small_queues.grpc_url, api_key="", ui=False)
    server = ServerThread(app, free_port()).start()
    server.pool = app.state.sotai.pool
    yield server
    server.stop()


@pytest.fixture()
def gw(one_job_gateway):
    with httpx.Client(base_url=one_job_gateway.url, timeout=120) as client:
        yield client


class StepCounter:
    """The denoising loop's steps and decodes, as Triton counts them (all requests together)."""

    def __init__(self, http_url: str):
        import tritonclient.http as httpclient

        self.client = httpclient.InferenceServerClient(http_url)

    def _count(self, model: str) -> int:
        stats = self.client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
        return int(stats["success"]["count"])

    def unet(self) -> int:
        return self._count("unet")

    def decodes(self) -> int:
        return self._count("vae_decoder")

    def wait_for(self, start: int, more: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while (now := self.unet()) < start + more:
            assert time.monotonic() < deadline, f"the loop did not reach {more} steps in {timeout_s:.0f} s"
            time.sleep(0.02)
        return now

    def settled(self, quiet_s: float = 1.5) -> int:
        """The count once no step has run for quiet_s (a UNet step here takes about 0.1 s)."""
        last = self.unet()
        while True:
            time.sleep(quiet_s)
            now = self.unet()
            if now == last:
                return now
            last = now


def diffusion_inputs(steps: int) -> list:
    from sotai.bench.overload import diffusion_inputs as one_row

    return one_row(steps, seed=1, prompt=PROMPT)


def assert_stopped_within_one_step(steps: StepCounter, at_stop: int, decodes_before: int, *, decoded: bool = False):
    final = steps.settled()
    assert final - at_stop <= 1, f"the loop ran {final - at_stop} steps after it was told to stop"
    assert steps.decodes() - decodes_before == int(decoded), "decoded" if not decoded else "not decoded"


# -- cancellation -------------------------------------------------------------------------------


def test_a_cancelled_grpc_call_stops_the_loop_within_one_step(small_queues, steps):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(small_queues.grpc_url)
    answers: list = []
    start, decodes = steps.settled(0.3), steps.decodes()
    call = client.async_infer("diffusion", diffusion_inputs(LONG),
                              callback=lambda result, error: answers.append(error))
    steps.wait_for(start, 3)
    call.cancel()
    assert_stopped_within_one_step(steps, steps.unet(), decodes)
    assert "CANCELLED" in str(answers[0])
    client.close()


def test_a_cancelled_stream_stops_the_streaming_loop_within_one_step(small_queues, steps):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(small_queues.grpc_url)
    events: list = []
    start, decodes = steps.settled(0.3), steps.decodes()
    client.start_stream(callback=lambda result, error: events.append((result, error)))
    client.async_stream_infer("diffusion_stream", diffusion_inputs(LONG))
    steps.wait_for(start, 3)
    client.stop_stream(cancel_requests=True)
    assert_stopped_within_one_step(steps, steps.unet(), decodes)
    client.close()


def test_a_client_that_disconnects_from_v1_images_cancels_its_job_and_frees_its_slot(one_job_gateway, steps, gw):
    start, decodes = steps.settled(0.3), steps.decodes()
    body = json.dumps({"tags": ["1girl", "night"], "steps": LONG, "seed": 3}).encode()
    host, port = one_job_gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    steps.wait_for(start, 3)
    assert sum(one_job_gateway.pool.in_flight().values()) == 1
    sock.close()
    at_stop = steps.unet()
    freed = _until(lambda: sum(one_job_gateway.pool.in_flight().values()) == 0, 2.0)
    assert freed is not None, "the slot of the cancelled job was not given back"
    assert_stopped_within_one_step(steps, at_stop, decodes)
    assert gw.post("/v1/images", json={"tags": ["1girl"], "steps": 1, "seed": 1}).status_code == 200


def test_a_client_that_leaves_the_event_stream_cancels_its_job(one_job_gateway, steps):
    start, decodes = steps.settled(0.3), steps.decodes()
    with httpx.Client(base_url=one_job_gateway.url, timeout=60) as http:
        with http.stream("POST", "/v1/images/stream", json={"tags": ["1girl"], "steps": LONG, "seed": 4}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:") and '"stage": "diffusion", "step": 3' in line:
                    break
    at_stop = steps.unet()
    assert _until(lambda: sum(one_job_gateway.pool.in_flight().values()) == 0, 2.0) is not None
    assert at_stop - start >= 3
    assert_stopped_within_one_step(steps, at_stop, decodes)


def _until(check, timeout_s: float):
    """Seconds until check() held, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if check():
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def _in_thread(fn):
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, box


def test_skip_finishes_the_image_under_way_at_the_next_step_and_the_job_goes_on(one_job_gateway, steps, gw):
    start, decodes = steps.settled(0.3), steps.decodes()
    body = {"prompt": PROMPT, "steps": 40, "seed": 5, "n_iter": 2, "width": 512, "height": 512}
    thread, box = _in_thread(lambda: gw.post("/sdapi/v1/txt2img", json=body))
    steps.wait_for(start, 3)
    assert gw.post("/sdapi/v1/skip").json() is None
    at_skip = steps.unet()
    assert _until(lambda: steps.decodes() > decodes, 5.0) is not None, "the skipped image was not decoded"
    first_image_steps = steps.unet() - start
    thread.join(60)
    response = box["value"]
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 2 and info["all_seeds"] == [5, 6]
    # The first image ended within one step of the skip; the second was painted in full.
    assert first_image_steps <= at_skip - start + 2  # + the skip's step + the next image's first
    assert steps.settled(0.3) - start <= (at_skip - start) + 1 + 40


def test_interrupt_finishes_the_image_under_way_and_paints_no_more(one_job_gateway, steps, gw):
    start, decodes = steps.settled(0.3), steps.decodes()
    body = {"prompt": PROMPT, "steps": LONG, "seed": 7, "n_iter": 3, "width": 512, "height": 512}
    thread, box = _in_thread(lambda: gw.post("/sdapi/v1/txt2img", json=body))
    steps.wait_for(start, 3)
    assert gw.post("/sdapi/v1/interrupt").json() == {}
    at_stop = steps.unet()
    thread.join(30)
    response = box["value"]
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1  # the image under way, decoded as it was
    assert_stopped_within_one_step(steps, at_stop, decodes, decoded=True)


# -- deadlines ----------------------------------------------------------------------------------


def test_a_request_timeout_stops_painting_and_names_timeout_s(one_job_gateway, steps, gw):
    start, decodes = steps.settled(0.3), steps.decodes()
    t0 = time.monotonic()
    response = gw.post("/v1/images", json={"tags": ["1girl"], "steps": LONG, "seed": 8, "timeout_s": 1.5})
    elapsed = time.monotonic() - t0
    at_answer = steps.unet()
    assert response.status_code == 504, response.text
    assert response.json()["field"] == "timeout_s" and "1.5 s" in response.json()["detail"]
    assert 1.4 < elapsed < 2.5
    assert 0 < at_answer - start < LONG
    assert_stopped_within_one_step(steps, at_answer, decodes)
    bad = gw.post("/v1/images", json={"tags": ["1girl"], "timeout_s": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "timeout_s"


def test_triton_request_timeout_stops_the_loop(small_queues, steps):
    """Triton's own request timeout (microseconds), without a gRPC deadline: the loop checks it."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(small_queues.grpc_url)
    start, decodes = steps.settled(0.3), steps.decodes()
    t0 = time.monotonic()
    with pytest.raises(grpcclient.InferenceServerException, match="timeout_s=1.2"):
        client.infer("diffusion", diffusion_inputs(LONG), timeout=1_200_000)
    assert time.monotonic() - t0 < 2.0
    assert_stopped_within_one_step(steps, steps.unet(), decodes)
    client.close()


# -- bounded queues -----------------------------------------------------------------------------


def test_triton_refuses_past_its_queue_at_once(small_queues, steps):
    """One request painting and QUEUE waiting: the rest are refused in milliseconds, not queued."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(small_queues.grpc_url)
    steps.settled(0.3)
    answers: list = []
    lock = threading.Lock()

    def sent(t0):
        def done(result, error):
            with lock:
                answers.append((time.monotonic() - t0, error))
        return done

    calls = [client.async_infer("diffusion", diffusion_inputs(LONG), callback=sent(time.monotonic()))
             for _ in range(QUEUE + 4)]
    assert _until(lambda: len(answers) >= 3, 5.0) is not None
    refused = [(s, e) for s, e in answers if e is not None]
    assert len(refused) >= 3
    for seconds, error in refused:
        assert "Exceeds maximum queue size" in str(error)
        assert seconds < 0.5, f"a refusal took {seconds:.2f} s"
    for call in calls:
        call.cancel()  # the accepted ones: cancelled, they stop at their next step
    steps.settled()
    client.close()


def test_gateway_answers_429_with_retry_after_past_its_job_limit(one_job_gateway, steps, gw):
    start = steps.settled(0.3)
    thread, box = _in_thread(lambda: gw.post("/v1/images", json={"tags": ["1girl"], "steps": 30, "seed": 9}))
    steps.wait_for(start, 2)
    for path, body in (("/v1/images", {"tags": ["1girl"], "steps": 1}),
                       ("/sdapi/v1/txt2img", {"prompt": "1girl", "steps": 1}),
                       ("/v1/tags", {"text": "夜の桜"})):
        t0 = time.monotonic()
        response = gw.post(path, json=body)
        assert response.status_code == 429, (path, response.text)
        assert time.monotonic() - t0 < 0.1
        assert response.headers["Retry-After"] == "3"
        assert "busy" in response.json()["detail"] and "retry" in response.json()["detail"]
    stream = gw.post("/v1/images/stream", json={"tags": ["1girl"], "steps": 1})
    assert stream.status_code == 429 and stream.headers["Retry-After"] == "3"  # refused before the stream opens
    thread.join(60)
    assert box["value"].status_code == 200
    assert gw.post("/v1/images", json={"tags": ["1girl"], "steps": 1}).status_code == 200


def test_a_full_triton_queue_is_a_429_too_never_a_5xx(small_queues, steps, test_settings):
    """A gateway that would admit more jobs than Triton queues: Triton's refusal comes back as 429."""
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread

    settings = test_settings.model_copy(update={"default_width": 512, "default_height": 512, "max_in_flight": 16})
    gateway = ServerThread(create_app(settings, triton_urls=small_queues.grpc_url, api_key="", ui=False),
                           free_port()).start()
    steps.settled(0.3)
    try:
        with httpx.Client(base_url=gateway.url, timeout=120) as http:
            def paint(seed):
                return http.post("/v1/images", json={"tags": ["1girl"], "steps": 15, "seed": seed})

            threads = [_in_thread(lambda seed=seed: paint(seed)) for seed in range(QUEUE + 4)]
            for thread, _ in threads:
                thread.join(120)
            statuses = sorted(box["value"].status_code for _, box in threads)
            refused = [box["value"] for _, box in threads if box["value"].status_code == 429]
            assert set(statuses) == {200, 429}, statuses
            assert all(r.headers["Retry-After"] == str(settings.overload_retry_after_s) for r in refused)
            assert "queue is full" in refused[0].json()["detail"]
    finally:
        gateway.stop()
