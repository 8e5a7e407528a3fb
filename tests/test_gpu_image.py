"""The GPU serving image, checked here without Docker or a GPU: its pins exist on the registry for the
image's Python and CUDA, its Python environment is the dev venv's script, and its Python-backend stub
finds its libraries where the Dockerfile puts it (the same function the embedded server uses)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sotai.settings import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "docker" / "triton.Dockerfile"
GPU_REQUIREMENTS = PROJECT_ROOT / "docker" / "requirements-gpu.txt"
INSTALL_ENV = PROJECT_ROOT / "docker" / "install_env.sh"
LOCK = PROJECT_ROOT / "requirements.lock"
# NGC tritonserver:24.10-py3 runs x86_64 Ubuntu 22.04 (glibc 2.35); our venv there is Python 3.11.
IMAGE_PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.lower()] = version
    return out


# -- the Python-backend stub ------------------------------------------------------------------------


def test_the_dockerfile_links_the_stub_with_the_servers_own_function():
    from sotai.serving.server import IMAGE_PYTHON_BACKEND

    runs = [args for word, args in dockerfile_instructions(DOCKERFILE.read_text()) if word == "RUN"]
    installs = [shlex.split(cmd) for run in runs for cmd in run.split("&&")
                if "sotai.serving.server" in cmd]
    assert installs, "the Dockerfile must install the stub with `python -m sotai.serving.server install-stub`"
    for argv in installs:
        assert argv[-2:] == ["install-stub", str(IMAGE_PYTHON_BACKEND)], argv
    assert not any("triton_python_backend_stub" in run for run in runs), "a copied stub cannot find its libraries"
    env = " ".join(args for word, args in dockerfile_instructions(DOCKERFILE.read_text()) if word == "ENV")
    assert "PYTHONPATH=/app:/opt/sotai/venv/lib/python3.11/site-packages" in env


def _run_stub(path: Path) -> subprocess.CompletedProcess:
    # A bare environment: no LD_LIBRARY_PATH, as Triton in the image starts it. With no arguments the
    # stub loads, says it expects 9 and exits 1; with a library missing the loader fails first (127).
    return subprocess.run([str(path)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)


def test_the_linked_stub_loads_its_libraries_without_a_library_path(tmp_path):
    from sotai.serving.server import install_python_stub, wheel_stub

    backend = tmp_path / "opt" / "tritonserver" / "backends" / "python"  # the image's depth
    linked = install_python_stub(backend)
    assert linked.is_symlink() and linked.resolve() == wheel_stub().resolve()
    result = _run_stub(linked)
    assert "error while loading shared libraries" not in result.stderr, result.stderr
    assert "Expected 9 arguments" in result.stdout + result.stderr
    # What the image used to do, for contrast: a copy's RPATH points nowhere.
    copy = tmp_path / "copy" / "triton_python_backend_stub"
    copy.parent.mkdir()
    copy.write_bytes(wheel_stub().read_bytes())
    copy.chmod(0o755)
    failed = _run_stub(copy)
    assert failed.returncode == 127 and "error while loading shared libraries" in failed.stderr
    # install twice (a rebuilt layer, a second `sotai serve`): still the one link.
    assert install_python_stub(backend) == linked and linked.is_symlink()


@pytest.mark.skipif(not Path("/usr/bin/readelf").exists(), reason="readelf (binutils) is not installed")
def test_the_stubs_rpath_names_the_wheels_library_folder_holding_every_bundled_library():
    from sotai.serving.server import wheel_stub

    stub = wheel_stub().resolve()
    dynamic = subprocess.run(["readelf", "-d", str(stub)], capture_output=True, text=True, check=True).stdout
    rpath = re.search(r"R(?:UN)?PATH\)\s+Library r(?:un)?path: \[(.*)\]", dynamic).group(1)
    folders = [Path(p.replace("$ORIGIN", str(stub.parent))).resolve() for p in rpath.split(":")]
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dynamic)
    bundled = [lib for lib in needed if re.search(r"-[0-9a-f]{8}\.so", lib)]  # auditwheel's hashed names
    assert bundled, needed
    for lib in bundled:
        assert any((folder / lib).is_file() for folder in folders), (lib, folders)
    assert folders[0].name == "nvidia_pytriton.libs"


# -- the image's Python environment -------------------------------------------------------------------


def _install_env_commands(*flags: str, torch_index: str | None = None) -> list[list[str]]:
    """The pip commands docker/install_env.sh runs, from its --dry-run (nothing is installed)."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX_URL"}
    if torch_index is not None:
        env["TORCH_INDEX_URL"] = torch_index
    result = subprocess.run(["bash", str(INSTALL_ENV), "/venv/bin/python", *flags, "--dry-run"],
                            env=env, capture_output=True, text=True, timeout=30, check=True)
    commands = [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]
    for argv in commands:
        # into the venv it was given
        assert argv[:4] == ["/venv/bin/python", "-m", "pip", "--disable-pip-version-check"], argv
    return [argv[4:] for argv in commands]


def _make_venv_recipe() -> list[str]:
    """The commands `make venv` runs, as make itself expands them (-n: print only; -B: as if fresh)."""
    result = subprocess.run(["make", "-n", "-B", "venv", "VENV=/venv"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=30, check=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not Path("/usr/bin/make").exists(), reason="make is not installed")
def test_make_venv_and_the_image_build_their_environment_with_one_script():
    recipe = _make_venv_recipe()
    assert "bash docker/install_env.sh /venv/bin/python" in recipe, recipe
    # Nothing but the project itself is pip-installed beside the script (else the two would drift).
    own_pips = [cmd for cmd in recipe if "pip install" in cmd]
    assert own_pips == ["/venv/bin/python -m pip install --quiet --no-deps -e ."], own_pips

    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runs = [args for word, args in instructions if word == "RUN"]
    assert any("bash docker/install_env.sh $VIRTUAL_ENV/bin/python --gpu" in run for run in runs), runs
    image_pips = [cmd.strip() for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    assert image_pips == ["pip install --no-deps -e ."], image_pips
    # The image's torch source is a build arg the script reads; the script names no index itself, so
    # `make venv` never waits on one (PyTorch's index is unreachable from the dev machine).
    args = dict(a.partition("=")[::2] for word, a in instructions if word == "ARG")
    assert args.get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu", args
    assert "download.pytorch.org" not in INSTALL_ENV.read_text()


def test_the_cpu_mode_installs_the_lock_with_its_torch_and_nothing_of_the_gpu():
    commands = _install_env_commands()
    lock_torch = pins(LOCK)["torch"]
    assert ["install", "--quiet", f"torch=={lock_torch}"] in commands
    torch_at = commands.index(["install", "--quiet", f"torch=={lock_torch}"])
    assert commands.index(["install", "--quiet", "-r", str(LOCK)]) > torch_at  # the CPU build comes first
    flat = [word for argv in commands for word in argv]
    assert "--extra-index-url" not in flat and "--index-url" not in flat
    assert str(GPU_REQUIREMENTS) not in flat and "uninstall" not in flat
    # everything else is --no-deps, at pins that match the project's (pyproject / the snapshot writer)
    extras = [argv for argv in commands if "--no-deps" in argv]
    assert sorted(argv[-1] for argv in extras) == ["open_clip_torch==3.3.0", "text2tags-lib==0.0.7"]


def test_the_gpu_mode_adds_the_gpu_requirements_in_place_of_the_cpu_onnxruntime():
    index = "https://download.pytorch.org/whl/cpu"
    commands = _install_env_commands("--gpu", torch_index=index)
    cpu = _install_env_commands()
    lock_torch = pins(LOCK)["torch"]
    torch = ["install", "--quiet", "--extra-index-url", index, f"torch=={lock_torch}+cpu"]
    # the CPU environment, but torch's +cpu build from the given index, then the GPU wheels
    assert [torch if argv[-1].startswith("torch==") else argv for argv in cpu] == commands[:len(cpu)]
    assert commands[len(cpu):] == [["uninstall", "--yes", "--quiet", "onnxruntime"],
                                   ["install", "--quiet", "--no-deps", "-r", str(GPU_REQUIREMENTS)]]
    assert "onnxruntime" in pins(LOCK)  # what the uninstall replaces


def test_the_script_refuses_an_unknown_option():
    result = subprocess.run(["bash", str(INSTALL_ENV), "/venv/bin/python", "--cpu"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown option '--cpu'" in result.stderr


def test_the_environment_the_tests_run_in_holds_every_pin_of_the_lock():
    """What the CPU mode installed is what runs here: each of the lock's pins at its version."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    wrong = []
    for name, pinned in sorted(pins(LOCK).items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name}: not installed")
            continue
        if Version(installed).public != Version(pinned).public:  # torch's +cpu label matches its pin
            wrong.append(f"{name}: {installed}, the lock has {pinned}")
    assert wrong == [], f"this environment is not requirements.lock's (run `make venv`): {wrong}"


def _resolve(requirement: str, tmp_path: Path) -> dict:
    """pip's resolution of one pin for the image (cp311, manylinux x86_64), metadata only (PEP 658)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--ignore-installed",
           "--only-binary=:all:", "--python-version", "3.11", "--target", str(tmp_path / "none"),
           "--report", str(report), requirement]
    for platform in IMAGE_PLATFORMS:
        cmd[-1:-1] = ["--platform", platform]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PIP_FIND_LINKS": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, f"{requirement} does not resolve for the image: {result.stderr[-2000:]}"
    (item,) = json.loads(report.read_text())["install"]
    return item["metadata"]


@pytest.mark.parametrize("name", sorted(pins(GPU_REQUIREMENTS)))
def test_every_gpu_pin_exists_for_the_images_python(name, tmp_path):
    version = pins(GPU_REQUIREMENTS)[name]
    meta = _resolve(f"{name}=={version}", tmp_path)
    assert meta["version"] == version


def test_onnxruntime_gpu_is_a_cuda_12_build(tmp_path):
    """Its `cuda`/`cudnn` extras name the CUDA runtime it was built for; the image has CUDA 12.6."""
    meta = _resolve(f"onnxruntime-gpu=={pins(GPU_REQUIREMENTS)['onnxruntime-gpu']}", tmp_path)
    cuda = [r for r in meta.get("requires_dist", []) if "nvidia-" in r and "extra ==" in r]
    runtime = [r for r in cuda if "cuda-runtime" in r]
    assert runtime, meta.get("requires_dist")
    for req in cuda:
        assert "-cu12" in req.split(";")[0], f"not a CUDA 12 build: {req}"
    assert not any("13." in r.split(";")[0] for r in runtime)


def test_the_tensorrt_api_is_the_serving_images_tensorrt():
    from sotai.diffusion.tensorrt import IMAGE_TENSORRT_VERSION

    assert pins(GPU_REQUIREMENTS)["tensorrt-cu12-bindings"] == IMAGE_TENSORRT_VERSION == "10.5.0"
    base = next(args for word, args in dockerfile_instructions(DOCKERFILE.read_text()) if word == "FROM")
    assert base == "nvcr.io/nvidia/tritonserver:24.10-py3"  # ships TensorRT 10.5.0


def test_the_image_build_checks_the_gpu_wheels_load():
    from sotai.diffusion.tensorrt import IMAGE_TENSORRT_VERSION

    runs = " ".join(args for word, args in dockerfile_instructions(DOCKERFILE.read_text()) if word == "RUN")
    assert "'CUDAExecutionProvider' in o.get_available_providers()" in runs
    assert f"import tensorrt_bindings as t; assert t.__version__ == '{IMAGE_TENSORRT_VERSION}'" in runs


def test_one_python_version_for_the_project_the_dev_venv_and_the_image():
    """The lock is solved for 3.11 (numpy, torch wheels): pyproject, make and the image agree on it."""
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert re.search(r"^PYTHON\s*\?=\s*python3\.11$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    runs = " ".join(args for word, args in dockerfile_instructions(DOCKERFILE.read_text()) if word == "RUN")
    assert "python3.11 -m venv $VIRTUAL_ENV" in runs
    assert sys.version_info[:2] == (3, 11), "the tests run on the lock's Python"
