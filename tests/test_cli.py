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


HEAVY = ("torch", "diffusers", "onnx", "onnxruntime", "transformers", "gradio")


def _modules_loaded_by(*argv: str) -> tuple[list[str], str]:
    """Runs `sotai ARGV` in a fresh interpreter; the heavy packages it imported, and its output."""
    probe = ("import sys, sotai.cli\n"
             "try:\n    sotai.cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loaded = next(line for line in run.stdout.splitlines() if line.startswith("LOADED"))
    return eval(loaded.removeprefix("LOADED "), {}), run.stdout


def test_help_and_the_gateway_import_no_torch_nor_gradio():
    from sotai.cli import BENCH_COMMANDS, TOP_COMMANDS

    loaded, out = _modules_loaded_by("--help")
    assert loaded == []
    assert all(name in out for name in TOP_COMMANDS)
    loaded, out = _modules_loaded_by("gateway", "--help")
    assert loaded == [] and "--triton-url" in out  # the gateway's own full parser
    loaded, out = _modules_loaded_by("bench", "--help")
    assert loaded == [] and all(name in out for name in BENCH_COMMANDS)


def test_every_declared_sub_command_is_built_by_its_module():
    from sotai.cli import BENCH_COMMANDS, TOP_COMMANDS, build_parser

    for prefix, table in (([], TOP_COMMANDS), (["bench"], BENCH_COMMANDS)):
        for name in table:
            argv = [*prefix, name, "--help"]
            parser = build_parser(argv)
            actions = {choice: sub for action in parser._subparsers._group_actions
                       for choice, sub in action.choices.items()}
            sub = actions["bench"]._subparsers._group_actions[0].choices[name] if prefix else actions[name]
            # the module's full parser (more than --help alone), not the listing placeholder
            assert len(sub._actions) > 1, f"{' '.join(argv)}: {table[name][0]} did not register {name!r}"


def test_no_module_outside_sotai_bench_imports_it():
    import ast

    from sotai.settings import PROJECT_ROOT

    offenders = []
    for folder in ("sotai", "export", "client", "gateway", "model_repository"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            if (PROJECT_ROOT / "sotai" / "bench") in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "sotai.bench" or n.startswith("sotai.bench.") for n in names):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == [], f"the runtime core imports the benchmarks: {offenders}"


def test_generate_with_an_init_image_paints_img2img(triton, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (200, 300), (30, 200, 60)).save(init)
    out = tmp_path / "i2i.png"
    run = sotai("generate", SCENE, "-o", str(out), "--steps", "4", "--width", "512", "--height", "512",
                "--seed", "2", "--init-image", str(init), "--denoising-strength", "0.5", "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert "Denoising strength: 0.5" in Image.open(out).text["parameters"]
    assert "diffusion 2/2" in run.stderr  # int(4 x 0.5) steps
    missing = sotai("generate", SCENE, "-o", str(out), "--init-image", str(tmp_path / "none.png"),
                    "--url", triton.grpc_url)
    assert missing.returncode != 0 and "--init-image" in missing.stderr and "none.png" in missing.stderr
