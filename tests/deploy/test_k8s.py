"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates (strict) against the Kubernetes
OpenAPI schemas offline (kubernetes-validate), and is wired the way docker-compose.yml and the code are:
the images compose builds, their ports and users, the probes, the GPU, the headless Service the
gateway's gRPC DNS target names, and one autoscaling rule in both its HPA and KEDA forms."""

from __future__ import annotations

import re

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from sotai.gateway.pool import parse_urls
from sotai.settings import PROJECT_ROOT, Settings

K8S = PROJECT_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
ADAPTER_VALUES = K8S / "components" / "autoscale-hpa" / "prometheus-adapter-values.yaml"
# The oldest Kubernetes still in vendor support when this was written, and the newest schema shipped.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Custom resources have no schema in kubernetes-validate; these are checked field by field below.
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject")}
TRITON_METRICS = {"nv_inference_pending_request_count", "nv_inference_queue_duration_us",
                  "nv_inference_request_success"}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed: CI needs it to render deploy/k8s (apt-get install kubectl)")
        pytest.skip("kubectl is not installed here")
    return path


def render(overlay: str) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"kubectl kustomize deploy/k8s/overlays/{overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, rendered: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "Job")}


def container(pod: dict, name: str) -> dict:
    return next(c for c in pod["containers"] if c["name"] == name)


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def test_every_overlay_is_tested():
    assert OVERLAYS == ["pvc-hpa", "s3-keda"], OVERLAYS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(rendered, version):
    import kubernetes_validate

    overlay, docs = rendered
    errors = []
    for doc in docs:
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)  # strict: unknown fields are errors
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where} at {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']}")
    assert not errors, "\n".join(errors)


def test_images_ports_and_commands_are_what_compose_builds(rendered):
    overlay, docs = rendered
    services = compose()["services"]
    pods = pod_specs(docs)
    triton = container(pods["Deployment/triton"], "triton")
    gateway = container(pods["Deployment/gateway"], "gateway")
    assert triton["image"] == services["triton"]["image"] == services["triton-replica"]["image"]
    assert gateway["image"] == services["gateway"]["image"]
    compose_triton = compose()["x-triton"]["command"]
    assert triton["command"] == compose_triton[:1]
    for flag in ("--strict-readiness=true", "--exit-on-error=true"):
        assert flag in compose_triton and flag in triton["args"], flag
    assert triton["args"][0].startswith("--model-repository="), "components/model-pvc and model-s3 replace args/0"

    published = {int(p.split(":")[-1]) for p in services["triton"]["ports"]}
    assert {p["containerPort"] for p in triton["ports"]} == published == {8000, 8001, 8002}
    gateway_port = int(services["gateway"]["ports"][0].split(":")[-1])
    assert [p["containerPort"] for p in gateway["ports"]] == [gateway_port]
    assert f"EXPOSE {gateway_port}" in (PROJECT_ROOT / "Dockerfile").read_text()

    if "Job/sotai-export" in pods:
        export = container(pods["Job/sotai-export"], "export")
        assert export["image"] == services["export"]["image"]
        # Compose's `${SOTAI_TARGET:-tensorrt}` is its default here: the Job exports that target.
        assert export["command"] == [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", arg)
                                     for arg in services["export"]["command"]]


def test_triton_has_a_gpu_probes_sized_for_sdxl_and_every_container_requests_and_limits(rendered):
    overlay, docs = rendered
    pods = pod_specs(docs)
    triton = container(pods["Deployment/triton"], "triton")
    for kind in ("requests", "limits"):
        assert str(triton["resources"][kind]["nvidia.com/gpu"]) == "1", kind
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    probes = {name: triton[name]["httpGet"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert all(ports[p["port"]] == 8000 for p in probes.values()), "Triton's health endpoints are on HTTP"
    startup = triton["startupProbe"]
    compose_start_s = int(compose()["x-triton"]["healthcheck"]["start_period"].rstrip("s"))
    assert startup["periodSeconds"] * startup["failureThreshold"] >= compose_start_s, \
        "the startup probe gives up before SDXL could have loaded"

    for where, pod in pods.items():
        for c in pod.get("initContainers", []) + pod["containers"]:
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(c.get("resources", {}).get(kind, {}))
                assert not missing, f"{overlay}: {where} container {c['name']} has no {kind} for {missing}"


def test_every_pod_runs_as_non_root_under_the_restricted_pod_security_standard(rendered):
    overlay, docs = rendered
    namespace = one(docs, "Namespace", "sotai")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    gateway_uid = int((PROJECT_ROOT / "Dockerfile").read_text().split("USER ")[1].split()[0])
    for where, pod in pod_specs(docs).items():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, where
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (where, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])} or c["name"] == "wait-for-export", \
                f"{where} {c['name']}: a read-only root needs a writable /tmp"
    assert pod_specs(docs)["Deployment/gateway"]["securityContext"]["runAsUser"] == gateway_uid


def test_gateway_balances_over_the_headless_triton_service(rendered):
    overlay, docs = rendered
    triton_service = one(docs, "Service", "triton")
    triton_pods = one(docs, "Deployment", "triton")["spec"]["template"]["metadata"]["labels"]
    assert triton_service["spec"]["clusterIP"] == "None", \
        "gRPC round_robin needs one DNS record per pod: a ClusterIP would pin each connection to one pod"
    assert triton_service["spec"]["selector"].items() <= triton_pods.items()
    grpc_port = next(p["port"] for p in triton_service["spec"]["ports"] if p["name"] == "grpc")

    env = {e["name"]: e.get("value") for e in container(pod_specs(docs)["Deployment/gateway"], "gateway")["env"]}
    settings = Settings(triton_url=env["SOTAI_TRITON_URL"], profile=env["SOTAI_PROFILE"])
    assert parse_urls(settings.triton_url) == [f"dns:///{triton_service['metadata']['name']}:{grpc_port}"]

    gateway_service = one(docs, "Service", "gateway")
    gateway_pods = one(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert gateway_service["spec"]["selector"].items() <= gateway_pods.items()
    for name, labels in (("triton", triton_pods), ("gateway", gateway_pods)):
        assert one(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_model_repository_comes_from_the_export_volume_or_an_object_store(rendered):
    overlay, docs = rendered
    pods = pod_specs(docs)
    triton_pod = pods["Deployment/triton"]
    triton = container(triton_pod, "triton")
    repository_arg = triton["args"][0].split("=", 1)[1]
    if "Job/sotai-export" not in pods:
        assert repository_arg.startswith(("s3://", "gs://", "as://")), repository_arg
        assert "models" not in {v["name"] for v in triton_pod["volumes"]}
        return

    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    export_pod = pods["Job/sotai-export"]
    export = container(export_pod, "export")
    volume = lambda pod: next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert volume(triton_pod)["claimName"] == volume(export_pod)["claimName"] in claims
    assert volume(triton_pod)["readOnly"] is True
    # Triton serves the folder export writes: <SOTAI_MODELS_DIR>/<profile>/repository.
    env = {e["name"]: e.get("value") for e in export["env"]}
    models_dir = PurePosixPath(env["SOTAI_MODELS_DIR"])
    assert {m["mountPath"] for m in export["volumeMounts"] if m["name"] == "models"} == {str(models_dir)}
    written = PurePosixPath(Settings(models_dir=Path(models_dir), profile="animagine").repository_dir())
    for c in triton_pod.get("initContainers", []) + [triton]:
        mount = next(m for m in c["volumeMounts"] if m["name"] == "models")
        # No subPath: kubelet would create a missing one as root, unwritable for the export (uid 1000).
        assert "subPath" not in mount and mount["mountPath"] == str(models_dir) and mount["readOnly"] is True
    assert repository_arg == str(written)
    (wait,) = triton_pod["initContainers"]
    assert str(written / "sotai" / "config.pbtxt") in wait["command"][-1], "wait for the ensemble export writes"


def adapter_rules() -> dict[str, dict]:
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return {rule["name"]["as"]: rule for rule in rules}


def test_the_autoscaler_scales_triton_on_its_queue(rendered):
    overlay, docs = rendered
    autoscalers = [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert len(autoscalers) == 1, f"{overlay}: one autoscaler for Triton, got {autoscalers}"
    triton = one(docs, "Deployment", "triton")
    hpa = yaml.safe_load((K8S / "components" / "autoscale-hpa" / "triton-hpa.yaml").read_text())
    hpa_targets = [m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]]

    assert "replicas" not in triton["spec"], "with an autoscaler, a Deployment replicas resets the count on apply"

    scaler = autoscalers[0]
    if scaler["kind"] == "HorizontalPodAutoscaler":
        spec = scaler["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
        rules = adapter_rules()
        for metric in spec["metrics"]:
            rule = rules[metric["pods"]["metric"]["name"]]  # the adapter serves every metric the HPA reads
            assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
            # The adapter fills these in per pod; without them every pod would read the namespace's total.
            assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "by (<<.GroupBy>>)" in rule["metricsQuery"]
            assert TRITON_METRICS & set(rule["metricsQuery"].replace("(", " ").replace("{", " ").split())
        replicas = (spec["minReplicas"], spec["maxReplicas"])
    else:
        spec = scaler["spec"]
        assert spec["scaleTargetRef"]["name"] == triton["metadata"]["name"]
        namespace = scaler["metadata"]["namespace"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "prometheus"
            query = trigger["metadata"]["query"]
            assert f'namespace="{namespace}"' in query, f"the query must select namespace {namespace}: {query}"
            assert "model=~\"diffusion|diffusion_stream\"" in query
        # One rule in both forms: the same thresholds as the HPA's targets.
        assert [t["metadata"]["threshold"] for t in spec["triggers"]] == hpa_targets
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["spec"]["behavior"]
        replicas = (spec["minReplicaCount"], spec["maxReplicaCount"])
    assert replicas == (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
    assert replicas[0] >= 2, "two replicas at least: a PDB of maxUnavailable 1 would otherwise block drains"


def test_triton_reports_the_metrics_the_autoscaling_rule_reads(triton):
    """The series names and the `model` label values of the rule exist on a real Triton."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{triton.metrics_port}/metrics", timeout=10).read().decode()
    series = set(re.findall(r'^(nv_inference_[a-z_]+)\{[^}]*model="(diffusion(?:_stream)?)"', text, re.M))
    for metric in TRITON_METRICS:
        for model in ("diffusion", "diffusion_stream"):
            assert (metric, model) in series, f"Triton reports no {metric} for model {model}"
    for rule in adapter_rules().values():
        assert rule["seriesQuery"].split("{")[0] in TRITON_METRICS
