"""PNG encoding with an A1111-style `parameters` text chunk, so other tools can read the settings back.

The chunk is three lines, as the AUTOMATIC1111 web UI writes it (and Civitai, ComfyUI readers parse it):

    <prompt>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 832x1216, Model: animagine-xl-3.0
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

PARAMETERS_KEY = "parameters"


@dataclass(frozen=True)
class PngParameters:
    prompt: str
    negative_prompt: str
    steps: int
    sampler: str
    cfg_scale: float
    seed: int
    width: int
    height: int
    model: str
    batch_size: int = 1
    batch_pos: int = 0
    denoising_strength: float | None = None  # img2img and hires fix
    hires: dict = field(default_factory=dict)  # A1111's "Hires upscale", "Hires steps", "Hires upscaler" ...

    def to_text(self) -> str:
        fields = [
            f"Steps: {self.steps}",
            f"Sampler: {self.sampler}",
            f"CFG scale: {self.cfg_scale:g}",
            f"Seed: {self.seed}",
            f"Size: {self.width}x{self.height}",
            f"Model: {_one_line(self.model)}",
        ]
        if self.batch_size > 1:
            # Images of one request share one seed (one noise tensor); A1111 names the position this way.
            fields += [f"Batch size: {self.batch_size}", f"Batch pos: {self.batch_pos}"]
        if self.denoising_strength is not None:
            fields.append(f"Denoising strength: {self.denoising_strength:g}")
        fields += [f"{k}: {v}" for k, v in self.hires.items()]
        return f"{_one_line(self.prompt)}\nNegative prompt: {_one_line(self.negative_prompt)}\n" + ", ".join(fields)


def _one_line(text: str) -> str:
    # The format is line-based; a newline inside the prompt would end the prompt line early.
    return " ".join(text.splitlines())


def parse_parameters(text: str) -> dict[str, str]:
    """Read a `parameters` chunk back: {"prompt", "negative_prompt", "Steps", "Sampler", ...}."""
    lines = text.split("\n")
    out = {"prompt": lines[0], "negative_prompt": ""}
    rest = lines[1:]
    if rest and rest[0].startswith("Negative prompt: "):
        out["negative_prompt"] = rest[0][len("Negative prompt: "):]
        rest = rest[1:]
    for item in ", ".join(rest).split(", "):
        key, sep, value = item.partition(": ")
        if sep:
            out[key] = value
    return out


def encode_png(image: np.ndarray, parameters: PngParameters, *, compress_level: int = 4) -> bytes:
    """HxWx3 uint8 -> PNG bytes with the `parameters` chunk (level 4: ~2x faster than 6, ~5% larger)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, parameters.to_text())
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def read_png_parameters(png: bytes) -> dict[str, str]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return parse_parameters(im.text[PARAMETERS_KEY])


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes -> HxWx3 uint8 pixels (compare these, never the bytes: the text chunk differs per image)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))
