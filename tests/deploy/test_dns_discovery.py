"""The gateway finds Triton replicas the way it does on Kubernetes: one `dns:///` URL whose name resolves
to every replica (a headless Service), balanced by gRPC's round_robin policy. Two real tritonservers
(no models: `--model-control-mode=explicit`, told apart by `--id`) listen on 127.0.0.2 and 127.0.0.3 at
the same port; a DNS server on 127.0.0.1 (dnslib) answers for their name, as cluster DNS does. The
URL names that server as its authority (`dns://127.0.0.1:PORT/name:port`); on Kubernetes the authority
is left out (`dns:///triton:8001`) and the pod's resolver is used: the same resolver and policy.
The compose path, a comma-separated URL list, is balanced by the gateway itself (sotai.gateway.pool)."""

from __future__ import annotations

import asyncio
import collections
import shutil
import time

import pytest
import yaml

dnslib = pytest.importorskip("dnslib", reason="dnslib is in requirements.lock: run `make venv`")
from dnslib import QTYPE, RR, A  # noqa: E402
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # noqa: E402

from sotai.gateway.pool import TritonPool, parse_urls  # noqa: E402
from sotai.serving.server import TritonServer, free_port  # noqa: E402
from sotai.settings import PROJECT_ROOT, Settings  # noqa: E402

NAME = "triton.sotai.test"
REPLICAS = ("127.0.0.2", "127.0.0.3")
# The flags deploy/k8s gives Triton so that gateways re-resolve the name; 1 s here instead of 60 s.
CONNECTION_AGE = ("--grpc-max-connection-age", "--grpc-max-connection-age-grace")
TRITON_ARGS = yaml.safe_load((PROJECT_ROOT / "deploy" / "k8s" / "base" / "triton-deployment.yaml").read_text())[
    "spec"]["template"]["spec"]["containers"][0]["args"]


class ClusterDns(BaseResolver):
    """A records for NAME: the addresses of the replicas that are `ready`, as a headless Service has."""

    def __init__(self):
        self.ready: list[str] = list(REPLICAS)

    def resolve(self, request, handler):
        reply = request.reply()
        if request.q.qtype == QTYPE.A and str(request.q.qname).rstrip(".") == NAME:
            for address in self.ready:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply


@pytest.fixture(scope="module")
def dns():
    resolver = ClusterDns()
    server = DNSServer(resolver, port=free_port(), address="127.0.0.1", logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    yield resolver, server.server.server_address[1]
    server.stop()


@pytest.fixture(scope="module")
def grpc_port(tmp_path_factory):
    """Both replicas on one port, as every pod behind a Service listens on the same one."""
    repository = tmp_path_factory.mktemp("empty-repository")
    (repository / "sotai").mkdir()  # TritonServer.start checks for the ensemble; explicit mode loads nothing
    shutil.copy(PROJECT_ROOT / "model_repository" / "sotai" / "config.pbtxt", repository / "sotai")
    port = free_port()
    age = [f"{flag}={ms}" for flag, ms in zip(CONNECTION_AGE, (1000, 5000))]
    assert all(any(a.startswith(flag + "=") for a in TRITON_ARGS) for flag in CONNECTION_AGE), \
        "deploy/k8s/base/triton-deployment.yaml must age gRPC connections out, or gateways never see new replicas"
    servers = [TritonServer(repository, host=host, grpc_port=port, http_port=free_port(), metrics_port=free_port(),
                            work_dir=tmp_path_factory.mktemp("triton"),
                            extra_args=[f"--id=replica-{host}", "--model-control-mode=explicit", *age])
               for host in REPLICAS]
    try:
        for server in servers:
            server.start(timeout_s=120)
        yield port
    finally:
        for server in servers:
            server.stop()


async def answered_by(pool: TritonPool, calls: int) -> collections.Counter:
    """Which replica served each call; the metadata call goes through the pool's own gRPC client."""
    await pool.start()
    seen = collections.Counter()
    for _ in range(calls):
        metadata = await pool._with_failover(lambda c: c._client.get_server_metadata(as_json=True))
        seen[metadata["name"]] += 1
    return seen


def gateway_pool(url: str) -> TritonPool:
    return TritonPool(parse_urls(Settings(triton_url=url).triton_url))


def test_a_dns_url_spreads_calls_over_every_replica_behind_the_name(dns, grpc_port):
    resolver, dns_port = dns
    resolver.ready = list(REPLICAS)
    pool = gateway_pool(f"dns://127.0.0.1:{dns_port}/{NAME}:{grpc_port}")

    async def run():
        try:
            (replica,) = await pool.readiness()  # one URL, many replicas: gRPC does the balancing
            assert replica["url"] == pool.urls[0]
            await answered_by(pool, 4)  # both connections up: round_robin starts with the first READY one
            return await answered_by(pool, 20)
        finally:
            await pool.close()

    seen = asyncio.run(run())
    assert set(seen) == {f"replica-{h}" for h in REPLICAS}, seen
    assert min(seen.values()) >= 8, f"round_robin should alternate: {seen}"


def test_a_replica_added_behind_the_name_gets_calls_once_connections_age_out(dns, grpc_port):
    """What the autoscaler does: a new pod joins the Service. gRPC re-resolves the name when a connection
    ends (Triton's --grpc-max-connection-age), at most every 30 s (gRPC's default for DNS)."""
    resolver, dns_port = dns
    resolver.ready = [REPLICAS[0]]
    pool = gateway_pool(f"dns://127.0.0.1:{dns_port}/{NAME}:{grpc_port}")

    async def run():
        try:
            before = await answered_by(pool, 6)
            resolver.ready = list(REPLICAS)
            started = time.monotonic()
            while time.monotonic() - started < 60:
                if (await answered_by(pool, 1)).get(f"replica-{REPLICAS[1]}"):
                    return before, time.monotonic() - started, await answered_by(pool, 10)
                await asyncio.sleep(0.2)
            return before, None, None
        finally:
            await pool.close()

    before, found_after_s, after = asyncio.run(run())
    assert before == {f"replica-{REPLICAS[0]}": 6}
    assert found_after_s is not None, "the new replica got no call within 60 s"
    assert set(after) == {f"replica-{h}" for h in REPLICAS}, after


def test_the_compose_url_list_round_robins_over_the_listed_replicas(grpc_port):
    pool = gateway_pool(",".join(f"{host}:{grpc_port}" for host in REPLICAS))

    async def run():
        try:
            readiness = await pool.readiness()
            return readiness, await answered_by(pool, 10)
        finally:
            await pool.close()

    readiness, seen = asyncio.run(run())
    assert [r["url"] for r in readiness] == [f"{host}:{grpc_port}" for host in REPLICAS]
    assert seen == {f"replica-{h}": 5 for h in REPLICAS}, seen
