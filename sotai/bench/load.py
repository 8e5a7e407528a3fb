"""`sotai bench load`: sustained load on the `sotai` ensemble and on the gateway, watching for errors
and for memory that keeps growing.

1. Starts the embedded Triton on the profile's repository (or `--repo`), warms it up at the target
   concurrency, then takes the resident memory (RSS) of tritonserver and its Python-backend stubs
   (the whole process tree, with psutil) as the baseline.
2. perf_analyzer: `--requests` requests at `--concurrency` against the ensemble (input data written
   to out/bench/load-sotai.json from the request parameters given here: small by default).
3. locust, headless: the same number of `POST /v1/images` requests with the same parameters, from
   `--concurrency` users, through the gateway (in this process, on a free port) to the same Triton.
Errors are counted twice: by the load tool, and by Triton's own statistics (painting calls that
succeeded, failed calls of any model).
RSS is sampled every second; the growth judged is the RSS at the end of each phase against the
baseline (the peak is printed beside it). Exit status 1 when a limit is broken.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sotai.contracts import DIFFUSION, DIFFUSION_STREAM, SOTAI
from sotai.errors import SotaiError
from sotai.params import GenerationParams, params_json
from sotai.settings import PROJECT_ROOT, get_settings

SCENES = ["銀髪の少女が夜の桜の下で微笑んでいる", "雨の街角で傘をさす制服の女の子", "海辺で夕日を眺める猫耳の少女",
          "教室の窓辺で本を読む眼鏡の男の子"]
LOCUSTFILE = Path(__file__).with_name("load_locustfile.py")
MAX_GROWTH = 0.20


@dataclass
class MemoryWatch:
    """RSS of a process and all its descendants, sampled in a thread."""

    pid: int
    interval_s: float = 1.0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def rss(self) -> int:
        import psutil

        root = psutil.Process(self.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:  # a stub that just ended
                pass
        return total

    def __enter__(self) -> "MemoryWatch":
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.rss()))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.rss()))

    @property
    def peak(self) -> int:
        return max(r for _, r in self.samples)

    @property
    def last(self) -> int:
        return self.samples[-1][1]


@dataclass(frozen=True)
class Phase:
    name: str
    tool: str
    requests: int
    errors: int
    seconds: float
    throughput: float  # requests per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    triton_success: int  # Triton's own counts over the phase: images painted (PAINTING_MODELS)
    triton_failures: int  # failed calls of any model
    rss_start_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    rss_growth: float  # end against the post-warm-up baseline


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser("load")
    p.add_argument("--repo", type=Path, default=None, help="model repository (default: the profile's)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=1000, help="requests per phase (perf_analyzer, then locust)")
    p.add_argument("--warmup", type=int, default=64, help="requests sent before the memory baseline is taken")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--skip-gateway", action="store_true", help="perf_analyzer on Triton only")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench")
    p.add_argument("--perf-analyzer", default=None, help="perf_analyzer binary (default: SOTAI_PERF_ANALYZER, PATH, then ../shared/tools)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    p.set_defaults(func=cmd_bench_load)


def input_data(params: GenerationParams, path: Path) -> Path:
    """perf_analyzer's --input-data: one entry per scene, the same parameters locust sends."""
    from sotai.params import tensor_values

    # The ensemble's required inputs (perf_analyzer sends every input it is given data for).
    required = [t.name for t in SOTAI.inputs if not t.optional and t.name != "TEXT"]
    entries = []
    for i, scene in enumerate(SCENES):
        values = {**tensor_values(replace(params, seed=i + 1)), "TEXT": scene}
        entries.append({name: {"content": [values[name]], "shape": [1]} for name in ("TEXT", *required)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": entries}, ensure_ascii=False))
    return path


# Every image request ends in one call of one of these, through the ensemble (perf_analyzer) or the
# gateway's model-by-model route (which never calls the `sotai` ensemble).
PAINTING_MODELS = (DIFFUSION.name, DIFFUSION_STREAM.name)


def triton_counts(http_url: str) -> tuple[int, int]:
    """(painting calls that succeeded, failed calls of any model) as Triton has counted them so far."""
    import tritonclient.http as httpclient

    stats = httpclient.InferenceServerClient(http_url).get_inference_statistics()
    by_model = {m["name"]: m["inference_stats"] for m in stats["model_stats"]}
    painted = sum(int(by_model[m]["success"]["count"]) for m in PAINTING_MODELS if m in by_model)
    return painted, sum(int(s["fail"]["count"]) for s in by_model.values())


def settled_counts(http_url: str, quiet_s: float = 2.0, timeout_s: float = 300.0) -> tuple[int, int]:
    """triton_counts once nothing is in flight (a load tool may leave requests running when it
    stops: they belong to its phase, not the next one)."""
    deadline = time.monotonic() + timeout_s
    counts = triton_counts(http_url)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = triton_counts(http_url)
        if now == counts:
            return now
        counts = now
    return counts


def run_perf_analyzer(binary: str, url: str, data: Path, concurrency: int, requests: int, csv_file: Path) -> dict:
    from sotai.bench.triton import perf_command, run_perf

    result, table = run_perf(lambda data_file, table_file: perf_command(
        binary, "sotai", url, "grpc", concurrency, requests, data_file, table_file, windows=False)
        + ["--percentile", "95"], data)
    if result.returncode != 0 or table is None:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise SotaiError(f"perf_analyzer failed (exit {result.returncode}):\n{tail}")
    with open(csv_file, "w", newline="") as f:
        csv.writer(f).writerows(table)
    row = dict(zip(table[0], table[1]))
    return {"throughput": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1000,
            "p95_ms": float(row["p95 latency"]) / 1000, "p99_ms": float(row["p99 latency"]) / 1000}


def run_locust(gateway_url: str, params: GenerationParams, users: int, requests: int, prefix: Path) -> dict:
    body = {"steps": params.steps, "cfg_scale": params.cfg_scale, "width": params.width, "height": params.height,
            "num_images": params.num_images, "scheduler": params.scheduler, "rating": params.rating}
    env = {**os.environ, "SOTAI_LOAD_REQUESTS": str(requests), "SOTAI_LOAD_BODY": json.dumps(body),
           "SOTAI_LOAD_SCENES": json.dumps(SCENES, ensure_ascii=False)}
    # --json: the final statistics (the CSV writer can miss the last requests); --run-time only as a
    # safety net: the locustfile stops the run after `requests` answers.
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
         "--run-time", "30m", "--host", gateway_url, "--json", "--skip-log", "--stop-timeout", "120"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env)
    try:
        entries = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SotaiError(f"locust printed no statistics (exit {result.returncode}):\n{result.stderr[-2000:]}") from None
    Path(f"{prefix}.json").write_text(json.dumps(entries, indent=1))
    histogram: dict[float, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    done = sum(e["num_requests"] for e in entries)
    first = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    return {"requests": done, "errors": sum(e["num_failures"] for e in entries),
            "throughput": round(done / max(last - first, 1e-9), 3), "p50_ms": percentile(histogram, 50),
            "p95_ms": percentile(histogram, 95), "p99_ms": percentile(histogram, 99)}


def percentile(histogram: dict[float, int], q: float) -> float:
    """The q-th percentile of locust's response-time histogram ({rounded ms: count})."""
    total = sum(histogram.values())
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= total * q / 100:
            return ms
    return 0.0


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


def phase(name: str, tool: str, pid: int, http_url: str, baseline: int, run) -> Phase:
    before = settled_counts(http_url)
    started = time.monotonic()
    with MemoryWatch(pid) as memory:
        figures = run()
        seconds = time.monotonic() - started
        after = settled_counts(http_url)
    success, failures = after[0] - before[0], after[1] - before[1]
    requests = figures.pop("requests", success + failures)
    errors = figures.pop("errors", failures)
    return Phase(name=name, tool=tool, requests=requests, errors=errors, seconds=round(seconds, 1),
                 triton_success=success, triton_failures=failures, rss_start_mib=_mib(memory.samples[0][1]),
                 rss_end_mib=_mib(memory.last), rss_peak_mib=_mib(memory.peak),
                 rss_growth=round(memory.last / baseline - 1, 4), **figures)


def cmd_bench_load(args) -> int:
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread
    from sotai.bench.triton import find_perf_analyzer
    from sotai.serving.server import TritonServer, free_port

    settings = get_settings()
    params = GenerationParams(steps=args.steps, width=args.width, height=args.height, seed=1).checked()
    binary = find_perf_analyzer(args.perf_analyzer)
    repo = args.repo or settings.repository_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    data = input_data(params, args.out / "load-sotai.json")
    phases: list[Phase] = []
    with ExitStack() as stack:
        server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                              log_file=args.out / "load-triton.log")
        print(f"starting Triton on {repo} ...", file=sys.stderr, flush=True)
        stack.enter_context(server)
        pid = server.process.pid
        print(f"warm-up: {args.warmup} requests at concurrency {args.concurrency}", file=sys.stderr, flush=True)
        run_perf_analyzer(binary, server.grpc_url, data, args.concurrency, args.warmup, args.out / ".load-warmup.csv")
        baseline = MemoryWatch(pid).rss()
        print(f"baseline RSS (tritonserver + stubs): {_mib(baseline)} MiB", file=sys.stderr, flush=True)

        print(f"perf_analyzer: {args.requests} requests at concurrency {args.concurrency} -> {server.grpc_url}",
              file=sys.stderr, flush=True)
        phases.append(phase("triton", "perf_analyzer", pid, server.http_url, baseline, lambda: run_perf_analyzer(
            binary, server.grpc_url, data, args.concurrency, args.requests, args.out / "load-perf.csv")))

        if not args.skip_gateway:
            app = create_app(settings, triton_urls=server.grpc_url, api_key="", ui=False)
            gateway = ServerThread(app, free_port()).start()
            stack.callback(gateway.stop)
            print(f"locust: {args.requests} requests from {args.concurrency} users -> gateway {gateway.url}",
                  file=sys.stderr, flush=True)
            phases.append(phase("gateway", "locust", pid, server.http_url, baseline, lambda: run_locust(
                gateway.url, params, args.concurrency, args.requests, args.out / "load-gateway")))

    ok = all(p.errors == 0 and p.triton_failures == 0 and p.requests >= args.requests and p.rss_growth < MAX_GROWTH
             for p in phases)
    print_phases(phases, baseline, params, args.concurrency)
    print(f"verdict: {'PASS' if ok else 'FAIL'} (0 errors, >= {args.requests} requests per phase, "
          f"RSS growth after warm-up < {MAX_GROWTH:.0%})")
    if args.json:
        print(json.dumps({"concurrency": args.concurrency, "params": params_json(params), "baseline_rss_mib": _mib(baseline),
                          "phases": [asdict(p) for p in phases], "pass": ok}, ensure_ascii=False))
    return 0 if ok else 1


def print_phases(phases: list[Phase], baseline: int, params: GenerationParams, concurrency: int) -> None:
    print(f"load: concurrency {concurrency}, steps {params.steps}, {params.width}x{params.height}, "
          f"{os.cpu_count()} CPUs; RSS baseline after warm-up {_mib(baseline)} MiB (tritonserver + stubs)")
    print(f"{'phase':<8} {'tool':<14} {'requests':>8} {'errors':>6} {'triton ok/fail':>14} {'req/s':>6} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'RSS end':>8} {'peak':>8} {'growth':>7}")
    for p in phases:
        print(f"{p.name:<8} {p.tool:<14} {p.requests:>8} {p.errors:>6} {f'{p.triton_success}/{p.triton_failures}':>14} "
              f"{p.throughput:>6.2f} {p.p50_ms:>8.0f} {p.p95_ms:>8.0f} {p.p99_ms:>8.0f} {p.rss_end_mib:>8.1f} "
              f"{p.rss_peak_mib:>8.1f} {p.rss_growth:>+7.1%}")
