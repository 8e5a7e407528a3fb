"""`sotai bench overload`: far more clients than the server admits, against low queue limits.

1. Copies the profile's repository (links; only the configs are rewritten) with every bounded queue
   set to `--queue` (SOTAI_MAX_QUEUE_SIZE), starts Triton on it and the gateway in a process of its own
   (`python -m sotai.gateway`, SOTAI_MAX_IN_FLIGHT=`--in-flight`) so the load generator's GIL does
   not slow its answers.
2. Warm-up; then the latency of a good request (median of `--probes` sequential `POST /v1/images`)
   and the resident memory (RSS) of tritonserver with its stubs and of the gateway: the baseline.
3. Triton phase: `--concurrency` gRPC clients (asyncio) on the `diffusion` model for `--seconds`.
4. Gateway phase: `--concurrency` HTTP clients on `POST /v1/images` for `--seconds`; a refused
   client tries again after the answer's Retry-After (plus up to half of it at random, the usual
   jitter), as a well-behaved client does (or after
   `--backoff-ms`, to keep more pressure on). Closed loop: each client sends its next request as soon
   as it has an answer. (In the Triton phase, which has no Retry-After, a refused client waits 50-150 ms.)
   The clients of each phase start over `--ramp-s` (1 s: 64 new connections at the same instant cost
   the first refusals ~130 ms on 2 shared cores).
5. After the load: the good request's latency and the RSS again.
Verdict: every answer is a success or a refusal (Triton: "Exceeds maximum queue size"; gateway:
429 with Retry-After); none is a 5xx or a transport error; p99 of refusals < 100 ms; the good
request after the load within `--latency-tolerance` of before; RSS within 10% of the baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sotai.settings import PROJECT_ROOT, get_settings

MAX_REFUSAL_P99_MS = 100.0
MAX_RSS_GROWTH = 0.10
GOOD = {"tags": ["1girl", "silver_hair", "night"], "seed": 1}


@dataclass
class Tally:
    """Answers of one phase: latency (ms) per outcome."""

    ok: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # "HTTP 502" / exception text -> count
    error_ms: list[float] = field(default_factory=list)
    refused_at: list[tuple[float, float]] = field(default_factory=list)  # (s into the phase, ms)

    def summary(self, seconds: float) -> dict:
        def pct(values: list[float], q: float) -> float | None:
            return round(statistics.quantiles(values, n=100)[q - 1], 1) if len(values) >= 2 else \
                (round(values[0], 1) if values else None)

        return {"seconds": round(seconds, 1), "completed": len(self.ok), "refused": len(self.refused),
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "completed_per_s": round(len(self.ok) / seconds, 2),
                "completed_p50_ms": pct(self.ok, 50), "completed_p99_ms": pct(self.ok, 99),
                "refused_p50_ms": pct(self.refused, 50), "refused_p99_ms": pct(self.refused, 99),
                "refused_max_ms": round(max(self.refused), 1) if self.refused else None}


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser("overload")
    p.add_argument("--repo", type=Path, default=None, help="model repository (default: the profile's)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--queue", type=int, default=2, help="max_queue_size of every bounded Triton queue")
    p.add_argument("--in-flight", type=int, default=2, help="the gateway's jobs per replica")
    p.add_argument("--seconds", type=float, default=45.0, help="length of each load phase")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--probes", type=int, default=5, help="sequential good requests before and after the load")
    p.add_argument("--backoff-ms", type=float, default=None,
                   help="gateway phase: wait this long after a 429 (default: its Retry-After)")
    p.add_argument("--ramp-s", type=float, default=1.0,
                   help="clients start over this many seconds (locust's spawn rate; 0: all at once)")
    p.add_argument("--latency-tolerance", type=float, default=0.5, help="after/before - 1 allowed (shared CPUs)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    p.set_defaults(func=cmd_bench_overload)


def small_queue_copy(src: Path, dst: Path, queue: int) -> Path:
    """A linked copy of `src` whose bounded queues hold `queue` requests (configs are real files)."""
    from sotai.contracts import PIPELINE_CONTRACTS

    from sotai.serving.repo_copy import link_copy

    link_copy(src, dst)
    for name in PIPELINE_CONTRACTS:
        config = dst / name / "config.pbtxt"
        text = config.read_text()
        config.unlink()
        config.write_text(re.sub(r"max_queue_size: \d+", f"max_queue_size: {queue}", text))
    return dst


def diffusion_inputs(steps: int, seed: int, prompt: str = "1girl, night") -> list:
    """One request row for the `diffusion` model (every input [1, 1]); also used by tests/reliability."""
    import tritonclient.grpc as grpcclient

    from sotai.params import GenerationParams, infer_inputs, request_rows

    params = GenerationParams(steps=steps, seed=seed, width=512, height=512)
    return infer_inputs(grpcclient, request_rows([(prompt, params)]))


async def triton_phase(grpc_url: str, concurrency: int, seconds: float, steps: int, backoff_s: float,
                       ramp_s: float = 1.0) -> dict:
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(grpc_url)
    tally = Tally()
    stop = time.monotonic() + seconds

    async def user(i: int) -> None:
        await asyncio.sleep(ramp_s * i / concurrency)
        n = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                await client.infer("diffusion", diffusion_inputs(steps, i * 1000 + n), client_timeout=120)
                tally.ok.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # tritonclient raises InferenceServerException for every refusal
                ms = (time.perf_counter() - t0) * 1000
                if "Exceeds maximum queue size" in str(exc):
                    tally.refused.append(ms)
                    await asyncio.sleep(backoff_s * (0.5 + random.random()))
                else:
                    tally.errors[str(exc).splitlines()[0][:120]] += 1
                    tally.error_ms.append(ms)
            n += 1

    t0 = time.monotonic()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    summary = tally.summary(time.monotonic() - t0)
    await client.close()
    return summary


async def gateway_phase(url: str, concurrency: int, seconds: float, steps: int, backoff_s: float | None,
                        ramp_s: float = 1.0) -> dict:
    # aiohttp, not httpx: httpx's connection pool costs tens of ms per request at this concurrency
    # (62 simultaneous refusals: up to 1.3 s with httpx, 0.15 s with aiohttp), which would be
    # measured as the gateway's latency.
    import aiohttp

    tally = Tally()
    retry_after: set[str] = set()
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def user(i: int) -> None:
            await asyncio.sleep(ramp_s * i / concurrency)
            n = 0
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    async with http.post("/v1/images", json={**GOOD, "steps": steps, "seed": i * 1000 + n}) as response:
                        text = await response.text()
                    ms = (time.perf_counter() - t0) * 1000
                    if response.status == 200:
                        tally.ok.append(ms)
                    elif response.status == 429:
                        tally.refused.append(ms)
                        tally.refused_at.append((time.monotonic() - (stop - seconds), ms))
                        retry_after.add(response.headers.get("Retry-After", "<none>"))
                        await asyncio.sleep(backoff_s if backoff_s is not None else
                                            retry_wait(float(response.headers.get("Retry-After", "1"))))
                    else:
                        tally.errors[f"HTTP {response.status}: {text[:100]}"] += 1
                        tally.error_ms.append(ms)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    tally.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                n += 1

        t0 = time.monotonic()
        lag = asyncio.ensure_future(loop_lag(stop))
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        summary = tally.summary(time.monotonic() - t0)
        summary.update(await lag)
    summary["retry_after"] = sorted(retry_after)
    summary["slowest_refusals_at_s"] = sorted((round(at, 1), round(ms)) for at, ms in
                                              sorted(tally.refused_at, key=lambda x: -x[1])[:5])
    return summary


def retry_wait(retry_after_s: float) -> float:
    """Retry-After plus up to half of it again at random: clients that were refused together do not all
    come back in the same millisecond (the usual jitter of a well-behaved client)."""
    return retry_after_s * (1 + random.random() / 2)


async def loop_lag(stop: float, tick_s: float = 0.01) -> dict:
    """How late this process's event loop wakes up: a latency the load generator adds to every answer
    it measures (on a busy 2-core machine it is not small)."""
    lags = []
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        await asyncio.sleep(tick_s)
        lags.append((time.perf_counter() - t0 - tick_s) * 1000)
    q = statistics.quantiles(lags, n=100) if len(lags) >= 2 else [0.0] * 99
    return {"generator_lag_p50_ms": round(q[49], 1), "generator_lag_p99_ms": round(q[98], 1),
            "generator_lag_max_ms": round(max(lags, default=0.0), 1)}


def good_latency(url: str, probes: int, steps: int) -> float:
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for k in range(probes):
            t0 = time.perf_counter()
            response = http.post("/v1/images", json={**GOOD, "steps": steps, "seed": 100 + k})
            response.raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def _rss(pid: int) -> int:
    from sotai.bench.load import MemoryWatch

    return MemoryWatch(pid).rss()


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the gateway at {url} was not ready in {timeout_s:.0f} s")


def _settle(triton_pid: int, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """Wait until Triton's CPU use is quiet (queued work finished) before the after-load figures."""
    import psutil

    proc = psutil.Process(triton_pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs = [proc, *proc.children(recursive=True)]
        before = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        time.sleep(quiet_s)
        after = sum(p.cpu_times().user + p.cpu_times().system for p in procs if p.is_running())
        if after - before < 0.2 * quiet_s:
            return


def cmd_bench_overload(args) -> int:
    from sotai.serving.server import TritonServer, free_port

    settings = get_settings()
    repo_src = args.repo or settings.repository_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    backoff_s = None if args.backoff_ms is None else args.backoff_ms / 1000
    with tempfile.TemporaryDirectory(prefix="sotai-overload-") as tmp:
        repo = small_queue_copy(repo_src, Path(tmp) / "repository", args.queue)
        server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                              work_dir=Path(tmp) / "_triton", log_file=args.out / "overload-triton.log")
        print(f"starting Triton on a copy of {repo_src} with queues of {args.queue} ...", file=sys.stderr, flush=True)
        with server:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "SOTAI_MAX_IN_FLIGHT": str(args.in_flight), "SOTAI_API_KEY": "",
                   "DEFAULT_WIDTH": "512", "DEFAULT_HEIGHT": "512"}
            with open(args.out / "overload-gateway.log", "wb") as log:
                gateway = subprocess.Popen([sys.executable, "-m", "sotai.gateway", "--no-ui", "--port", str(port),
                                            "--triton-url", server.grpc_url], env=env, stdout=log, stderr=log,
                                           cwd=PROJECT_ROOT)
            try:
                _wait_http(url)
                print("warm-up ...", file=sys.stderr, flush=True)
                good_latency(url, 3, args.steps)
                before_ms = good_latency(url, args.probes, args.steps)
                rss_before = {"triton": _rss(server.process.pid), "gateway": _rss(gateway.pid)}
                print(f"good request before: {before_ms} ms; RSS {_mib(rss_before)}", file=sys.stderr, flush=True)

                print(f"Triton phase: {args.concurrency} gRPC clients on `diffusion` for {args.seconds:.0f} s",
                      file=sys.stderr, flush=True)
                phases = {"triton": asyncio.run(triton_phase(server.grpc_url, args.concurrency, args.seconds,
                                                             args.steps, 0.1 if backoff_s is None else backoff_s,
                                                             args.ramp_s))}
                _settle(server.process.pid)
                print(f"gateway phase: {args.concurrency} HTTP clients on /v1/images for {args.seconds:.0f} s",
                      file=sys.stderr, flush=True)
                phases["gateway"] = asyncio.run(gateway_phase(url, args.concurrency, args.seconds, args.steps,
                                                              backoff_s, args.ramp_s))
                _settle(server.process.pid)
                after_ms = good_latency(url, args.probes, args.steps)
                rss_after = {"triton": _rss(server.process.pid), "gateway": _rss(gateway.pid)}
            finally:
                gateway.terminate()
                gateway.wait(30)

    growth = {k: round(rss_after[k] / rss_before[k] - 1, 4) for k in rss_before}
    checks = {
        "no 5xx or transport errors": all(p["errors"] == 0 for p in phases.values()),
        "every phase refused some and completed some": all(p["refused"] > 0 and p["completed"] > 0 for p in phases.values()),
        f"p99 of refusals < {MAX_REFUSAL_P99_MS:.0f} ms": all((p["refused_p99_ms"] or 0) < MAX_REFUSAL_P99_MS
                                                              for p in phases.values()),
        f"good request after the load within {args.latency_tolerance:.0%} of before":
            after_ms <= before_ms * (1 + args.latency_tolerance),
        f"RSS within {MAX_RSS_GROWTH:.0%} of before": all(abs(g) <= MAX_RSS_GROWTH for g in growth.values()),
    }
    ok = all(checks.values())
    result = {"concurrency": args.concurrency, "queue": args.queue, "in_flight": args.in_flight, "steps": args.steps,
              "gateway_backoff": "Retry-After (+0-50% jitter)" if backoff_s is None else f"{args.backoff_ms:g} ms",
              "ramp_s": args.ramp_s,
              "cpus": os.cpu_count(), "phases": phases, "good_before_ms": before_ms, "good_after_ms": after_ms,
              "rss_before_mib": _mib(rss_before), "rss_after_mib": _mib(rss_after), "rss_growth": growth,
              "checks": checks, "pass": ok}
    print_result(result)
    (args.out / "overload.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0 if ok else 1


def _mib(rss: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 2**20, 1) for k, v in rss.items()}


def print_result(r: dict) -> None:
    print(f"overload: concurrency {r['concurrency']}, Triton queues {r['queue']}, gateway {r['in_flight']} jobs per "
          f"replica, steps {r['steps']}, 512x512, {r['cpus']} CPUs; a refused gateway client waits "
          f"{r['gateway_backoff']}; clients start over {r['ramp_s']:g} s")
    print(f"{'phase':<8} {'secs':>5} {'done':>6} {'done/s':>6} {'p50 ms':>8} {'p99 ms':>8} {'refused':>8} "
          f"{'ref p50':>8} {'ref p99':>8} {'ref max':>8} {'errors':>6}")
    for name, p in r["phases"].items():
        print(f"{name:<8} {p['seconds']:>5} {p['completed']:>6} {p['completed_per_s']:>6} {p['completed_p50_ms']!s:>8} "
              f"{p['completed_p99_ms']!s:>8} {p['refused']:>8} {p['refused_p50_ms']!s:>8} {p['refused_p99_ms']!s:>8} "
              f"{p['refused_max_ms']!s:>8} {p['errors']:>6}")
        if "generator_lag_p99_ms" in p:
            print(f"  load generator's own event-loop lag: p50 {p['generator_lag_p50_ms']} ms, p99 "
                  f"{p['generator_lag_p99_ms']} ms, max {p['generator_lag_max_ms']} ms; slowest refusals "
                  f"(s into the phase, ms): {p['slowest_refusals_at_s']}")
        if p["error_kinds"]:
            print(f"  errors: {p['error_kinds']}")
    print(f"good request (median of probes): before {r['good_before_ms']} ms, after {r['good_after_ms']} ms")
    print(f"RSS MiB before {r['rss_before_mib']}, after {r['rss_after_mib']}, growth {r['rss_growth']}")
    for check, passed in r["checks"].items():
        print(f"  {'PASS' if passed else 'FAIL'}  {check}")
    print(f"verdict: {'PASS' if r['pass'] else 'FAIL'}")

