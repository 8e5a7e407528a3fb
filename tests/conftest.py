"""Session fixtures: one tiny model repository and one real tritonserver for the whole run."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotai.settings import PROJECT_ROOT, Settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# Persistent (gitignored) so a second local run reuses the export; CI starts from nothing.
TEST_MODELS_DIR = PROJECT_ROOT / "models" / "_test"
OUT_DIR = PROJECT_ROOT / "out" / "test"


def shared_data_or_skip() -> Path:
    if not (SHARED_DATA / "danbooru_tags.csv").is_file():
        pytest.skip(f"the reference tag data is not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    tag_data = SHARED_DATA if (SHARED_DATA / "danbooru_tags.csv").is_file() else None
    return Settings(models_dir=TEST_MODELS_DIR, tag_data=tag_data, profile="tiny", vector_db_path=None,
                    dart_model_path=None, sd_model_path=None, repository=None)


@pytest.fixture(scope="session")
def tiny_repository(test_settings) -> Path:
    from sotai.export.build import ExportPlan, export_profile

    return export_profile(ExportPlan.from_settings(test_settings, "tiny"))


@pytest.fixture(scope="session")
def triton(tiny_repository):
    from sotai.serving.server import TritonServer, free_port

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    server = TritonServer(tiny_repository, http_port=free_port(), grpc_port=free_port(),
                          metrics_port=free_port(), log_file=OUT_DIR / "tritonserver.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def client(triton):
    from sotai.client import SotaiClient

    with SotaiClient(triton.grpc_url) as c:
        yield c


@pytest.fixture(scope="session")
def out_dir() -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUT_DIR
