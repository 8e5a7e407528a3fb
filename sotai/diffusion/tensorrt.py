"""TensorRT engines for the four SDXL graphs on GPU hosts, with shape profiles covering every request.

One optimization profile per graph spans what the loop can send (sotai.limits): batch 1..16 (the
CFG pair of up to 8 images), 512..2048 pixels per side (latents 64..256), and prompts of 1..40
77-token chunks; the optimum is the common case, a 1024x1024 CFG pair of one image.

`build_engines` uses the TensorRT Python API when `tensorrt` imports, else `trtexec` when it is on
PATH, else prints the exact trtexec commands to run on the GPU host (and builds nothing).
Each engine is written as <repository>/<graph>/1/model.plan, where `sotai export TARGET=tensorrt`
serves it with a `tensorrt_plan` config.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from sotai.diffusion.components import COMPONENTS_DIR, GRAPHS, Manifest
from sotai.diffusion.prompting import MAX_PROMPT_CHUNKS
from sotai.limits import NUM_IMAGES_RANGE, SIZE_RANGE

Shapes = dict[str, tuple[int, ...]]

MAX_BATCH = 2 * NUM_IMAGES_RANGE[1]  # the UNet's CFG pair for the most images per request
OPT_SIZE = 1024  # Animagine XL's native square resolution
TOKENS = 77  # CLIP's context; one prompt chunk


@dataclass(frozen=True)
class EngineSpec:
    graph: str
    onnx: Path
    plan: Path
    min: Shapes
    opt: Shapes
    max: Shapes
    fp16: bool = True

    def trtexec_command(self, workspace_mib: int = 8192) -> list[str]:
        def shapes(s: Shapes) -> str:
            return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in s.items())

        cmd = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.plan}",
               f"--minShapes={shapes(self.min)}", f"--optShapes={shapes(self.opt)}", f"--maxShapes={shapes(self.max)}",
               f"--memPoolSize=workspace:{workspace_mib}M"]
        return cmd + (["--fp16"] if self.fp16 else [])


def engine_specs(onnx_files: Mapping[str, Path], manifest: Manifest, plans: Mapping[str, Path]) -> list[EngineSpec]:
    """The profile of each graph, from the manifest's tensor shapes and the request limits."""
    io = manifest.io
    latent_channels = io["unet"]["inputs"]["sample"][1][1]
    hidden = io["unet"]["inputs"]["encoder_hidden_states"][1][2]
    pooled = io["unet"]["inputs"]["text_embeds"][1][1]
    time_ids = io["unet"]["inputs"]["time_ids"][1][1]
    factor = 8  # the SDXL VAE's spatial scale; the UNet works on 1/8-size latents
    lo, hi, opt = SIZE_RANGE[0] // factor, SIZE_RANGE[1] // factor, OPT_SIZE // factor

    def unet(batch: int, side: int, chunks: int) -> Shapes:
        return {"sample": (batch, latent_channels, side, side), "timestep": (batch, 1),
                "encoder_hidden_states": (batch, TOKENS * chunks, hidden), "text_embeds": (batch, pooled),
                "time_ids": (batch, time_ids)}

    profiles = {
        "text_encoder": ({"input_ids": (1, TOKENS)}, {"input_ids": (2, TOKENS)}, {"input_ids": (MAX_BATCH, TOKENS)}),
        "unet": (unet(1, lo, 1), unet(2, opt, 1), unet(MAX_BATCH, hi, MAX_PROMPT_CHUNKS)),
        "vae_decoder": ({"latent_sample": (1, latent_channels, lo, lo)},
                        {"latent_sample": (1, latent_channels, opt, opt)},
                        {"latent_sample": (NUM_IMAGES_RANGE[1], latent_channels, hi, hi)}),
    }
    profiles["text_encoder_2"] = profiles["text_encoder"]
    fp16 = manifest.dtype == "fp16"
    return [EngineSpec(g, Path(onnx_files[g]), Path(plans[g]), *profiles[g], fp16=fp16) for g in GRAPHS]


def repository_specs(repository: Path) -> list[EngineSpec]:
    """Specs for an exported Triton repository (<graph>/1/model.onnx, diffusion/1/components)."""
    manifest = Manifest.load(repository / "diffusion" / "1" / COMPONENTS_DIR)
    return engine_specs({g: repository / g / "1" / "model.onnx" for g in GRAPHS}, manifest,
                        {g: repository / g / "1" / "model.plan" for g in GRAPHS})


Builder = Literal["auto", "python", "trtexec", "print"]


def available_builder() -> Literal["python", "trtexec", "print"]:
    try:
        import tensorrt  # noqa: F401

        return "python"
    except ImportError:
        return "trtexec" if shutil.which("trtexec") else "print"


def build_engines(
    repository: Path, *, builder: Builder = "auto", workspace_mib: int = 8192, echo: Callable[[str], None] = print
) -> dict[str, Path | None]:
    """Build every graph's engine; returns {graph: plan path, or None when only commands were printed}."""
    from tqdm.auto import tqdm

    specs = repository_specs(Path(repository))
    how = available_builder() if builder == "auto" else builder
    if how == "print":
        echo("TensorRT is not available here (no `tensorrt` module, no `trtexec`). On the GPU host run:")
        for spec in specs:
            echo(shlex.join(spec.trtexec_command(workspace_mib)))
        return {spec.graph: None for spec in specs}
    built: dict[str, Path | None] = {}
    for spec in tqdm(specs, desc="TensorRT engines", unit="engine"):
        if how == "python":
            _build_with_api(spec, workspace_mib)
        else:
            import subprocess

            subprocess.run(spec.trtexec_command(workspace_mib), check=True)
        built[spec.graph] = spec.plan
    return built


def _build_with_api(spec: EngineSpec, workspace_mib: int) -> None:
    import tensorrt as trt

    from sotai.errors import StageError

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):  # from the file, so external weights resolve
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StageError(f"tensorrt:{spec.graph}", f"cannot parse {spec.onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name in spec.min:
        profile.set_shape(name, spec.min[name], spec.opt[name], spec.max[name])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise StageError(f"tensorrt:{spec.graph}", f"TensorRT could not build an engine from {spec.onnx}")
    spec.plan.write_bytes(bytes(engine))
