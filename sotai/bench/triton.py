"""`sotai bench triton`: perf_analyzer against the `sotai` ensemble and each stage, at several concurrencies.

Inputs come from bench/<model>.json (perf_analyzer's --input-data format, kept in the repository).
Writes out/bench/triton-<model>.csv (perf_analyzer's own CSV, one row per concurrency),
out/bench/triton.csv (a summary) and out/bench/triton.png (throughput against latency), and prints
the summary. Then the gateway's HTTP API is loaded from the same Triton with locust, headless
(bench/locustfile.py): out/bench/gateway_stats.csv. Without --url it starts the embedded Triton on
the profile's repository for the run; the gateway always runs in-process on a free port.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from sotai.errors import MissingArtifact, SotaiError
from sotai.settings import PROJECT_ROOT, get_settings

BENCH_DIR = PROJECT_ROOT / "bench"
MODELS = ("sotai", "rag", "dart", "diffusion")
CONCURRENCY = (1, 2, 4, 8)
# The documented last resort when neither --perf-analyzer, SOTAI_PERF_ANALYZER nor PATH has one:
# where the development machine keeps perf_analyzer beside the checkout (see ../shared/tools/README.md).
SHARED_PERF_ANALYZER = PROJECT_ROOT.parent / "shared" / "tools" / "bin" / "perf_analyzer"


@dataclass(frozen=True)
class Point:
    model: str
    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    # False when perf_analyzer's windows never settled and the point is one fixed-count run instead
    # (busy or shared cores): the figure is real but noisier, and the table says so.
    stable: bool = True


def find_perf_analyzer(explicit: str | None = None) -> str:
    """--perf-analyzer, then SOTAI_PERF_ANALYZER, then PATH, then the checkout-relative fallback."""
    configured = get_settings().perf_analyzer
    for candidate in (explicit, str(configured) if configured else None, shutil.which("perf_analyzer"),
                      str(SHARED_PERF_ANALYZER) if SHARED_PERF_ANALYZER.is_file() else None):
        if candidate:
            return candidate
    raise SotaiError("perf_analyzer not found: `pip install perf-analyzer` (glibc >= 2.38), use the Triton SDK "
                     "image, then set SOTAI_PERF_ANALYZER or pass --perf-analyzer PATH")


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser("triton")
    p.add_argument("--url", default=None, help="a running Triton (HOST:PORT); default: start the embedded one")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    p.add_argument("--requests", type=int, default=16,
                   help="requests per measurement window (x concurrency / 2 for concurrency above 2)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench")
    p.add_argument("--perf-analyzer", default=None, help="perf_analyzer binary (default: SOTAI_PERF_ANALYZER, PATH, then ../shared/tools)")
    p.add_argument("--gateway-users", type=int, default=8, help="locust users (closed loop); 0 skips the gateway")
    p.add_argument("--gateway-time", default="60s", help="locust --run-time")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.set_defaults(func=cmd_bench_triton)


def perf_command(binary: str, model: str, url: str, protocol: str, concurrency: int, requests: int,
                 input_data: str, csv_file: str, windows: bool = True) -> list[str]:
    command = [binary, "-m", model, "-u", url, "-i", protocol, "--input-data", input_data,
               "--concurrency-range", f"{concurrency}:{concurrency}", "-f", csv_file]
    if not windows:
        # One run of exactly `requests` requests, no stability judgement (perf_analyzer's --request-count).
        return command + ["--request-count", str(requests)]
    # Count windows, not time windows: a slow CPU request still gets a full sample. Stability is
    # judged on the average latency (p99 of a few samples on shared cores never settles); the CSV
    # still reports p50/p90/p95/p99.
    return command + ["--measurement-mode", "count_windows", "--measurement-request-count", str(requests),
                      "--stability-percentage", "50", "--max-trials", "10"]


def run_perf(command: Callable[[str, str], list[str]], input_data: Path) -> tuple[subprocess.CompletedProcess, list[list[str]] | None]:
    """perf_analyzer on a copy of `input_data` in a fresh temporary folder: (result, its CSV's rows or None).

    `command(input, csv)` builds the command line from the two paths, relative to the system's
    temporary directory, where it runs. Why there: perf_analyzer may run where only its working
    directory and /tmp are visible (../shared/tools' chroot wrapper, an SDK container), and that
    wrapper keeps its bind mounts: a checkout deleted and cloned again at the same path (CI) stays the
    old, empty folder to it, and the bench input read from there was missing (a CI run failed so).
    """
    with tempfile.TemporaryDirectory(prefix="sotai-perf-") as scratch:
        folder = Path(scratch)
        shutil.copyfile(input_data, folder / "input.json")
        result = subprocess.run(command(f"{folder.name}/input.json", f"{folder.name}/perf.csv"),
                                capture_output=True, text=True, cwd=folder.parent)
        if not (folder / "perf.csv").is_file():
            return result, None
        with open(folder / "perf.csv", newline="") as f:
            return result, list(csv.reader(f))


def read_perf_csv(path: Path, model: str, unstable: frozenset[int] = frozenset()) -> list[Point]:
    """perf_analyzer's CSV (latencies in microseconds) -> Points; `unstable`: concurrencies measured once."""
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            us = lambda key: float(row[key]) / 1000.0  # noqa: E731
            points.append(Point(model=model, concurrency=int(row["Concurrency"]),
                                throughput=float(row["Inferences/Second"]), p50_ms=us("p50 latency"),
                                p90_ms=us("p90 latency"), p95_ms=us("p95 latency"), p99_ms=us("p99 latency"),
                                stable=int(row["Concurrency"]) not in unstable))
    return points


def run_model(binary: str, model: str, url: str, protocol: str, levels: list[int], requests: int, out: Path) -> list[Point]:
    input_data = BENCH_DIR / f"{model}.json"
    if not input_data.is_file():
        raise MissingArtifact("perf_analyzer input data", input_data, "git checkout bench/")
    merged = out / f"triton-{model}.csv"
    header, rows, unstable = None, [], set()
    for level in levels:
        n = requests * max(1, level // 2)
        started = time.monotonic()
        # Shared or busy cores (2-core CI) may keep the windows from settling: windows twice as long
        # first, then one fixed run of 4n requests, kept and marked unstable rather than failing the run.
        attempts = [(n, True), (2 * n, True), (4 * n, False)]
        for (count, windows), then in zip(attempts, attempts[1:] + [None]):
            result, table = run_perf(lambda data, csv_file: perf_command(
                binary, model, url, protocol, level, count, data, csv_file, windows), input_data)
            settled = "Failed to obtain stable measurement" not in result.stdout + result.stderr
            if result.returncode == 0 or settled or then is None:
                break
            again = f"{then[0]}-request windows" if then[1] else f"one run of {then[0]} requests, marked unstable"
            print(f"  {model:<10} concurrency {level}: not stable in {count}-request windows; now {again}", flush=True)
        if not windows:
            unstable.add(level)
        if result.returncode != 0 or table is None:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise SotaiError(f"perf_analyzer failed for {model} at concurrency {level}:\n{tail}")
        header = table[0]
        rows += table[1:]
        print(f"  {model:<10} concurrency {level}: done in {time.monotonic() - started:.0f} s", flush=True)
    with open(merged, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return read_perf_csv(merged, model, frozenset(unstable))


def write_summary(points: list[Point], out: Path) -> Path:
    path = out / "triton.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Point.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(p) for p in points)
    return path


def plot(points: list[Point], path: Path, title: str) -> Path:
    """Throughput against p50 latency, one line per model, each point labelled with its concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for model in dict.fromkeys(p.model for p in points):
        mine = sorted((p for p in points if p.model == model), key=lambda p: p.concurrency)
        ax.plot([p.p50_ms for p in mine], [p.throughput for p in mine], marker="o", label=model)
        for p in mine:
            ax.annotate(f"c{p.concurrency}", (p.p50_ms, p.throughput), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")  # stages differ by 30x in throughput
    ax.set_xlabel("p50 latency (ms, log scale)")
    ax.set_ylabel("throughput (inferences/s, log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_table(points: list[Point]) -> None:
    print(f"{'model':<10} {'conc':>4} {'infer/s':>9} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}")
    for p in points:
        note = "" if p.stable else "  (unstable: one fixed-count run)"
        print(f"{p.model:<10} {p.concurrency:>4} {p.throughput:>9.2f} {p.p50_ms:>9.1f} {p.p90_ms:>9.1f} "
              f"{p.p99_ms:>9.1f}{note}")


def cmd_bench_triton(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SotaiError(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    levels = [int(c) for c in args.concurrency.split(",")]
    binary = find_perf_analyzer(args.perf_analyzer)
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        url = args.url
        if url is None:
            url = stack.enter_context(_embedded_triton(args.protocol))
        print(f"perf_analyzer ({binary}) -> {url} [{args.protocol}], concurrency {levels}", flush=True)
        points = []
        for model in models:
            points += run_model(binary, model, url, args.protocol, levels, args.requests, args.out)
        gateway = None
        if args.gateway_users > 0:
            gateway = load_gateway(url, args.protocol, args.gateway_users, args.gateway_time, args.out)
    summary = write_summary(points, args.out)
    image = plot(points, args.out / "triton.png",
                 f"Triton ({get_settings().profile} profile, {os.cpu_count()} CPUs): throughput vs latency")
    print_table(points)
    print(f"wrote {summary}, {image} and triton-<model>.csv (perf_analyzer's CSV) in {args.out}")
    if gateway is not None:
        print_gateway(gateway)
    if args.json:
        print(json.dumps({"triton": [asdict(p) for p in points], "gateway": gateway}))
    return 0


def load_gateway(triton_url: str, protocol: str, users: int, run_time: str, out: Path) -> list[dict]:
    """The gateway in-process in front of `triton_url`, loaded by locust headless; its stats rows."""
    from sotai.gateway import create_app
    from sotai.gateway.background import ServerThread
    from sotai.serving.server import free_port

    server = ServerThread(create_app(get_settings(), triton_urls=triton_url, protocol=protocol, ui=False),
                          free_port()).start()
    prefix = out / "gateway"
    try:
        print(f"locust: {users} users for {run_time} -> gateway {server.url}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(BENCH_DIR / "locustfile.py"), "--headless",
             "-u", str(users), "-r", str(users), "--run-time", run_time, "--host", server.url,
             "--csv", str(prefix), "--only-summary", "--stop-timeout", "120"],
            capture_output=True, text=True, cwd=PROJECT_ROOT)
    finally:
        server.stop()
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        raise SotaiError(f"locust wrote no statistics (exit {result.returncode}):\n{result.stderr[-2000:]}")
    with open(stats, newline="") as f:
        return list(csv.DictReader(f))


def print_gateway(rows: list[dict]) -> None:
    print(f"{'gateway':<12} {'requests':>8} {'failures':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['Name']:<12} {row['Request Count']:>8} {row['Failure Count']:>8} "
              f"{float(row['Requests/s']):>7.2f} {row['50%']:>8} {row['95%']:>8} {row['99%']:>8}")


class _embedded_triton:
    """The profile's repository on the embedded tritonserver, for the length of the benchmark."""

    def __init__(self, protocol: str):
        self.protocol = protocol

    def __enter__(self) -> str:
        from sotai.serving.server import TritonServer, free_port

        settings = get_settings()
        repo = settings.repository_dir()
        log = settings.profile_dir() / "triton-bench.log"
        self.server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                   log_file=log)
        print(f"starting Triton on {repo} (log: {log}) ...", file=sys.stderr, flush=True)
        self.server.start()
        return self.server.grpc_url if self.protocol == "grpc" else self.server.http_url

    def __exit__(self, *exc) -> None:
        self.server.stop()
