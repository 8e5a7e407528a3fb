"""The `animagine` profile's code path, up to the network boundary."""

from __future__ import annotations

import pytest

from sotai.errors import SotaiError


def test_download_without_network_names_the_way_out(tmp_path, monkeypatch):
    from sotai.export import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SotaiError) as err:
        hub.download(hub.DART, tmp_path / "dart")
    message = str(err.value)
    assert "p1atdev/dart-v2-moe-sft" in message
    assert "DART_MODEL_PATH" in message and "make export PROFILE=animagine" in message


def test_downloads_ask_only_for_safe_files():
    from sotai.export import hub

    for snapshot in (hub.DART, hub.ANIMAGINE, hub.VAE_FP16_FIX):
        for pattern in snapshot.allow_patterns:
            assert not pattern.endswith((".bin", ".pt", ".ckpt", ".pkl")), pattern
            assert pattern != "*"


def test_animagine_profile_exports_local_hub_snapshots_into_a_repository_triton_loads(
    tiny_repository, test_settings, tmp_path
):
    """Snapshots laid out like the hub's (here: the tiny ones) go through the animagine export path."""
    from sotai.export.build import ExportPlan, export_profile
    from sotai.serving.server import TritonServer, free_port

    sources = test_settings.profile_dir("tiny") / "src"
    plan = ExportPlan(profile="animagine", out_dir=tmp_path / "animagine", dart_source=sources / "dart",
                      sd_source=sources / "sdxl", tag_data=None)
    repo = export_profile(plan)
    assert (repo / "unet" / "1" / "model.onnx").is_file()
    assert (repo / "dart" / "1" / "model.onnx").is_file()

    import tritonclient.http as httpclient

    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_file=tmp_path / "triton.log")
    with server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("sotai")
        assert client.is_model_ready("diffusion")


def test_each_target_has_its_own_repository(tmp_path):
    """A GPU export on a CPU box must not turn the repository `sotai serve` runs into KIND_GPU configs."""
    from sotai.export.build import ExportPlan

    plans = {t: ExportPlan(profile="tiny", out_dir=tmp_path / "tiny", target=t) for t in ("cpu", "gpu", "tensorrt")}
    assert plans["cpu"].repository == tmp_path / "tiny" / "repository"  # Settings.repository_dir()'s default
    assert len({p.repository for p in plans.values()}) == 3
    from sotai.settings import Settings

    assert Settings(models_dir=tmp_path, profile="tiny", repository=None).repository_dir() == plans["cpu"].repository
