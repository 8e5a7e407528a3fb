"""The gateway's /v1 API and probes, in front of the session's Triton; safe defaults without it."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sotai.errors import InvalidInput
from sotai.gateway import create_app
from sotai.params import GenerationParams
from sotai.serving.server import free_port

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"


def test_health_and_readiness(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    (replica,) = ready.json()["triton"]
    assert replica["ready"] and {"sotai", "rag", "dart", "diffusion", "unet"} <= set(replica["models"])


def test_tags_endpoint_returns_tags_with_reasons_and_prompt(http):
    body = http.post("/v1/tags", json={"text": SCENE, "seed": 3}).json()
    assert body["prompt"] and body["tags"]
    assert all(set(t) == {"tag", "score", "category", "reason"} for t in body["tags"])
    assert any(t["reason"]["span"] for t in body["tags"]), "RAG tags say which words caused them"


def test_images_endpoint_returns_pngs_of_the_requested_size_and_the_seed(http):
    body = http.post("/v1/images", json={"text": SCENE, "seed": 9, "steps": 2, "width": 512, "height": 576,
                                         "num_images": 2}).json()
    assert body["seed"] == 9 and len(body["images"]) == 2
    for b64 in body["images"]:
        image = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert image.format == "PNG" and image.size == (512, 576)
    again = http.post("/v1/images", json={"text": SCENE, "seed": 9, "steps": 2, "width": 512, "height": 576,
                                          "num_images": 2}).json()
    assert again["images"] == body["images"]


def test_images_endpoint_takes_an_init_image_as_base64(http):
    buf = io.BytesIO()
    Image.new("RGB", (200, 300), (30, 200, 60)).save(buf, format="PNG")
    init = base64.b64encode(buf.getvalue()).decode("ascii")
    body = {"tags": ["1girl"], "seed": 4, "steps": 4, "width": 512, "height": 512, "init_image": init,
            "denoising_strength": 0.5}
    response = http.post("/v1/images", json=body)
    assert response.status_code == 200, response.text
    png = base64.b64decode(response.json()["images"][0])
    assert "Denoising strength: 0.5" in Image.open(io.BytesIO(png)).text["parameters"]
    bad = http.post("/v1/images", json={**body, "init_image": "@@@"})
    assert bad.status_code == 422 and bad.json()["field"] == "init_image"
    wrong = http.post("/v1/images", json={**body, "init_image": base64.b64encode(b"GIF89a....").decode()})
    assert wrong.status_code == 422 and wrong.json()["field"] == "init_image"


def test_images_from_tags_bypass_rag(http):
    body = http.post("/v1/images", json={"tags": ["1girl", "night"], "seed": 4}).json()
    assert {"1girl", "night"} <= {t["tag"] for t in body["tags"]}
    assert all(t["reason"]["signal"] in ("user", "dart") for t in body["tags"])


def test_progress_streams_as_server_sent_events(http):
    events = []
    with http.stream("POST", "/v1/images/stream", json={"text": SCENE, "seed": 2}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
    names = [n for n, _ in events]
    assert names[-1] == "result" and names.count("progress") >= 4
    stages = [d["stage"] for n, d in events if n == "progress"]
    assert stages[0] == "rag" and "dart" in stages and "diffusion" in stages
    dart = next(d for n, d in events if n == "progress" and d["stage"] == "dart")
    result = events[-1][1]
    assert dart["tags"] == result["tags"] and result["seed"] == 2 and len(result["images"]) == 1


# Each bad body gets 422 naming the field, in sotai.limits' own words (the words Triton uses).
BAD = [
    ({"text": ""}, "text"),
    ({"text": "   "}, "text"),
    ({"text": "あ" * 2001}, "text"),
    ({"text": "夜\x00"}, "text"),
    ({"text": SCENE, "tags": ["1girl"]}, "text"),
    ({"text": SCENE, "steps": 0}, "steps"),
    ({"text": SCENE, "steps": 1000}, "steps"),
    ({"text": SCENE, "steps": "20"}, "steps"),
    ({"text": SCENE, "steps": 2.5}, "steps"),
    ({"text": SCENE, "cfg_scale": -1}, "cfg_scale"),
    ({"text": SCENE, "width": 8192}, "width"),
    ({"text": SCENE, "width": 1001}, "width"),
    ({"text": SCENE, "num_images": 100}, "num_images"),
    ({"text": SCENE, "seed": 2**70}, "seed"),
    ({"text": SCENE, "scheduler": "ddim"}, "scheduler"),
    ({"text": SCENE, "rating": "pg13"}, "rating"),
    ({"tags": []}, "text"),
    ({"tags": "1girl"}, "tags"),
    ({"tags": ["x"] * 129}, "tags"),
    ({"text": SCENE, "colour": "red"}, "colour"),
    ([SCENE], "body"),
]


@pytest.mark.parametrize("body, field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_bad_fields_get_422_naming_field_and_limit(http, body, field):
    response = http.post("/v1/images", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()
    assert detail["field"] == field
    assert detail["detail"].startswith(f"{field}=") and " is invalid: " in detail["detail"]


def test_422_words_are_the_limits_words(http):
    with pytest.raises(InvalidInput) as limit:
        GenerationParams(steps=0).checked()
    response = http.post("/v1/tags", json={"text": SCENE, "steps": 0})
    assert response.json()["detail"] == str(limit.value)


def test_invalid_json_is_422(http):
    response = http.post("/v1/images", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "body"


def test_the_gateway_still_serves_after_bad_requests(http):
    for body, _ in BAD[:5]:
        http.post("/v1/images", json=body)
    assert http.post("/v1/tags", json={"text": SCENE}).status_code == 200


def test_openapi_documents_the_api(http):
    spec = http.get("/openapi.json").json()
    assert {"/v1/tags", "/v1/images", "/v1/images/stream", "/sdapi/v1/txt2img", "/healthz", "/readyz"} <= set(spec["paths"])
    assert http.get("/docs").status_code == 200


# -- without Triton --------------------------------------------------------------------------------


@pytest.fixture()
def offline(test_settings):
    """A gateway whose Triton is a closed port."""
    app = create_app(test_settings, triton_urls=f"127.0.0.1:{free_port()}", api_key="", ui=False)
    with TestClient(app) as client:
        yield client


def test_triton_down_is_503_with_retry_after(offline):
    for path in ("/v1/tags", "/v1/images", "/sdapi/v1/txt2img"):
        body = {"prompt": "1girl"} if path.startswith("/sdapi") else {"text": SCENE}
        response = offline.post(path, json=body)
        assert response.status_code == 503, (path, response.text)
        assert int(response.headers["retry-after"]) > 0
        assert "make serve" in response.json()["detail"]
    ready = offline.get("/readyz")
    assert ready.status_code == 503 and ready.headers["retry-after"]
    assert offline.get("/healthz").status_code == 200


def test_validation_comes_before_triton(offline):
    assert offline.post("/v1/images", json={"text": SCENE, "steps": 0}).status_code == 422


def test_api_key_is_checked_when_set(test_settings):
    app = create_app(test_settings, triton_urls=f"127.0.0.1:{free_port()}", api_key="s3cret", ui=False)
    with TestClient(app) as c:
        assert c.post("/v1/tags", json={"text": SCENE}).status_code == 401
        assert c.post("/v1/tags", json={"text": SCENE}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/sdapi/v1/samplers").status_code == 401
        # With the key the request reaches Triton (down here: 503), by any of the three ways to send it.
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"},
                        {"Authorization": "Basic " + base64.b64encode(b"user:s3cret").decode()}):
            assert c.post("/v1/tags", json={"text": SCENE}, headers=headers).status_code == 503
        assert c.get("/healthz").status_code == 200, "probes stay open"


def test_body_size_is_limited(test_settings):
    app = create_app(test_settings, triton_urls=f"127.0.0.1:{free_port()}", api_key="", ui=False, max_body_bytes=1024)
    with TestClient(app) as c:
        response = c.post("/v1/tags", json={"text": "あ" * 1000})
        assert response.status_code == 413
        chunked = c.post("/v1/tags", content=iter([b'{"text": "', b"a" * 2000, b'"}']),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 413


def test_cors_is_off_by_default_and_on_when_asked(test_settings):
    origin = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    closed = create_app(test_settings, triton_urls="127.0.0.1:1", api_key="", ui=False)
    with TestClient(closed) as c:
        assert "access-control-allow-origin" not in c.options("/v1/tags", headers=origin).headers
    opened = create_app(test_settings, triton_urls="127.0.0.1:1", api_key="", ui=False,
                        cors_origins=["http://evil.example"])
    with TestClient(opened) as c:
        assert c.options("/v1/tags", headers=origin).headers["access-control-allow-origin"] == "http://evil.example"


def test_replicas_round_robin_and_skip_one_that_is_down(triton, test_settings):
    dead = f"127.0.0.1:{free_port()}"
    app = create_app(test_settings, triton_urls=f"{dead},{triton.grpc_url}", api_key="", ui=False)
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post("/v1/tags", json={"text": SCENE, "seed": 1}).status_code == 200
        replicas = {r["url"]: r["ready"] for r in c.get("/readyz").json()["triton"]}
    assert replicas == {dead: False, triton.grpc_url: True}


def test_two_live_replicas_take_turns(triton, test_settings):
    from .tcp_proxy import CountingProxy

    host, port = triton.grpc_url.rsplit(":", 1)
    replicas = [CountingProxy(host, int(port)), CountingProxy(host, int(port))]
    app = create_app(test_settings, triton_urls=",".join(r.url for r in replicas), api_key="", ui=False)
    try:
        with TestClient(app) as c:
            served_by = []
            for _ in range(4):
                before = [r.bytes_up for r in replicas]
                assert c.post("/v1/tags", json={"text": SCENE, "seed": 1}).status_code == 200
                # A request is kilobytes; the idle channel may still send an HTTP/2 PING (17 bytes).
                grew = [r.bytes_up - b > 256 for r, b in zip(replicas, before)]
                assert grew.count(True) == 1, grew  # one request, one replica
                served_by.append(grew.index(True))
    finally:
        for r in replicas:
            r.close()
    assert served_by in ([0, 1, 0, 1], [1, 0, 1, 0]), served_by


def test_gateway_command_binds_localhost_by_default():
    import argparse

    from sotai.gateway.commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["gateway"])
    assert (args.host, args.port) == ("127.0.0.1", 7860) and args.cors_origin == []



def test_the_page_asks_for_the_api_key_as_its_password(test_settings):
    app = create_app(test_settings, triton_urls=f"127.0.0.1:{free_port()}", api_key="s3cret")
    with TestClient(app) as c:
        assert c.get("/config").status_code == 401
        assert c.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"}).status_code == 401
        assert c.post("/login/", data={"username": "me", "password": "wrong"}).status_code == 400
        assert c.post("/login/", data={"username": "me", "password": "s3cret"}).status_code == 200
        assert c.get("/config").status_code == 200
