"""`sotai bench triton`: its input data fit the models, its parsing and plot, and one short real run."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from sotai.contracts import PIPELINE_CONTRACTS
from sotai.errors import SotaiError
from sotai.bench import triton as bench

JSON_TYPES = {"STRING": str, "INT32": int, "INT64": int, "FP32": (int, float)}


@pytest.mark.parametrize("model", bench.MODELS)
def test_input_data_fit_the_model_contract(model):
    contract = PIPELINE_CONTRACTS[model]
    data = json.loads((bench.BENCH_DIR / f"{model}.json").read_text())["data"]
    assert len(data) >= 3, "several different requests, not one repeated"
    names = {t.name: t for t in contract.inputs}
    for entry in data:
        assert set(entry) <= set(names), f"unknown inputs {set(entry) - set(names)}"
        assert {n for n, t in names.items() if not t.optional} <= set(entry)
        for name, value in entry.items():
            assert value["shape"] == list(names[name].dims)
            assert all(isinstance(v, JSON_TYPES[names[name].dtype]) for v in value["content"])


def test_perf_csv_becomes_points_summary_and_plot(tmp_path):
    sample = tmp_path / "triton-rag.csv"
    sample.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,87.9,6,192,2136,27,8527,445,3,11432,12593,13689,14580\n"
        "2,95.9,6,408,2107,40,17627,529,2,20566,23340,24456,25900\n")
    points = bench.read_perf_csv(sample, "rag")
    assert [(p.concurrency, p.throughput, p.p50_ms, p.p99_ms) for p in points] == [(1, 87.9, 11.432, 14.58),
                                                                                    (2, 95.9, 20.566, 25.9)]
    summary = bench.write_summary(points, tmp_path)
    assert [row["model"] for row in csv.DictReader(summary.open())] == ["rag", "rag"]
    png = bench.plot(points, tmp_path / "triton.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_perf_analyzer_setting_comes_before_path_and_the_checkout_fallback(tmp_path, monkeypatch):
    from sotai.settings import get_settings

    binary = tmp_path / "perf_analyzer"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("SOTAI_PERF_ANALYZER", str(binary))
    get_settings.cache_clear()
    try:
        assert bench.find_perf_analyzer() == str(binary)
        assert bench.find_perf_analyzer("/opt/explicit/perf_analyzer") == "/opt/explicit/perf_analyzer"
    finally:
        monkeypatch.delenv("SOTAI_PERF_ANALYZER")
        get_settings.cache_clear()


def test_a_short_real_run_against_triton_and_the_gateway(triton, tmp_path, capsys):
    # Only a missing binary skips (a machine without ../shared/tools); any other error fails the test.
    try:
        binary = bench.find_perf_analyzer()
    except SotaiError as exc:
        if "perf_analyzer not found" not in str(exc):
            raise
        pytest.skip(str(exc))
    assert shutil.which("locust") or _module("locust"), "locust is a test dependency (requirements.lock)"
    from sotai.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "triton", "--url", triton.grpc_url, "--models", "rag", "--concurrency", "1",
                 "--requests", "40", "--out", str(out), "--gateway-users", "1", "--gateway-time", "10s", "--json",
                 "--perf-analyzer", binary])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (point,) = result["triton"]
    assert point["model"] == "rag" and point["throughput"] > 0 and point["p50_ms"] > 0
    aggregated = next(r for r in result["gateway"] if r["Name"] == "Aggregated")
    assert int(aggregated["Request Count"]) > 0 and aggregated["Failure Count"] == "0"
    assert (out / "triton.png").is_file() and (out / "triton-rag.csv").is_file()


def test_windows_that_never_settle_end_in_one_fixed_run_marked_unstable(triton, tmp_path, capsys):
    # A wrapper in front of the real perf_analyzer answers every windowed run as a busy 2-core machine
    # does; the fixed-count run (--request-count) then reaches the real binary and the real Triton.
    wrapper = _wrapper(tmp_path, "case \"$*\" in *--measurement-mode*) "
                       "echo 'Failed to obtain stable measurement within 10 measurement windows'; exit 1;; esac")
    out = tmp_path / "bench-unstable"
    out.mkdir()
    (point,) = bench.run_model(wrapper, "rag", triton.grpc_url, "grpc", [1], 10, out)
    printed = capsys.readouterr().out
    assert "not stable in 10-request windows; now 20-request windows" in printed
    assert "not stable in 20-request windows; now one run of 40 requests, marked unstable" in printed
    assert not point.stable and point.throughput > 0 and point.p50_ms > 0
    bench.print_table([point])
    assert "(unstable: one fixed-count run)" in capsys.readouterr().out


def test_perf_analyzer_is_given_its_files_inside_its_working_directory(triton, tmp_path):
    # perf_analyzer may see only its working directory and /tmp (../shared/tools runs it in a chroot
    # whose bind mount of a re-cloned checkout is stale: CI once failed so on bench/rag.json). This
    # wrapper stands for such a view: an absolute or climbing path is an error, then the real binary runs.
    wrapper = _wrapper(tmp_path, "for a in \"$@\"; do case \"$a\" in /*|*..*) "
                       "echo \"outside the working directory: $a\"; exit 3;; esac; done")
    (point,) = bench.run_model(wrapper, "rag", triton.grpc_url, "grpc", [1], 10, tmp_path)
    assert point.throughput > 0


def _wrapper(folder, script: str) -> str:
    """A perf_analyzer that runs `script` (sh) first, then execs the real one (skips without one)."""
    try:
        real = bench.find_perf_analyzer()
    except SotaiError as exc:
        pytest.skip(str(exc))
    wrapper = folder / "perf_analyzer"
    wrapper.write_text(f"#!/bin/sh\n{script}\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
