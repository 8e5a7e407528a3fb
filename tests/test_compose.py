"""docker-compose.yml: valid Compose (by `docker compose config` where the plugin exists, always by the
Compose Specification's JSON schema), and wired the way the README says it is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from sotai.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
SCHEMA = PROJECT_ROOT / "tests" / "compose_spec" / "compose-spec.json"
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\})")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ${VAR}, ${VAR:-default}, ${VAR-default}, $$ (a literal $)."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default") or ""
        value = env.get(name)
        if op == ":-" and not value or op == "-" and value is None:
            return default
        if op in (":?", "?") and not value:
            raise ValueError(f"{name} is required: {default}")
        return value or ""

    return _VARIABLE.sub(one, text)


def load(env: dict[str, str] | None = None, text: str | None = None) -> dict:
    return yaml.safe_load(interpolate(text if text is not None else COMPOSE.read_text(), env or {}))


def validate(model: dict) -> None:
    import json

    schema = json.loads(SCHEMA.read_text())
    # The schema names draft 2019-09 by its old http:// URI, which jsonschema does not look up.
    jsonschema.Draft201909Validator(schema).validate(model)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


def docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not docker_compose_available(), reason="the docker compose plugin is not installed here")
@pytest.mark.parametrize("profile", [[], ["--profile", "replicas"]])
def test_docker_compose_config_accepts_the_file(profile):
    env = {**os.environ, "TRITON_REPLICAS": "2"}
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), *profile, "config", "--quiet"],
                            capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env", [{}, {"TRITON_REPLICAS": "3", "SOTAI_TRITON_URL": "triton:8001,dns:///triton-replica:8001"}])
def test_the_file_is_valid_against_the_compose_specification(env):
    validate(load(env))


def test_the_schema_check_catches_mistakes():
    original = COMPOSE.read_text()
    for old, new in (("      replicas: ${TRITON_REPLICAS:-2}", "      replicas: many"),
                     ("  shm_size: 2gb", "  shm_sise: 2gb")):
        broken = original.replace(old, new, 1)
        assert broken != original, f"{old!r} is no longer in docker-compose.yml: update this test"
        with pytest.raises(jsonschema.ValidationError):
            validate(load(text=broken))


def test_services_and_their_order(compose):
    services = compose["services"]
    assert {"export", "triton", "triton-replica", "gateway"} == set(services)
    assert services["triton"]["depends_on"]["export"]["condition"] == "service_completed_successfully"
    assert services["triton-replica"]["depends_on"]["export"]["condition"] == "service_completed_successfully"
    assert services["gateway"]["depends_on"]["triton"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_triton_runs_the_pinned_ngc_image_with_a_gpu_and_the_repository(compose):
    dockerfile = (PROJECT_ROOT / compose["services"]["triton"]["build"]["dockerfile"]).read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert base == "nvcr.io/nvidia/tritonserver:24.10-py3", "24.10 is Triton 2.51, the server pytriton 0.7.0 embeds"
    assert "nvidia-pytriton==0.7.0" in (PROJECT_ROOT / "requirements.lock").read_text()
    for name in ("triton", "triton-replica", "export"):
        (device,) = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    triton = compose["services"]["triton"]
    # the export's own repository for its target, never the CPU one `sotai serve` uses
    assert "./models/animagine/repository-tensorrt:/models:ro" in triton["volumes"]
    assert "./models/animagine/repository-gpu:/models:ro" in load({"SOTAI_TARGET": "gpu"})["services"]["triton"]["volumes"]
    assert "--model-repository=/models" in triton["command"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])


def test_the_export_service_runs_a_real_sotai_command(compose):
    from sotai.cli import build_parser

    command = compose["services"]["export"]["command"]
    assert command[:2] == ["sotai", "export"]
    args = build_parser().parse_args(command[1:])
    assert (args.profile, args.target) == ("animagine", "tensorrt")
    assert compose["services"]["export"]["restart"] == "no"
    from sotai.export.build import ExportPlan

    plan = ExportPlan(profile="animagine", out_dir=PROJECT_ROOT / "models" / "animagine", target=args.target)
    mount = compose["services"]["triton"]["volumes"][0].split(":")[0]
    assert (PROJECT_ROOT / mount).resolve() == plan.repository.resolve()  # triton serves what export wrote


def test_each_triton_container_takes_its_own_gpu(compose, tmp_path):
    """compose's `count: 1` gives every replica GPU 0; the slot script spreads them (real flock, 2 fake GPUs)."""
    for name in ("triton", "triton-replica"):
        service = compose["services"][name]
        assert service["entrypoint"] == ["/opt/nvidia/nvidia_entrypoint.sh", "sotai-gpu-slot"]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["count"] == "all" and "gpu-slots:/run/sotai-gpus" in service["volumes"]
    assert "gpu-slots" in compose["volumes"]
    dockerfile = (PROJECT_ROOT / "docker" / "triton.Dockerfile").read_text()
    assert "COPY docker/gpu_slot.sh /usr/local/bin/sotai-gpu-slot" in dockerfile

    script = PROJECT_ROOT / "docker" / "gpu_slot.sh"
    env = {**os.environ, "SOTAI_GPU_COUNT": "2", "SOTAI_GPU_SLOTS_DIR": str(tmp_path)}
    release = tmp_path / "release"
    hold = f'echo $CUDA_VISIBLE_DEVICES; while [ ! -e {release} ]; do sleep 0.05; done'
    running, got = [], []
    try:
        for _ in range(3):  # three replicas on two GPUs, each keeping its slot while it runs
            running.append(subprocess.Popen(["bash", str(script), "sh", "-c", hold], env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
            got.append(running[-1].stdout.readline().strip())
        assert got == ["0", "1", "0"]
    finally:
        release.touch()
        for p in running:
            p.wait(10)
    again = subprocess.run(["bash", str(script), "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"], env=env,
                           capture_output=True, text=True, timeout=10)
    assert again.stdout.strip() == "0"  # the slots were freed with their containers


def test_the_replicas_profile_scales_triton_behind_the_gateway():
    compose = load({"TRITON_REPLICAS": "3"})
    replica = compose["services"]["triton-replica"]
    assert replica["profiles"] == ["replicas"] and replica["deploy"]["replicas"] == 3
    assert "ports" not in replica, "replicas are reached through the gateway only"
    from sotai.gateway.pool import parse_urls

    urls = parse_urls(load({"SOTAI_TRITON_URL": "triton:8001,dns:///triton-replica:8001"})
                      ["services"]["gateway"]["environment"]["SOTAI_TRITON_URL"])
    assert urls == ["triton:8001", "dns:///triton-replica:8001"]
    assert load()["services"]["gateway"]["environment"]["SOTAI_TRITON_URL"] == "triton:8001"


def test_every_published_port_binds_localhost(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_dockerfiles_copy_only_what_exists_and_the_gateway_image_starts_the_gateway(compose):
    for name in ("gateway", "triton"):
        path = PROJECT_ROOT / compose["services"][name]["build"]["dockerfile"]
        assert path.is_file(), path
        for line in re.findall(r"^COPY\s+(.+)$", path.read_text(), re.M):
            *sources, _dest = line.split()
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), f"{path.name} copies missing {source}"
    gateway = (PROJECT_ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "sotai.gateway"]' in gateway
    import sotai.gateway.__main__  # noqa: F401  (the module the CMD runs)


def test_interpolation_follows_compose_rules():
    assert interpolate("${A:-x} ${B-y} $$HOME ${C}", {"A": "", "B": ""}) == "x  $HOME "
    with pytest.raises(ValueError):
        interpolate("${D:?set D}", {})
