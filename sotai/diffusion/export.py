"""Export an SDXL diffusers snapshot to the ONNX graphs the denoising loop calls, plus its components.

Layout written to out_dir:
    text_encoder/model.onnx    input_ids -> last_hidden_state, pooler_output, hidden_states.0..L
    text_encoder_2/model.onnx  input_ids -> text_embeds, last_hidden_state, hidden_states.0..L
    unet/model.onnx            sample, timestep, encoder_hidden_states, text_embeds, time_ids -> out_sample
    vae_decoder/model.onnx     latent_sample -> sample
    vae_encoder/model.onnx     sample (image, -1..1) -> latent_parameters (mean and log-variance, 2 x 4 channels)
    components/                tokenizer/, tokenizer_2/, scheduler/, vae/config.json, model_index.json,
                               sotai_diffusion.json (the manifest: tensor names, dtype, model name)

Every axis the loop varies is dynamic: batch (dim 0 everywhere, so Triton can batch every input;
the UNet's timestep, a scalar in optimum's default export, is a [batch, 1] column here), the token sequence
(prompts longer than 77 tokens are encoded in chunks and concatenated) and the latent height/width.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
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


def copy_components(snapshot_dir: Path, components_dir: Path, *, vae_source: Path | None = None) -> None:
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
    shutil.copy2((vae_source or snapshot_dir / "vae") / "config.json", components_dir / "vae" / "config.json")
    shutil.copy2(snapshot_dir / "model_index.json", components_dir / "model_index.json")


# Parts this large are traced over file-backed weights: an fp32 SDXL UNet (2.6 B parameters) is 10.3 GB,
# and the ONNX export holds a second full copy while it writes the external data (together past 20 GB:
# killed on a 24 GB machine). An fp32 copy of the weights on disk, memory-mapped, is page cache the
# kernel can drop instead; only the export's own copy is process memory.
MAPPED_TRACE_MIN_PARAMETERS = 1_000_000_000
# Small dummy latents keep the trace and the validation quick; every axis stays dynamic.
LARGE_PART_INPUT_SHAPES = {"batch_size": 1, "height": 32, "width": 32, "sequence_length": 77}


def export_sdxl_onnx(
    snapshot_dir: Path,
    out_dir: Path,
    *,
    fp16: bool = False,
    model_name: str | None = None,
    vae_dir: Path | None = None,
    log=None,
) -> dict[str, Path]:
    """Export `snapshot_dir` (StableDiffusionXLPipeline.save_pretrained layout) into out_dir.

    One part at a time (text_encoder, text_encoder_2, unet, vae_decoder, vae_encoder), each loaded alone and
    freed before the next, with optimum's per-part ONNX configs; time and peak RSS are printed per part.
    fp16=True: half-precision graphs for GPU hosts, converted with onnxruntime's float16 converter;
    a VAE whose config says `force_upcast` (the original SDXL VAE overflows in fp16) stays fp32, as
    diffusers upcasts it. A UNet of over MAPPED_TRACE_MIN_PARAMETERS is traced over a memory-mapped
    fp32 copy of its weights (written tensor by tensor beside the output, removed after).
    vae_dir: a replacement VAE snapshot (madebyollin/sdxl-vae-fp16-fix: fp16-safe, force_upcast
    false) used instead of the snapshot's. model_name: written into every PNG (default: the folder name).
    Returns {"text_encoder": path, "text_encoder_2": ..., "unet": ..., "vae_decoder": ..., "vae_encoder": ..., "components": dir}.
    """
    import time

    from tqdm.auto import tqdm

    log = log or tqdm.write
    snapshot_dir, out_dir = Path(snapshot_dir), Path(out_dir)
    _check_snapshot(snapshot_dir)
    vae_source = Path(vae_dir) if vae_dir is not None else snapshot_dir / "vae"
    if not (vae_source / "config.json").is_file():
        raise MissingArtifact("replacement VAE snapshot", vae_source, "make export PROFILE=animagine",
                              detail="config.json missing")
    name = model_name or _guess_model_name(snapshot_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae_config = json.loads((vae_source / "config.json").read_text())
    paths: dict[str, Path] = {}
    with tqdm(total=len(GRAPHS) + 1, desc="diffusion export", unit="part") as bar:
        for graph in GRAPHS:
            bar.set_postfix_str(graph)
            started = time.monotonic()
            _reset_peak_rss()  # each part's figure is its own peak, not the running maximum
            dest = out_dir / graph
            shutil.rmtree(dest, ignore_errors=True)
            mapped = export_part(snapshot_dir, graph, dest, vae_source=vae_source, scratch=out_dir / "_weights")
            paths[graph] = dest / "model.onnx"
            keep_fp32 = graph in ("vae_decoder", "vae_encoder") and vae_config.get("force_upcast", False)
            if fp16 and not keep_fp32:
                # keep_fp32: the original SDXL VAE overflows in fp16; diffusers upcasts it too.
                convert_to_fp16(paths[graph], log=log)
            log(f"[export] {graph}: {time.monotonic() - started:.0f} s, peak RSS {_peak_rss_gib():.1f} GiB"
                + (" (traced over memory-mapped fp32 weights)" if mapped else ""))
            bar.update()
        bar.set_postfix_str("components + manifest")
        components_dir = out_dir / COMPONENTS_DIR
        copy_components(snapshot_dir, components_dir, vae_source=vae_source)
        Manifest.from_graphs({g: paths[g] for g in GRAPHS}, model_name=name, dtype="fp16" if fp16 else "fp32").save(
            components_dir
        )
        paths["components"] = components_dir
        bar.update()
    return paths


def export_part(snapshot_dir: Path, graph: str, dest: Path, *, vae_source: Path, scratch: Path) -> bool:
    """Trace one graph into dest/model.onnx (+ model.onnx_data past 2 GB); True when traced over mapped weights."""
    import gc

    import torch
    from optimum.exporters.onnx.convert import export, validate_model_outputs

    model, config, mapped = _part_for_export(snapshot_dir, graph, vae_source, scratch)
    dest.mkdir(parents=True, exist_ok=True)
    output = dest / "model.onnx"
    shapes = dict(LARGE_PART_INPUT_SHAPES) if mapped else {}
    with warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in diffusers; the validation below is
        # the check that matters.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"Constant folding|Exporting aten::index")
        _, outputs = export(model=model, config=config, output=output, device="cpu", input_shapes=shapes)
        if not mapped:
            # A 10 GB graph in onnxruntime next to the PyTorch model would need both in memory at once:
            # large parts are checked through the served repository instead (bench/README.md, real size).
            validate_model_outputs(config=config, reference_model=model, onnx_model=output,
                                   onnx_named_outputs=outputs, atol=ATOL_FP32, use_subprocess=False)
    del model
    gc.collect()
    shutil.rmtree(scratch, ignore_errors=True)
    return mapped


def _part_for_export(snapshot_dir: Path, graph: str, vae_source: Path, scratch: Path):
    """(model, optimum OnnxConfig, mapped) for one graph, as optimum's SDXL export sets them up."""
    import torch
    from optimum.exporters.tasks import TasksManager
    from optimum.exporters.utils import _get_diffusers_submodel_type

    if graph == "unet":
        from diffusers import UNet2DConditionModel

        config = _unet_onnx_config(snapshot_dir, "fp32")
        if _parameter_count(snapshot_dir / "unet") < MAPPED_TRACE_MIN_PARAMETERS:
            model = UNet2DConditionModel.from_pretrained(snapshot_dir / "unet", torch_dtype=torch.float32).eval()
            return model, config, False
        with torch.device("meta"):
            model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(snapshot_dir / "unet"))
        weights = _mapped_fp32_weights(snapshot_dir / "unet", scratch)
        model.load_state_dict(weights, assign=True, strict=True)
        return model.eval(), config, True
    if graph == "vae_decoder":
        from diffusers import AutoencoderKL

        model = AutoencoderKL.from_pretrained(vae_source, torch_dtype=torch.float32).eval()
        model.forward = lambda latent_sample: model.decode(z=latent_sample)
        model.config.export_model_type = "vae-decoder"
        task = "semantic-segmentation"
    elif graph == "vae_encoder":
        from diffusers import AutoencoderKL

        # The distribution's parameters, not a sample: the loop draws the sample with the request's
        # generator, as diffusers' img2img does (retrieve_latents).
        model = AutoencoderKL.from_pretrained(vae_source, torch_dtype=torch.float32).eval()
        model.forward = lambda sample: {"latent_parameters": model.encode(x=sample)["latent_dist"].parameters}
        model.config.export_model_type = "vae-encoder"
        task = "semantic-segmentation"
    else:
        import transformers

        cls = transformers.CLIPTextModel if graph == "text_encoder" else transformers.CLIPTextModelWithProjection
        model = cls.from_pretrained(snapshot_dir / graph, torch_dtype=torch.float32).eval()
        model.config.output_hidden_states = True
        model.text_model.config.output_hidden_states = True
        model.config.export_model_type = _get_diffusers_submodel_type(model)  # as optimum's SDXL export names it
        task = "feature-extraction"
    constructor = TasksManager.get_exporter_config_constructor(model=model, exporter="onnx", library_name="diffusers",
                                                               task=task)
    return model, constructor(model.config, int_dtype="int64", float_dtype="fp32"), False


def _mapped_fp32_weights(part_dir: Path, scratch: Path) -> dict:
    """The part's weights as fp32 tensors backed by a memory-mapped file (written one tensor at a time)."""
    import mmap

    import torch
    from safetensors import safe_open

    from sotai.export.snapshots import write_safetensors

    (source,) = sorted(part_dir.glob("*.safetensors"))
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / "fp32.safetensors"

    class Widened:  # a mapping write_safetensors reads lazily: one fp32 tensor in memory at a time
        def __init__(self, handle):
            self.handle = handle

        def specs(self):
            for key in self.handle.keys():
                shape = tuple(self.handle.get_slice(key).get_shape())
                count = 1
                for d in shape:
                    count *= d
                yield key, torch.float32, shape, 4 * count

        def items(self):
            for key in self.handle.keys():
                yield key, self.handle.get_tensor(key).float()

    with safe_open(str(source), framework="pt") as handle:
        write_safetensors(Widened(handle), target)
    with open(target, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    start = 8 + length
    weights = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        count = (end - begin) // 4
        # Read-only pages of the page cache: the kernel can drop and reread them under memory pressure.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": the trace only reads
            tensor = torch.frombuffer(data, dtype=torch.float32, count=count, offset=start + begin) if count else \
                torch.zeros(0)
        weights[key] = tensor.reshape(meta["shape"])
    return weights


def _parameter_count(part_dir: Path) -> int:
    """Parameters in a part's safetensors, read from the headers (no weights loaded)."""
    total = 0
    for f in part_dir.glob("*.safetensors"):
        with open(f, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for key, meta in header.items():
            if key != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total


def _reset_peak_rss() -> None:
    """Reset the process's peak RSS (VmHWM) where Linux allows it (writing 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not permitted: _peak_rss_gib falls back to the process-lifetime peak
        pass


def _peak_rss_gib() -> float:
    """Peak RSS since the last _reset_peak_rss (VmHWM), else since the process started (ru_maxrss).

    It counts the resident pages of memory-mapped weight files too (page cache the kernel can drop)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def convert_to_fp16(onnx_path: Path, log=None) -> dict:
    """Rewrite an fp32 ONNX file as fp16 (inputs and outputs too), in place; returns figures of the run.

    onnxruntime's converter keeps the ops it knows to be unsafe in fp16 (its default block list)
    in fp32 behind casts, plus Resize, whose `scales` input must stay fp32 (the upsamplers' nearest
    2x Resize is exact in either precision). The UNet's `timestep` input and its sinusoidal
    embedding stay fp32, as in diffusers (sotai.diffusion.fp16).

    A graph with external data (text_encoder_2, the UNet: 2.8 and 10.3 GB of fp32 weights) is
    converted without loading its weights: the converter runs on the graph alone (it only retypes
    initializers whose data is not loaded) and the weights are then streamed tensor by tensor from
    the fp32 `model.onnx_data` into a new fp16 one (sotai.diffusion.fp16.stream_external_data), so
    peak memory is the graph plus one tensor, never a whole model. Graphs without external data are
    converted in memory as before.
    """
    import time

    import onnx
    from onnx.external_data_helper import uses_external_data
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from sotai.diffusion.fp16 import (all_tensors, drop_cast_round_trips, external_key, inline_constant_data,
                                     sort_topologically, stream_external_data, timestep_embedding_nodes)

    started = time.monotonic()
    # Constant nodes' bytes go back into the graph first (the real exports keep them in the data file):
    # shape inference cannot read values it needs (Resize scales, Reshape shapes) from external data,
    # and a value it cannot type gets no Cast from the converter (an fp32 Resize feeding an fp16 Conv).
    graph = onnx.load(str(onnx_path), load_external_data=False)
    source = onnx_path
    if inline_constant_data(graph, onnx_path.parent):
        source = onnx_path.with_name("constants-inline.onnx")
        onnx.save(graph, str(source))  # beside the original: its initializers still point into the same file
    del graph
    # The converter needs every value's type; infer them from the path (works past protobuf's 2 GB,
    # unlike inference on a loaded proto), beside the original so external data still resolves.
    inferred = onnx_path.with_name("inferred.onnx")
    try:
        onnx.shape_inference.infer_shapes_path(str(source), str(inferred))
        model = onnx.load(str(inferred), load_external_data=False)
    finally:
        inferred.unlink(missing_ok=True)
        if source != onnx_path:
            source.unlink()
    # Constant nodes' tensors can live in the data file too (exporters externalize them as well): every
    # tensor of the graph counts, keyed by where its bytes are, since a Constant's tensor has no name.
    external = any(uses_external_data(t) for t in all_tensors(model))
    dtypes_before = {external_key(t): t.data_type for t in all_tensors(model) if uses_external_data(t)}
    embedding = timestep_embedding_nodes(model)
    with _value_infos_from_dims():
        model = convert_float_to_float16(
            model, keep_io_types=["timestep"] if embedding else False, disable_shape_infer=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Resize"], node_block_list=embedding,
        )
    drop_cast_round_trips(model)
    sort_topologically(model.graph)
    figures = {"external_data": external}
    if external:
        # Retyped but not converted: their bytes are still the fp32 ones in the old data file.
        narrowed = {key for key, dtype in dtypes_before.items() if dtype == onnx.TensorProto.FLOAT}
        data_tmp = onnx_path.with_name("model.fp16.onnx_data")
        figures.update(stream_external_data(model, onnx_path.parent, data_tmp, "model.onnx_data", narrowed))
        graph_tmp = onnx_path.with_name("model.fp16.onnx")
        onnx.save(model, str(graph_tmp))  # the graph only: its tensors point into data_tmp's final name
        for stale in onnx_path.parent.glob("model.onnx*"):
            stale.unlink()
        data_tmp.rename(onnx_path.with_name("model.onnx_data"))
        graph_tmp.rename(onnx_path)
    else:
        for stale in onnx_path.parent.glob("model.onnx*"):
            stale.unlink()
        onnx.save(model, str(onnx_path))
    figures["seconds"] = time.monotonic() - started
    if log is not None:
        log(f"[fp16] {onnx_path.parent.name}: {figures['seconds']:.0f} s"
            + (f", streamed {figures['tensors']} tensors ({figures['narrowed']} to fp16), "
               f"{figures['bytes_in'] / 1e9:.2f} -> {figures['bytes_out'] / 1e9:.2f} GB" if external else ""))
    return figures


@contextlib.contextmanager
def _value_infos_from_dims():
    """The converter types each converted initializer's value from `to_array(tensor).shape`, which reads
    the data (from the current directory, for external data not loaded). Its dims say the same shape
    without reading anything: the converter's helper is swapped for that while it runs."""
    from onnx import helper
    from onnxruntime.transformers import float16

    original = float16.make_value_info_from_tensor
    float16.make_value_info_from_tensor = lambda t: helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
    try:
        yield
    finally:
        float16.make_value_info_from_tensor = original


def _guess_model_name(snapshot_dir: Path) -> str:
    # hub snapshots live in .../models--org--name/snapshots/<sha>; local builds are named by their folder.
    for part in reversed(snapshot_dir.resolve().parts):
        if part.startswith("models--"):
            return part[len("models--"):].split("--")[-1]
    return snapshot_dir.resolve().name
