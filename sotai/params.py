"""Every generation parameter, declared once as data (as optimum declares an export config).

A `Param` says what a parameter is: its kind and limit, its default (or the setting that gives the
server's default), whether a Triton model may lack its input, and its help text. Everything else is
derived from the table, never written again by hand:

- `GenerationParams` (the dataclass the pipeline reads) and its `checked()` (sotai.limits' checks,
  one message per limit, the same on every surface);
- the Triton input tensors (`Param.tensor`, `Param.dtype`; sotai.contracts builds the `diffusion`,
  `diffusion_stream` and `sotai` configs from them);
- the request rows a client sends (`tensor_values`, `request_rows`) and the rows an adapter reads back
  (`params_from_row`);
- the gateway's pydantic fields and OpenAPI limits (`Param.json_schema`), and its error words;
- the CLI flags (`add_cli_flags`, `params_from_cli`).

Adding a parameter is one entry here, the code that uses its value, and its tests.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sotai import limits as L
from sotai.diffusion.hires import HR_RESIZE_RANGE, HR_SCALE_RANGE, HR_UPSCALERS
from sotai.errors import InvalidInput

Kind = Literal["int", "float", "size", "choice", "text", "bool", "image"]

# Triton dtype of each kind (an entry may override it, e.g. SEED is INT64).
_DTYPES = {"int": "INT32", "size": "INT32", "float": "FP32", "choice": "STRING", "text": "STRING", "bool": "BOOL",
           "image": "STRING"}
_PYTHON_TYPES = {"int": int, "size": int, "float": float, "choice": str, "text": str, "bool": bool,
                 "image": bytes}


@dataclass(frozen=True)
class Param:
    name: str  # the field's name in GenerationParams, JSON bodies and (dashed) CLI flags
    kind: Kind
    default: Any
    help: str
    limit: tuple = ()  # int/float: (lo, hi); choice: the choices; text: (max_chars,)
    # A Triton model may lack the input (a repository exported before the parameter existed); the
    # adapter then uses `default`. Required inputs are the ones every repository has had.
    optional: bool = True
    setting: str | None = None  # the Settings field with the server's (profile's) default
    dtype: str | None = None  # Triton dtype, when not the kind's

    # -- derived ---------------------------------------------------------------------------------

    @property
    def tensor(self) -> str:
        return self.name.upper()

    @property
    def triton_dtype(self) -> str:
        return self.dtype or _DTYPES[self.kind]

    @property
    def python_type(self) -> type:
        return _PYTHON_TYPES[self.kind]

    def check(self, value: object) -> object:
        """The value, validated and normalised to its Python type; InvalidInput names the field and the limit."""
        if self.kind == "int":
            return L.check_int(self.name, value, *self.limit)
        if self.kind == "float":
            return L.check_float(self.name, value, *self.limit)
        if self.kind == "size":
            return L.check_size(self.name, value)
        if self.kind == "choice":
            return L.check_choice(self.name, value, self.limit)
        if self.kind == "bool":
            return L.check_bool(self.name, value)
        if self.kind == "image":
            return L.check_image(self.name, value, *self.limit)
        return L.check_text(self.name, value, max_chars=self.limit[0], allow_empty=True)

    @property
    def rule(self) -> str:
        """The limit in words, for help texts and descriptions."""
        if self.kind in ("int", "float"):
            return f"{self.limit[0]}..{self.limit[1]}"
        if self.kind == "size":
            return f"multiple of {L.SIZE_MULTIPLE} in {L.SIZE_RANGE[0]}..{L.SIZE_RANGE[1]}"
        if self.kind == "choice":
            return " | ".join(self.limit)
        if self.kind == "text":
            return f"at most {self.limit[0]} characters"
        if self.kind == "image":
            return f"{'/'.join(L.INIT_IMAGE_FORMATS)}, at most {self.limit[0]} bytes; base64 in JSON, a file in the CLI"
        return "true | false"

    def json_schema(self) -> dict:
        """OpenAPI limits of the field (documented; sotai.limits enforces them)."""
        if self.kind in ("int", "float"):
            return {"minimum": self.limit[0], "maximum": self.limit[1]}
        if self.kind == "size":
            return {"minimum": L.SIZE_RANGE[0], "maximum": L.SIZE_RANGE[1], "multipleOf": L.SIZE_MULTIPLE}
        if self.kind == "choice":
            return {"enum": list(self.limit)}
        if self.kind == "text":
            return {"maxLength": self.limit[0]}
        if self.kind == "image":
            return {"contentEncoding": "base64", "contentMediaType": "image/png"}
        return {}

    def from_json(self, value: object) -> object:
        """A JSON body's value as the Python value (an image arrives as base64 text)."""
        if self.kind == "image" and value is not None:
            return L.decode_base64_image(self.name, value)
        return value

    def to_json(self, value: object) -> object:
        """The Python value as a JSON body carries it (an image as base64 text): from_json's inverse."""
        if self.kind == "image" and isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        return value

    def description(self) -> str:
        default = f"default {self.setting.upper()}" if self.setting else f"default {self.default!r}"
        return f"{self.help} ({self.rule}; {default})"

    def from_tensor(self, value: object) -> object:
        """One element of a Triton input (numpy scalar or bytes) as the Python value (unchecked)."""
        if self.kind == "image":
            return bytes(value)
        if self.triton_dtype == "STRING":
            return L.decode_utf8(self.tensor, value)
        return value.item() if hasattr(value, "item") else value


GENERATION_PARAMS: tuple[Param, ...] = (
    Param("negative_prompt", "text", "", "what the picture must not show; Animagine's default negative "
          "prompt is added unless default_negative is false", (L.NEGATIVE_PROMPT_MAX_CHARS,), optional=False),
    Param("steps", "int", 20, "denoising steps", L.STEPS_RANGE, optional=False, setting="default_steps"),
    Param("cfg_scale", "float", 7.0, "classifier-free guidance scale (<= 1: none)", L.CFG_RANGE, optional=False,
          setting="default_cfg_scale"),
    Param("width", "size", 512, "image width in pixels", optional=False, setting="default_width"),
    Param("height", "size", 768, "image height in pixels", optional=False, setting="default_height"),
    Param("seed", "int", -1, "-1 = random; the seed used is returned", L.SEED_RANGE, optional=False, dtype="INT64"),
    Param("num_images", "int", 1, "images per request", L.NUM_IMAGES_RANGE, optional=False),
    Param("scheduler", "choice", "euler_a", "sampler", L.SCHEDULERS, optional=False),
    Param("rating", "choice", "general", "content rating: Dart's tags and the model's rating tags", L.RATINGS),
    Param("quality_tags", "bool", True, "add the model's quality and rating tags"),
    Param("default_negative", "bool", True, "add the model's default negative prompt"),
    # img2img: the picture starts from this image (resized to width x height) instead of noise.
    Param("init_image", "image", b"", "img2img: the image to start from (resized to width x height)",
          (L.INIT_IMAGE_MAX_BYTES,)),
    Param("denoising_strength", "float", 0.75, "img2img and hires fix: how much is repainted (0: none, 1: all); "
          "img2img runs int(steps x strength) steps", L.DENOISING_RANGE),
    # Hires fix (A1111's): paint at width x height, upscale, denoise again at the larger size.
    Param("enable_hr", "bool", False, "hires fix: upscale and paint a second pass"),
    Param("hr_scale", "float", 2.0, "hires fix: upscale factor (unless hr_resize_x/y)", HR_SCALE_RANGE),
    Param("hr_resize_x", "int", 0, "hires fix: target width (0: from hr_scale)", HR_RESIZE_RANGE),
    Param("hr_resize_y", "int", 0, "hires fix: target height (0: from hr_scale)", HR_RESIZE_RANGE),
    Param("hr_upscaler", "choice", "Latent", "hires fix: upscaler (A1111's names)", HR_UPSCALERS),
    Param("hr_second_pass_steps", "int", 0, "hires fix: second-pass steps (0: steps)", L.STEPS_RANGE_OR_ZERO),
)

PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in GENERATION_PARAMS}
PARAMS_BY_TENSOR: dict[str, Param] = {p.tensor: p for p in GENERATION_PARAMS}


def _checked(self) -> "GenerationParams":
    """A copy with every field validated (and normalised to its Python type)."""
    return type(self)(**{p.name: p.check(getattr(self, p.name)) for p in GENERATION_PARAMS})


def _from_settings(cls, settings, **overrides) -> "GenerationParams":
    """The server's defaults (the profile's steps, size, CFG), then every override that is not None."""
    base = {p.name: getattr(settings, p.setting) for p in GENERATION_PARAMS if p.setting}
    return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


GenerationParams = dataclasses.make_dataclass(
    "GenerationParams",
    [(p.name, p.python_type, dataclasses.field(default=p.default)) for p in GENERATION_PARAMS],
    frozen=True,
    namespace={"checked": _checked, "from_settings": classmethod(_from_settings),
               "__doc__": "Every per-request generation parameter (declared in sotai.params.GENERATION_PARAMS), "
                          "with the project's defaults. Unchecked until `checked()`."},
)
GenerationParams.__module__ = __name__  # make_dataclass's `module=` is Python 3.12+


def params_json(params: "GenerationParams") -> dict[str, object]:
    """{field: JSON value} of one request, as /v1/images takes it."""
    return {p.name: p.to_json(getattr(params, p.name)) for p in GENERATION_PARAMS}


# -- Triton rows -----------------------------------------------------------------------------------

def tensor_values(params: "GenerationParams") -> dict[str, object]:
    """{tensor name: value} of every parameter of one request row."""
    return {p.tensor: getattr(params, p.name) for p in GENERATION_PARAMS}


def tensor_defaults() -> dict[str, object]:
    """Values a model without the optional input behaves as if it had been sent."""
    return {p.tensor: p.default for p in GENERATION_PARAMS if p.optional}


def params_from_row(read) -> "GenerationParams":
    """GenerationParams from one row of a request, checked. `read(tensor_name)` returns that row's element,
    or None when the request lacks the input (an optional input then takes its default)."""
    values = {}
    for p in GENERATION_PARAMS:
        value = read(p.tensor)
        if value is None:
            if not p.optional:
                raise InvalidInput(p.tensor, None, "is a required input")
            continue
        values[p.name] = p.from_tensor(value)
    return GenerationParams(**values).checked()


def request_rows(rows: list[tuple[str, "GenerationParams"]]) -> dict[str, "np.ndarray"]:
    """numpy arrays [len(rows), 1] of PROMPT and every parameter, for a batched `diffusion` request."""
    import numpy as np

    from sotai.dtypes import numpy_type

    arrays = {"PROMPT": np.array([[prompt.encode("utf-8")] for prompt, _ in rows], dtype=np.object_)}
    for p in GENERATION_PARAMS:
        dtype = numpy_type(p.triton_dtype)
        column = [getattr(params, p.name) for _, params in rows]
        if dtype is np.object_:
            column = [v.encode("utf-8") if isinstance(v, str) else v for v in column]
        arrays[p.tensor] = np.array(column, dtype=dtype).reshape(len(rows), 1)
    return arrays


def infer_inputs(module, arrays: dict[str, "np.ndarray"]) -> list:
    """tritonclient InferInputs (module: tritonclient.grpc or .http) for named numpy arrays."""
    from sotai.dtypes import triton_dtype_of, wire_dtype

    inputs = []
    for name, arr in arrays.items():
        tensor = module.InferInput(name, list(arr.shape), wire_dtype(triton_dtype_of(arr.dtype)))
        tensor.set_data_from_numpy(arr)
        inputs.append(tensor)
    return inputs


# -- CLI -------------------------------------------------------------------------------------------

def add_cli_flags(parser, settings) -> None:
    """One flag per parameter: `--cfg-scale`, and `--no-quality-tags` for a parameter that defaults to true."""
    for p in GENERATION_PARAMS:
        flag = "--" + p.name.replace("_", "-")
        default = getattr(settings, p.setting) if p.setting else p.default
        if p.kind == "bool":
            if p.default:
                parser.add_argument("--no-" + p.name.replace("_", "-"), dest=p.name, action="store_false",
                                    help=f"do not {p.help}")
            else:
                parser.add_argument(flag, dest=p.name, action="store_true", help=p.help)
            continue
        if p.kind == "image":
            parser.add_argument(flag, dest=p.name, type=_read_file, default=p.default, metavar="PATH",
                                help=f"{p.help} ({p.rule})")
            continue
        kwargs = {"choices": p.limit} if p.kind == "choice" else {}
        parser.add_argument(flag, dest=p.name, type=p.python_type, default=default,
                            help=f"{p.help} ({p.rule}; default {default!r})", **kwargs)


def _read_file(path: str) -> bytes:
    import argparse
    from pathlib import Path

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None


def params_from_cli(args, **overrides) -> "GenerationParams":
    return GenerationParams(**{**{p.name: getattr(args, p.name) for p in GENERATION_PARAMS}, **overrides})
