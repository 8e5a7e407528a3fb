"""Safe defaults: everything binds 127.0.0.1 unless told otherwise, an optional API key checked in
constant time on every route but the probes, a body size limit on every POST route, no CORS unless
origins are given."""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress

import pytest
import yaml
from fastapi.testclient import TestClient

from sotai.gateway import create_app
from sotai.gateway.security import IMAGE_BODY_BYTES, IMAGE_PATHS, MAX_BODY_BYTES, OPEN_PATHS
from sotai.serving.server import TritonServer, free_port
from sotai.settings import PROJECT_ROOT, Settings

LOOPBACK = "127.0.0.1"


def offline_app(test_settings, **kw):
    """A gateway whose Triton is a closed port: what is checked here happens before Triton."""
    return create_app(test_settings, triton_urls=f"{LOOPBACK}:{free_port()}", ui=False, **kw)


def api_routes(app) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the gateway documents."""
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # gRPC listens on ::ffff:127.0.0.1
    return (mapped or address).is_loopback


# -- binding -----------------------------------------------------------------------------------


def test_settings_default_to_loopback_and_no_key():
    fields = Settings.model_fields
    assert fields["host"].default == LOOPBACK
    assert fields["triton_url"].default.startswith(f"{LOOPBACK}:")
    assert fields["api_key"].default is None


def test_the_gateway_command_binds_loopback_unless_told(monkeypatch):
    import uvicorn

    from sotai.gateway.commands import register

    bound = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: bound.update(kw))
    monkeypatch.delenv("SOTAI_HOST", raising=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for argv, host in ((["gateway", "--no-ui"], LOOPBACK), (["gateway", "--no-ui", "--host", "0.0.0.0"], "0.0.0.0")):
        args = parser.parse_args(argv)
        args.func(args)
        assert bound["host"] == host


def test_triton_binds_every_endpoint_to_loopback(tmp_path):
    command = TritonServer(tmp_path, work_dir=tmp_path / "_triton").command()
    for endpoint in ("http", "grpc", "metrics"):
        assert f"--{endpoint}-address={LOOPBACK}" in command


def test_the_running_triton_listens_on_loopback_only(triton):
    import psutil

    listening = [c.laddr for c in psutil.Process(triton.process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert {triton.http_port, triton.grpc_port, triton.metrics_port} <= {a.port for a in listening}
    assert all(is_loopback(a.ip) for a in listening), listening


def test_compose_publishes_ports_on_loopback_only():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    published = [(name, port) for name, service in compose["services"].items()
                 for port in service.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith(f"{LOOPBACK}:"), f"{name} publishes {port} on every interface"


# -- API key -----------------------------------------------------------------------------------


def test_with_a_key_every_route_but_the_probes_refuses_a_missing_or_wrong_key(test_settings):
    app = offline_app(test_settings, api_key="correct horse battery staple")
    routes = api_routes(app)
    assert len(routes) >= 12
    with TestClient(app) as client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "correct horse"},
                            {"Authorization": "Basic " + base64.b64encode(b"user:wrong").decode()}):
                response = client.request(method, path, headers=headers, json={})
                if path in OPEN_PATHS:
                    assert response.status_code != 401, (method, path)
                else:
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert response.headers["www-authenticate"].startswith("Bearer")


def test_with_the_key_requests_get_through(test_settings):
    app = offline_app(test_settings, api_key="s3cret")
    with TestClient(app) as client:
        response = client.post("/v1/tags", json={"text": "夜の桜"}, headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 503  # past the key check; Triton is down here
        assert client.get("/sdapi/v1/samplers", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_the_key_is_compared_in_constant_time(test_settings, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(offline_app(test_settings, api_key="s3cret")) as client:
        client.get("/sdapi/v1/samplers", headers={"X-API-Key": "nope"})
    assert calls == [(b"nope", b"s3cret")]


def test_without_a_key_nothing_asks_for_one(test_settings, monkeypatch):
    monkeypatch.delenv("SOTAI_API_KEY", raising=False)
    with TestClient(offline_app(test_settings.model_copy(update={"api_key": None}))) as client:
        assert client.get("/sdapi/v1/samplers").status_code == 200


# -- body size ---------------------------------------------------------------------------------


def test_every_post_route_refuses_a_body_over_the_limit(test_settings):
    app = offline_app(test_settings, api_key="")
    posts = [path for method, path in api_routes(app) if method == "POST"]
    assert {"/v1/tags", "/v1/images", "/v1/images/stream", "/sdapi/v1/txt2img", "/sdapi/v1/options"} <= set(posts)
    with TestClient(app) as client:
        for path in posts:
            # Image-carrying routes (png-info, later img2img) have their own, larger limit.
            limit = IMAGE_BODY_BYTES if path in IMAGE_PATHS else MAX_BODY_BYTES
            big = b'{"text": "' + b"a" * (limit + 1) + b'"}'
            declared = client.post(path, content=big, headers={"content-type": "application/json"})
            assert declared.status_code == 413, path
            chunked = client.post(path, content=iter([big[:1000], big[1000:]]),
                                  headers={"content-type": "application/json"})
            assert chunked.status_code == 413, path
        assert f"larger than {limit} bytes" in declared.json()["detail"]


# -- CORS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/tags", "/sdapi/v1/txt2img", "/healthz"])
def test_no_cors_by_default(test_settings, path):
    origin = {"Origin": "http://evil.example"}
    with TestClient(offline_app(test_settings, api_key="")) as client:
        preflight = client.options(path, headers={**origin, "Access-Control-Request-Method": "POST"})
        simple = client.get("/healthz", headers=origin)
    for response in (preflight, simple):
        assert not any(h.startswith("access-control-") for h in response.headers), response.headers


def test_cors_only_for_the_origins_given(test_settings):
    app = offline_app(test_settings, api_key="", cors_origins=["https://ok.example"])
    with TestClient(app) as client:
        def allowed(origin):
            return client.options("/v1/tags", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}) \
                .headers.get("access-control-allow-origin")

        assert allowed("https://ok.example") == "https://ok.example"
        assert allowed("http://evil.example") is None
