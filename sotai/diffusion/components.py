"""The exported diffusion stage's manifest: which tensors the loop reads, in what dtype, and every graph's I/O.

Written by `export_sdxl_onnx` to components/sotai_diffusion.json; read by `SdxlGenerator` and by
whoever renders Triton configs for the graphs (the `io` table has each tensor's dtype and shape,
-1 for a dynamic axis, dim 0 always the batch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sotai.errors import MissingArtifact

GRAPHS = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder")
# Graphs a repository may lack and still serve txt2img: one exported before img2img had no VAE encoder.
# The loop refuses what needs one (`init_image`, an image-space hires upscaler) and says to re-export.
OPTIONAL_GRAPHS = ("vae_encoder",)
COMPONENTS_DIR = "components"
MANIFEST = "sotai_diffusion.json"

_ONNX_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 16: "bfloat16"}


@dataclass(frozen=True)
class Manifest:
    model_name: str
    dtype: str  # "fp32" | "fp16": the graphs' float inputs/outputs
    text_encoder_hidden: str  # penultimate layer of text_encoder, e.g. "hidden_states.11"
    text_encoder_2_hidden: str  # penultimate layer of text_encoder_2, e.g. "hidden_states.31"
    text_encoder_2_pooled: str  # "text_embeds": the projected pooled output SDXL conditions on
    io: dict  # {graph: {"inputs": {name: [dtype, shape]}, "outputs": {...}}}

    @classmethod
    def from_graphs(cls, graphs: dict[str, Path], *, model_name: str, dtype: str) -> "Manifest":
        io = {name: graph_io(path) for name, path in graphs.items()}
        return cls(
            model_name=model_name,
            dtype=dtype,
            text_encoder_hidden=_penultimate(io["text_encoder"]["outputs"]),
            text_encoder_2_hidden=_penultimate(io["text_encoder_2"]["outputs"]),
            text_encoder_2_pooled="text_embeds",
            io=io,
        )

    def save(self, components_dir: Path) -> Path:
        path = Path(components_dir) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, components_dir: Path) -> "Manifest":
        path = Path(components_dir) / MANIFEST
        if not path.is_file():
            raise MissingArtifact("diffusion components manifest", path, "make export")
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def input_dtype(self, graph: str, name: str) -> str:
        return self.io[graph]["inputs"][name][0]


def graph_io(path: Path) -> dict:
    """Input/output names, numpy dtypes and shapes (-1 = dynamic) of an ONNX file, weights not loaded."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values) -> dict:
        out = {}
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out[v.name] = [_ONNX_TYPES.get(t.elem_type, str(t.elem_type)), dims]
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def _penultimate(outputs: dict) -> str:
    # hidden_states.0 is the embedding output, hidden_states.L the last layer; SDXL conditions on L-1
    # (diffusers: `hidden_states[-2]`).
    layers = sorted(int(n.split(".")[1]) for n in outputs if n.startswith("hidden_states."))
    if len(layers) < 2:
        raise MissingArtifact(
            "text encoder graph with hidden states", "text_encoder", "make export",
            detail="export with output_hidden_states (optimum does this for SDXL)",
        )
    return f"hidden_states.{layers[-2]}"
