"""The `sotai` command against the session's Triton."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"


def sotai(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sotai.cli", *args], capture_output=True, text=True, timeout=300)


def test_generate_writes_the_png_shows_progress_and_prints_the_seed(triton, tmp_path):
    out = tmp_path / "scene.png"
    run = sotai("generate", SCENE, "-o", str(out), "--steps", "3", "--size", "832x1216", "--seed", "11",
                "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert Image.open(out).size == (832, 1216)
    assert "seed: 11" in run.stdout
    assert "prompt: " in run.stdout
    assert "diffusion 3/3" in run.stderr  # the streamed progress bar reached the last step


def test_generate_over_http_paints_the_same_image(triton, tmp_path):
    grpc_png, http_png = tmp_path / "g.png", tmp_path / "h.png"
    common = ["--steps", "1", "--width", "512", "--height", "512", "--seed", "4"]
    assert sotai("generate", SCENE, "-o", str(grpc_png), *common, "--url", triton.grpc_url).returncode == 0
    run = sotai("generate", SCENE, "-o", str(http_png), *common, "--protocol", "http", "--url", triton.http_url)
    assert run.returncode == 0, run.stderr
    assert grpc_png.read_bytes() == http_png.read_bytes()


def test_tags_json_lists_tags_with_reasons_and_the_prompt(triton):
    run = sotai("tags", SCENE, "--json", "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["prompt"]
    assert {"tag", "score", "category", "reason"} <= set(result["tags"][0])


def test_a_bad_value_is_refused_with_the_field_and_the_limit(triton):
    run = sotai("generate", SCENE, "--steps", "0", "--url", triton.grpc_url)
    assert run.returncode == 1
    assert "steps=0 is invalid: must be in 1..100" in run.stderr
