"""`sotai bench load`'s parts that can be wrong quietly: the perf_analyzer input data, the memory
of a whole process tree, locust's percentiles. (The benchmark itself prints numbers; it is not a
timed test.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sotai.contracts import SOTAI
from sotai.params import GenerationParams
from sotai.bench.load import MemoryWatch, input_data, percentile


def test_input_data_fills_every_ensemble_input_with_valid_values(tmp_path):
    params = GenerationParams(steps=1, width=512, height=512, seed=1).checked()
    entries = json.loads(input_data(params, tmp_path / "load.json").read_text())["data"]
    assert len(entries) >= 3
    for entry in entries:
        assert set(entry) == {t.name for t in SOTAI.inputs if not t.optional}
        values = {name.lower(): e["content"][0] for name, e in entry.items() if name != "TEXT"}
        GenerationParams(**values).checked()
        assert entry["TEXT"]["content"][0].strip()


def test_memory_is_summed_over_the_process_tree():
    # a shell whose child holds 64 MiB: the shell alone is a few MiB
    child = "import time; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    shell = subprocess.Popen(["/bin/sh", "-c", f'{sys.executable} -c "{child}"; true'])
    try:
        watch = MemoryWatch(shell.pid)
        deadline = time.monotonic() + 30
        while watch.rss() < 64 * 2**20:
            assert time.monotonic() < deadline, "the child's memory was not counted"
            time.sleep(0.1)
    finally:
        import psutil

        for proc in psutil.Process(shell.pid).children(recursive=True):
            proc.kill()
        shell.kill()
        shell.wait()


def test_percentiles_of_a_response_time_histogram():
    histogram = {100.0: 50, 200.0: 45, 900.0: 4, 5000.0: 1}
    assert percentile(histogram, 50) == 100.0
    assert percentile(histogram, 95) == 200.0
    assert percentile(histogram, 99) == 900.0
    assert percentile(histogram, 100) == 5000.0


def test_the_printed_parameters_are_json_and_read_back_as_sent():
    # `sotai bench load --json` printed dataclasses.asdict(params), whose init_image (bytes) json cannot write.
    import io

    from PIL import Image

    from sotai.params import GENERATION_PARAMS, params_json

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(png, format="PNG")
    params = GenerationParams(steps=2, init_image=png.getvalue(), denoising_strength=0.5).checked()
    sent = json.loads(json.dumps(params_json(params)))
    back = GenerationParams(**{p.name: p.from_json(sent[p.name]) for p in GENERATION_PARAMS}).checked()
    assert back == params


def test_triton_counts_every_painted_image_whichever_route_it_took(triton, client):
    # The gateway goes model by model and never calls the `sotai` ensemble: counting the ensemble alone
    # gave its load phase "0/0" and judged no failure at all.
    from dataclasses import replace

    from sotai.bench.load import settled_counts
    from sotai.client import GenerateRequest

    before = settled_counts(triton.http_url)
    request = GenerateRequest("銀髪の少女", GenerationParams(steps=1, width=512, height=512, seed=3))
    routes = [client.generate(request).route, client.generate(replace(request, timeout_s=600.0)).route,
              client.generate(request, on_progress=lambda event: None).route]
    after = settled_counts(triton.http_url)
    assert routes[0] == "sotai" and routes[1] != "sotai"
    # at least: a request an earlier test abandoned may still finish inside this window (the ensemble
    # alone counted 1 of these 3)
    assert after[0] - before[0] >= 3
