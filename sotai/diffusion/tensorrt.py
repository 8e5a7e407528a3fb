"""TensorRT engines for the four SDXL graphs on GPU hosts: profiles sized to what a GPU can hold.

TensorRT sizes an execution context's activation memory for the largest shape of its profile, so a
profile spanning every request the CPU build accepts (batch 16 x 2048x2048 x 40 prompt chunks) needs
far more than a 24-80 GB GPU. The engines serve a narrower, declared set instead (`TENSORRT_LIMITS`):
Animagine's size presets, up to 4 images (UNet batch 8: the CFG pair), prompts up to 3 chunks of 77
tokens. The presets' boxes are covered by three profiles (square, wide, tall) instead of one box
around all of them; the VAE decodes one image per call. `engine_limits.json`, written beside the
diffusion components, tells the denoising loop these limits, so a request outside them gets a
clear InvalidInput before any compute rather than an error from inside TensorRT.

Engines are built where TensorRT is (the export container of docker-compose.yml: the serving image's
TensorRT 10.5.0 Python API, docker/requirements-gpu.txt), by the Python API or `trtexec`, and cached:
each plan has a key file holding the hash of its inputs (the ONNX files, the profile shapes, the
TensorRT version, the precision), so a second `docker compose up` reuses them. Without a builder,
`require_builder` fails with the command to run: no silent fallback.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from sotai.diffusion.components import COMPONENTS_DIR, GRAPHS, Manifest
from sotai.errors import SotaiError
from sotai.limits import SIZE_MULTIPLE, SIZE_PRESETS

Shapes = dict[str, tuple[int, ...]]

# The TensorRT of nvcr.io/nvidia/tritonserver:24.10-py3 (docker/triton.Dockerfile): a plan only loads
# in the TensorRT that built it, so the export container must build with this one.
IMAGE_TENSORRT_VERSION = "10.5.0"
TOKENS = 77  # CLIP's context; one prompt chunk
VAE_FACTOR = 8  # the SDXL VAE's spatial scale: latents are 1/8 of the pixels
LIMITS_FILE = "engine_limits.json"
KEY_SUFFIX = ".key"


@dataclass(frozen=True)
class SizeProfile:
    """One optimization profile in pixels: a box of widths x heights (multiples of SIZE_MULTIPLE)."""

    name: str
    width: tuple[int, int]
    height: tuple[int, int]
    opt: tuple[int, int]  # (width, height) TensorRT tunes for

    def covers(self, width: int, height: int) -> bool:
        return self.width[0] <= width <= self.width[1] and self.height[0] <= height <= self.height[1]


@dataclass(frozen=True)
class EngineLimits:
    """What requests the engines serve; the denoising loop checks requests against it (LIMITS_FILE)."""

    max_images: int = 4
    max_chunks: int = 3  # 77-token chunks per prompt (231 CLIP tokens)
    vae_batch: int = 1  # images per VAE call: the decoder's activations at 1536x896 are GBs each
    sizes: tuple[SizeProfile, ...] = (
        SizeProfile("square", (896, 1152), (896, 1152), (1024, 1024)),
        SizeProfile("wide", (1152, 1536), (640, 896), (1216, 832)),
        SizeProfile("tall", (640, 896), (1152, 1536), (832, 1216)),
    )

    @property
    def unet_batch(self) -> int:
        return 2 * self.max_images  # the CFG pair of every image in one call

    @property
    def text_batch(self) -> int:
        return 2 * self.max_chunks  # prompt and negative prompt, one row per chunk

    def max_batch(self, graph: str) -> int:
        return {"text_encoder": self.text_batch, "text_encoder_2": self.text_batch,
                "unet": self.unet_batch, "vae_decoder": self.vae_batch, "vae_encoder": self.vae_batch}[graph]

    def to_json(self) -> str:
        data = asdict(self)
        data["max_batch"] = {g: self.max_batch(g) for g in GRAPHS}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "EngineLimits":
        data = json.loads(text)
        data.pop("max_batch", None)
        sizes = tuple(SizeProfile(s["name"], tuple(s["width"]), tuple(s["height"]), tuple(s["opt"]))
                      for s in data.pop("sizes"))
        return cls(**data, sizes=sizes)

    @classmethod
    def load(cls, components_dir: Path) -> "EngineLimits | None":
        """The limits of the engines this repository serves, or None (ONNX graphs: no extra limits)."""
        path = Path(components_dir) / LIMITS_FILE
        return cls.from_json(path.read_text()) if path.is_file() else None


TENSORRT_LIMITS = EngineLimits()


@dataclass(frozen=True)
class EngineSpec:
    graph: str
    onnx: Path
    plan: Path
    profiles: tuple[tuple[Shapes, Shapes, Shapes], ...]  # (min, opt, max) per optimization profile
    fp16: bool = True

    # The first profile, for callers that look at one.
    @property
    def min(self) -> Shapes:
        return self.profiles[0][0]

    @property
    def opt(self) -> Shapes:
        return self.profiles[0][1]

    @property
    def max(self) -> Shapes:
        return self.profiles[0][2]

    def largest(self, name: str) -> tuple[int, ...]:
        """The largest shape any profile allows for input `name` (elementwise over profiles)."""
        return tuple(max(dims) for dims in zip(*(p[2][name] for p in self.profiles)))

    def trtexec_command(self, workspace_mib: int = 8192) -> list[str]:
        def shapes(s: Shapes) -> str:
            return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in s.items())

        cmd = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.plan}"]
        for lo, opt, hi in self.profiles:  # trtexec starts a new profile at each --minShapes
            cmd += [f"--minShapes={shapes(lo)}", f"--optShapes={shapes(opt)}", f"--maxShapes={shapes(hi)}"]
        cmd.append(f"--memPoolSize=workspace:{workspace_mib}M")
        return cmd + (["--fp16"] if self.fp16 else [])


def engine_specs(onnx_files: Mapping[str, Path], manifest: Manifest, plans: Mapping[str, Path],
                 limits: EngineLimits = TENSORRT_LIMITS) -> list[EngineSpec]:
    """The profiles of each graph, from the manifest's tensor shapes and the engines' limits."""
    io = manifest.io
    channels = io["unet"]["inputs"]["sample"][1][1]
    hidden = io["unet"]["inputs"]["encoder_hidden_states"][1][2]
    pooled = io["unet"]["inputs"]["text_embeds"][1][1]
    time_ids = io["unet"]["inputs"]["time_ids"][1][1]

    def unet(batch: int, width: int, height: int, chunks: int) -> Shapes:
        return {"sample": (batch, channels, height // VAE_FACTOR, width // VAE_FACTOR), "timestep": (batch, 1),
                "encoder_hidden_states": (batch, TOKENS * chunks, hidden), "text_embeds": (batch, pooled),
                "time_ids": (batch, time_ids)}

    def vae(batch: int, width: int, height: int) -> Shapes:
        return {"latent_sample": (batch, channels, height // VAE_FACTOR, width // VAE_FACTOR)}

    def image(batch: int, width: int, height: int) -> Shapes:
        return {"sample": (batch, 3, height, width)}

    text = (({"input_ids": (1, TOKENS)}, {"input_ids": (2, TOKENS)}, {"input_ids": (limits.text_batch, TOKENS)}),)
    # opt: one image with CFG (batch 2), a one-chunk prompt, the profile's own common size.
    unet_profiles = tuple(
        (unet(1, s.width[0], s.height[0], 1), unet(2, *s.opt, 1),
         unet(limits.unet_batch, s.width[1], s.height[1], limits.max_chunks)) for s in limits.sizes)
    vae_profiles = tuple(
        (vae(1, s.width[0], s.height[0]), vae(1, *s.opt), vae(limits.vae_batch, s.width[1], s.height[1]))
        for s in limits.sizes)
    encoder_profiles = tuple(
        (image(1, s.width[0], s.height[0]), image(1, *s.opt), image(limits.vae_batch, s.width[1], s.height[1]))
        for s in limits.sizes)
    profiles = {"text_encoder": text, "text_encoder_2": text, "unet": unet_profiles, "vae_decoder": vae_profiles,
                "vae_encoder": encoder_profiles}
    fp16 = manifest.dtype == "fp16"
    # A graph the manifest lacks (a repository exported before the VAE encoder) gets no engine.
    return [EngineSpec(g, Path(onnx_files[g]), Path(plans[g]), profiles[g], fp16=fp16) for g in GRAPHS
            if g in io]


def check_limits(limits: EngineLimits) -> None:
    """Every size preset is served by some profile; every profile edge is a valid request size."""
    for name, (w, h) in SIZE_PRESETS.items():
        if not any(s.covers(w, h) for s in limits.sizes):
            raise SotaiError(f"no TensorRT profile covers the size preset {name}")
    for s in limits.sizes:
        for v in (*s.width, *s.height, *s.opt):
            if v % SIZE_MULTIPLE:
                raise SotaiError(f"profile {s.name}: {v} is not a multiple of {SIZE_MULTIPLE}")


def activation_maxima(spec: EngineSpec) -> dict[str, int]:
    """The shape products that size an execution context's activations, at the largest profile.

    A UNet's convolutions hold batch x latent pixels x channels; its cross-attention batch x latent
    pixels x tokens; the VAE decoder batch x image pixels (x up to 512 channels at full size). These
    are what a profile decides; the engine's real figure is printed once it is built.
    """
    if spec.graph == "unet":
        out = []
        for _, _, hi in spec.profiles:
            b, _, h, w = hi["sample"]
            tokens = hi["encoder_hidden_states"][1]
            out.append({"latent_pixels": b * h * w, "cross_attention": b * h * w * tokens})
        return {k: max(o[k] for o in out) for k in out[0]}
    if spec.graph == "vae_encoder":
        return {"image_pixels": max(hi["sample"][0] * hi["sample"][2] * hi["sample"][3] for _, _, hi in spec.profiles)}
    if spec.graph == "vae_decoder":
        return {"image_pixels": max(hi["latent_sample"][0] * hi["latent_sample"][2] * hi["latent_sample"][3]
                                    * VAE_FACTOR ** 2 for _, _, hi in spec.profiles)}
    return {"tokens": max(hi["input_ids"][0] * hi["input_ids"][1] for _, _, hi in spec.profiles)}


def repository_specs(repository: Path, limits: EngineLimits = TENSORRT_LIMITS) -> list[EngineSpec]:
    """Specs for an exported Triton repository (<graph>/1/model.onnx, diffusion/1/components)."""
    manifest = Manifest.load(repository / "diffusion" / "1" / COMPONENTS_DIR)
    return engine_specs({g: repository / g / "1" / "model.onnx" for g in GRAPHS}, manifest,
                        {g: repository / g / "1" / "model.plan" for g in GRAPHS}, limits)


# -- the builder ------------------------------------------------------------------------------------

BuilderName = Literal["python", "trtexec"]
NO_BUILDER = (
    "TARGET=tensorrt needs TensorRT {version} to build the engines, and this machine has neither the "
    "`tensorrt` Python module nor `trtexec` on PATH. Build them in the serving image, on the GPU host: "
    "`docker compose run --rm export` (it has TensorRT {version}: docker/requirements-gpu.txt), or install "
    "`tensorrt-cu12-bindings=={version}` next to a TensorRT {version} runtime; or export with TARGET=gpu "
    "to serve the ONNX graphs with onnxruntime instead"
)


def _tensorrt_module():
    """The TensorRT Python API: `tensorrt` (full install) or `tensorrt_bindings` (the bindings wheel)."""
    try:
        import tensorrt as trt

        return trt
    except ImportError:
        pass
    try:
        import tensorrt_bindings as trt

        return trt
    except (ImportError, OSError):  # OSError: the wheel is there but libnvinfer.so.10 is not
        return None


def require_builder() -> tuple[BuilderName, str]:
    """(builder, TensorRT version) or a SotaiError saying what to run; checked before the long export."""
    trt = _tensorrt_module()
    if trt is not None:
        how, version = "python", trt.__version__
    elif shutil.which("trtexec"):
        how, version = "trtexec", _trtexec_version()
    else:
        raise SotaiError(NO_BUILDER.format(version=IMAGE_TENSORRT_VERSION))
    if version.split(".")[:2] != IMAGE_TENSORRT_VERSION.split(".")[:2]:
        raise SotaiError(
            f"TensorRT {version} ({how}) is installed, but the serving image's Triton loads only plans built by "
            f"TensorRT {IMAGE_TENSORRT_VERSION}: build in the image (`docker compose run --rm export`)")
    return how, version


def trtexec_version(banner: str) -> str:
    """"[TensorRT v100500]" (trtexec's banner) -> "10.5.0"; "unknown" when it says none."""
    import re

    match = re.search(r"TensorRT v(\d+)", banner)
    if not match:
        return "unknown"
    n = int(match.group(1))
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def _trtexec_version() -> str:
    import subprocess

    result = subprocess.run(["trtexec", "--help"], capture_output=True, text=True)
    return trtexec_version(result.stdout + result.stderr)


def engine_key(spec: EngineSpec, tensorrt_version: str, workspace_mib: int) -> str:
    """The hash of everything a plan depends on: the ONNX bytes (and external data), the profiles,
    the precision, the workspace and the TensorRT version."""
    digest = hashlib.sha256()
    for f in sorted(spec.onnx.parent.glob(spec.onnx.name + "*")):  # model.onnx, model.onnx_data
        if f.name.endswith((".plan", KEY_SUFFIX)):
            continue
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    digest.update(json.dumps({"profiles": spec.profiles, "fp16": spec.fp16, "workspace_mib": workspace_mib,
                              "tensorrt": tensorrt_version}, sort_keys=True).encode())
    return digest.hexdigest()


def plan_is_current(spec: EngineSpec, key: str) -> bool:
    key_file = spec.plan.with_name(spec.plan.name + KEY_SUFFIX)
    return spec.plan.is_file() and spec.plan.stat().st_size > 0 and key_file.is_file() and key_file.read_text().strip() == key


Build = Callable[[EngineSpec, int], "int | None"]  # builds spec.plan; returns its context memory (bytes) if known


def build_engines(
    repository: Path, *, build: Build | None = None, tensorrt_version: str | None = None,
    workspace_mib: int = 8192, limits: EngineLimits = TENSORRT_LIMITS, echo: Callable[[str], None] = print,
) -> dict[str, bool]:
    """Build every graph's engine unless its plan is current; returns {graph: True if built now}.

    build/tensorrt_version default to the machine's TensorRT (`require_builder`, which fails with the
    command to run when there is none). Writes LIMITS_FILE beside the diffusion components.
    """
    from tqdm.auto import tqdm

    check_limits(limits)
    if build is None:
        how, tensorrt_version = require_builder()
        build = _build_with_api if how == "python" else _build_with_trtexec
    specs = repository_specs(Path(repository), limits)
    built: dict[str, bool] = {}
    for spec in tqdm(specs, desc="TensorRT engines", unit="engine"):
        maxima = ", ".join(f"{k} {v:,}" for k, v in activation_maxima(spec).items())
        key = engine_key(spec, tensorrt_version, workspace_mib)
        if plan_is_current(spec, key):
            echo(f"[tensorrt] {spec.graph}: up to date ({spec.plan}); largest profile: {maxima}")
            built[spec.graph] = False
            continue
        echo(f"[tensorrt] {spec.graph}: building {len(spec.profiles)} profile(s), largest: {maxima}")
        spec.plan.with_name(spec.plan.name + KEY_SUFFIX).unlink(missing_ok=True)
        memory = build(spec, workspace_mib)
        if not spec.plan.is_file():
            raise SotaiError(f"tensorrt:{spec.graph}: the builder wrote no plan at {spec.plan}")
        if memory is not None:
            echo(f"[tensorrt] {spec.graph}: execution context needs {memory / 2**30:.2f} GiB of GPU memory")
        spec.plan.with_name(spec.plan.name + KEY_SUFFIX).write_text(key + "\n")
        built[spec.graph] = True
    components = Path(repository) / "diffusion" / "1" / COMPONENTS_DIR
    (components / LIMITS_FILE).write_text(limits.to_json())
    return built


def _build_with_trtexec(spec: EngineSpec, workspace_mib: int) -> None:
    import subprocess

    subprocess.run(spec.trtexec_command(workspace_mib), check=True)
    return None


def _build_with_api(spec: EngineSpec, workspace_mib: int) -> int:
    from sotai.errors import StageError

    trt = _tensorrt_module()
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
    for lo, opt, hi in spec.profiles:
        profile = builder.create_optimization_profile()
        for name in lo:
            profile.set_shape(name, lo[name], opt[name], hi[name])
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise StageError(f"tensorrt:{spec.graph}", f"TensorRT could not build an engine from {spec.onnx}")
    spec.plan.write_bytes(bytes(engine))
    runtime = trt.Runtime(logger)
    loaded = runtime.deserialize_cuda_engine(bytes(engine))
    return int(getattr(loaded, "device_memory_size_v2", loaded.device_memory_size))


def shell_commands(repository: Path, workspace_mib: int = 8192) -> list[str]:
    """The trtexec commands that build this repository's engines (for a host with TensorRT)."""
    return [shlex.join(s.trtexec_command(workspace_mib)) for s in repository_specs(Path(repository))]
