"""Export an SDXL diffusers snapshot to the four ONNX graphs the denoising loop calls, plus its components.

Layout written to out_dir:
    text_encoder/model.onnx    input_ids -> last_hidden_state, pooler_output, hidden_states.0..L
    text_encoder_2/model.onnx  input_ids -> text_embeds, last_hidden_state, hidden_states.0..L
    unet/model.onnx            sample, timestep, encoder_hidden_states, text_embeds, time_ids -> out_sample
    vae_decoder/model.onnx     latent_sample -> sample
    components/                tokenizer/, tokenizer_2/, scheduler/, vae/config.json, model_index.json,
                               sotai_diffusion.json (the manifest: tensor names, dtype, model name)

Every axis the loop varies is dynamic: batch (dim 0 everywhere, so Triton can batch every input;
the UNet's timestep, a scalar in optimum's default export, is a [batch, 1] column here), the token sequence
(prompts longer than 77 tokens are encoded in chunks and concatenated) and the latent height/width.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from sotai.diffusion.components import COMPONENTS_DIR, GRAPHS, Manifest
from sotai.errors import MissingArtifact

# optimum's SDXL export validates each graph against PyTorch; fp32 parts agree to ~1e-5.
ATOL_FP32 = 1e-3


def _unet_onnx_config(snapshot_dir: Path, float_dtype: str):
    """optimum's UNet config with the timestep as a [batch, 1] column instead of a scalar.

    Triton's batching (max_batch_size > 0) needs a batch axis on every input and at least one
    dimension after it; a [batch, 1] column is served with `dims: [1]` by every backend (python,
    onnxruntime, tensorrt) without reshape tricks. The patched forward flattens it to the [batch]
    vector diffusers' UNet broadcasts exactly as it broadcasts a scalar.
    """
    import functools
    import inspect

    from diffusers import UNet2DConditionModel
    from diffusers.configuration_utils import FrozenDict
    from optimum.exporters.onnx.model_configs import UNetOnnxConfig
    from optimum.exporters.onnx.model_patcher import ModelPatcher

    class TimestepColumnPatcher(ModelPatcher):
        def __init__(self, config, model, model_kwargs=None):
            super().__init__(config, model, model_kwargs)
            inner = self.orig_forward
            position = list(inspect.signature(type(model).forward).parameters).index("timestep") - 1  # minus self

            @functools.wraps(inner)
            def forward(*args, **kwargs):
                if "timestep" in kwargs:
                    kwargs["timestep"] = kwargs["timestep"].reshape(-1)
                else:
                    args = (*args[:position], args[position].reshape(-1), *args[position + 1:])
                return inner(*args, **kwargs)

            self.unwrapped_forward, self.orig_forward = inner, forward

        def __exit__(self, exc_type, exc_value, traceback):
            super().__exit__(exc_type, exc_value, traceback)
            setattr(self._model, self.orig_forward_name, self.unwrapped_forward)  # not our wrapper

    class TimestepColumnUNetOnnxConfig(UNetOnnxConfig):
        _MODEL_PATCHER = TimestepColumnPatcher

        @property
        def inputs(self):
            inputs = super().inputs
            inputs["timestep"] = {0: "batch_size"}
            return inputs

        def generate_dummy_inputs(self, framework: str = "pt", **kwargs):
            dummy = super().generate_dummy_inputs(framework=framework, **kwargs)
            batch = dummy["sample"].shape[0]
            dummy["timestep"] = dummy["timestep"].reshape(1, 1).expand(batch, 1).contiguous()
            return dummy

    unet_config = dict(UNet2DConditionModel.load_config(snapshot_dir / "unet"))
    te2 = json.loads((snapshot_dir / "text_encoder_2" / "config.json").read_text())
    model_index = json.loads((snapshot_dir / "model_index.json").read_text())
    # The same three attributes optimum sets on the loaded UNet before picking its export config.
    unet_config["requires_aesthetics_score"] = model_index.get("requires_aesthetics_score", False)
    unet_config["time_cond_proj_dim"] = unet_config.get("time_cond_proj_dim")
    unet_config["text_encoder_projection_dim"] = te2["projection_dim"]
    return TimestepColumnUNetOnnxConfig(FrozenDict(unet_config), task="semantic-segmentation", float_dtype=float_dtype)


def _check_snapshot(snapshot_dir: Path) -> None:
    needed = ["model_index.json", "unet/config.json", "text_encoder/config.json", "text_encoder_2/config.json",
              "vae/config.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer_2/vocab.json"]
    for rel in needed:
        if not (snapshot_dir / rel).is_file():
            raise MissingArtifact(
                "SDXL diffusers snapshot", snapshot_dir, "make export", detail=f"{rel} is missing"
            )


def copy_components(snapshot_dir: Path, components_dir: Path) -> None:
    """Copy what the loop needs besides the graphs: tokenizers, scheduler and VAE configs, model_index."""
    components_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer", "tokenizer_2"):
        dest = components_dir / name
        dest.mkdir(exist_ok=True)
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            if (snapshot_dir / name / f).is_file():
                shutil.copy2(snapshot_dir / name / f, dest / f)
    (components_dir / "scheduler").mkdir(exist_ok=True)
    shutil.copy2(snapshot_dir / "scheduler" / "scheduler_config.json", components_dir / "scheduler" / "scheduler_config.json")
    (components_dir / "vae").mkdir(exist_ok=True)
    shutil.copy2(snapshot_dir / "vae" / "config.json", components_dir / "vae" / "config.json")
    shutil.copy2(snapshot_dir / "model_index.json", components_dir / "model_index.json")


def export_sdxl_onnx(
    snapshot_dir: Path,
    out_dir: Path,
    *,
    fp16: bool = False,
    model_name: str | None = None,
    vae_dir: Path | None = None,
) -> dict[str, Path]:
    """Export `snapshot_dir` (StableDiffusionXLPipeline.save_pretrained layout) into out_dir.

    fp16=True: half-precision graphs for GPU hosts. The graphs are traced in fp32 (on any host) and
    converted with onnxruntime's float16 converter; a VAE whose config says `force_upcast` (the
    original SDXL VAE overflows in fp16) stays fp32, as diffusers upcasts it.
    vae_dir: a replacement VAE snapshot (madebyollin/sdxl-vae-fp16-fix: fp16-safe, force_upcast
    false) swapped in before export. model_name: written into every PNG (default: the folder name).
    Returns {"text_encoder": path, "text_encoder_2": ..., "unet": ..., "vae_decoder": ..., "components": dir}.
    """
    import torch
    from optimum.exporters.onnx import main_export
    from tqdm.auto import tqdm

    snapshot_dir, out_dir = Path(snapshot_dir), Path(out_dir)
    _check_snapshot(snapshot_dir)
    name = model_name or _guess_model_name(snapshot_dir)
    if vae_dir is not None:
        snapshot_dir = _with_replaced_vae(snapshot_dir, Path(vae_dir), out_dir / "_staging")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=4, desc="diffusion export", unit="step") as bar:
        bar.set_postfix_str("ONNX graphs (optimum)")
        with warnings.catch_warnings():
            # The tracer warns about every Python-level shape check in diffusers; optimum then
            # validates each graph against PyTorch, which is the check that matters.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r"Constant folding|Exporting aten::index")
            main_export(
                str(snapshot_dir),
                output=str(out_dir / "_optimum"),
                task="text-to-image",
                library_name="diffusers",
                device="cpu",
                atol=ATOL_FP32,
                custom_onnx_configs={"unet": _unet_onnx_config(snapshot_dir, "fp32")},
                local_files_only=True,
            )
        bar.update()
        bar.set_postfix_str("graphs + components")
        paths: dict[str, Path] = {}
        for graph in GRAPHS:
            dest = out_dir / graph
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for f in (out_dir / "_optimum" / graph).iterdir():  # model.onnx (+ model.onnx_data over 2 GB)
                if f.name.startswith("model.onnx"):
                    shutil.move(str(f), dest / f.name)
            paths[graph] = dest / "model.onnx"
        components_dir = out_dir / COMPONENTS_DIR
        copy_components(snapshot_dir, components_dir)
        bar.update()
        bar.set_postfix_str("fp16" if fp16 else "fp32: no conversion")
        if fp16:
            vae_config = json.loads((snapshot_dir / "vae" / "config.json").read_text())
            for graph in GRAPHS:
                if graph == "vae_decoder" and vae_config.get("force_upcast", False):
                    continue  # the original SDXL VAE overflows in fp16: keep it fp32, as diffusers does
                convert_to_fp16(paths[graph])
        bar.update()
        bar.set_postfix_str("manifest")
        Manifest.from_graphs({g: paths[g] for g in GRAPHS}, model_name=name, dtype="fp16" if fp16 else "fp32").save(
            components_dir
        )
        paths["components"] = components_dir
        bar.update()
    shutil.rmtree(out_dir / "_optimum", ignore_errors=True)
    shutil.rmtree(out_dir / "_staging", ignore_errors=True)
    return paths


def convert_to_fp16(onnx_path: Path) -> None:
    """Rewrite an fp32 ONNX file as fp16 (inputs and outputs too), in place.

    onnxruntime's converter keeps the ops it knows to be unsafe in fp16 (its default block list)
    in fp32 behind casts, plus Resize, whose `scales` input must stay fp32 (the upsamplers' nearest
    2x Resize is exact in either precision). The UNet's `timestep` input and its sinusoidal
    embedding stay fp32, as in diffusers (sotai.diffusion.fp16). Graphs over 2 GB keep their
    weights in `model.onnx_data`.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from sotai.diffusion.fp16 import drop_cast_round_trips, timestep_embedding_nodes

    # The converter needs every value's type; infer them from the path (works past protobuf's 2 GB,
    # unlike inference on a loaded proto), beside the original so external data still resolves.
    inferred = onnx_path.with_name("inferred.onnx")
    onnx.shape_inference.infer_shapes_path(str(onnx_path), str(inferred))
    model = onnx.load(str(inferred))  # with its external data, if any
    inferred.unlink()
    embedding = timestep_embedding_nodes(model)
    model = convert_float_to_float16(
        model, keep_io_types=["timestep"] if embedding else False, disable_shape_infer=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Resize"], node_block_list=embedding,
    )
    drop_cast_round_trips(model)
    for stale in onnx_path.parent.glob("model.onnx*"):
        stale.unlink()
    try:
        large = model.ByteSize() > 2**31 - 2**20  # protobuf's 2 GB limit, with room for the graph
    except ValueError:  # ByteSize() itself fails past 2 GB
        large = True
    onnx.save(model, str(onnx_path), save_as_external_data=large, all_tensors_to_one_file=True,
              location="model.onnx_data")


def _guess_model_name(snapshot_dir: Path) -> str:
    # hub snapshots live in .../models--org--name/snapshots/<sha>; local builds are named by their folder.
    for part in reversed(snapshot_dir.resolve().parts):
        if part.startswith("models--"):
            return part[len("models--"):].split("--")[-1]
    return snapshot_dir.resolve().name


def _with_replaced_vae(snapshot_dir: Path, vae_dir: Path, staging: Path) -> Path:
    """A staging snapshot whose vae/ is vae_dir (symlinks, so no weights are copied)."""
    if not (vae_dir / "config.json").is_file():
        raise MissingArtifact("replacement VAE snapshot", vae_dir, "make export PROFILE=animagine", detail="config.json missing")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for entry in snapshot_dir.iterdir():
        target = vae_dir if entry.name == "vae" else entry
        (staging / entry.name).symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return staging
