"""Every request limit, in one place (the parameters that use them are declared in sotai.params).

`check_*` functions raise `InvalidInput(field, value, rule)`; nothing is clipped.
"""

from __future__ import annotations

import io

import math
import unicodedata

from sotai.errors import InvalidInput

TEXT_MAX_CHARS = 2000
NEGATIVE_PROMPT_MAX_CHARS = 2000
# A tag prompt (Dart's output, or tags a client sends): up to TAGS_MAX given + 256 generated tags.
PROMPT_MAX_CHARS = 12000
STEPS_RANGE = (1, 100)
STEPS_RANGE_OR_ZERO = (0, STEPS_RANGE[1])  # 0: the same as another field (hr_second_pass_steps)
CFG_RANGE = (0.0, 30.0)
SIZE_RANGE = (512, 2048)
# 8 (the VAE's scale) x 4 (the UNet's two downsamplings): the exported UNet graph has no resize
# path for latents that are not a multiple of 4, so e.g. width 1000 (125 latents) fails inside it.
SIZE_MULTIPLE = 32
NUM_IMAGES_RANGE = (1, 8)
SEED_RANGE = (-1, 2**32 - 1)  # -1 = random; the seed used is returned
TAGS_MAX = 128
TAG_MAX_CHARS = 128
TOP_K_RANGE = (1, 200)
# A request's own deadline in seconds (`timeout_s`; unset: none). The server never paints past it.
TIMEOUT_RANGE = (0.1, 3600.0)
INIT_IMAGE_MAX_BYTES = 16 * 1024 * 1024  # one PNG/JPEG (the gateway's image routes take 24 MiB of base64)
INIT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
DENOISING_RANGE = (0.0, 1.0)
# RAG candidates (or given tags) handed to Dart in one request.
CANDIDATES_MAX = max(TOP_K_RANGE[1], TAGS_MAX)
SCHEDULERS = ("euler_a", "euler", "dpmpp_2m_karras")
RATINGS = ("sfw", "general", "sensitive", "nsfw", "questionable", "explicit")

# Animagine XL's recommended resolutions (width, height).
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "1024x1024": (1024, 1024),
    "1152x896": (1152, 896),
    "896x1152": (896, 1152),
    "1216x832": (1216, 832),
    "832x1216": (832, 1216),
    "1344x768": (1344, 768),
    "768x1344": (768, 1344),
    "1536x640": (1536, 640),
    "640x1536": (640, 1536),
}


def decode_utf8(field_name: str, raw: bytes | str) -> str:
    """Bytes from a Triton BYTES tensor or HTTP body -> str, or InvalidInput."""
    if isinstance(raw, str):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(field_name, raw[:32], f"must be valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def check_text(field_name: str, text: str, *, max_chars: int = TEXT_MAX_CHARS, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise InvalidInput(field_name, text, "must be a string")
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t\r"]
    if bad:
        raise InvalidInput(field_name, text, f"must not contain control characters (found U+{ord(bad[0]):04X})")
    # A lone surrogate ("\ud800" in JSON) is a str in Python but has no UTF-8 form: refuse it here,
    # not later as an encoding crash.
    lone = [c for c in text if unicodedata.category(c) == "Cs"]
    if lone:
        raise InvalidInput(field_name, text, f"must be valid UTF-8 (lone surrogate U+{ord(lone[0]):04X})")
    if not allow_empty and not text.strip():
        raise InvalidInput(field_name, text, "must not be empty or only whitespace")
    if len(text) > max_chars:
        raise InvalidInput(field_name, f"<{len(text)} characters>", f"must be at most {max_chars} characters")
    return text


def check_int(field_name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_integral(value):
        raise InvalidInput(field_name, value, f"must be an integer in {lo}..{hi}")
    v = int(value)  # type: ignore[arg-type]
    if not lo <= v <= hi:
        raise InvalidInput(field_name, value, f"must be in {lo}..{hi}")
    return v


def _is_integral(value: object) -> bool:
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False


def check_float(field_name: str, value: object, lo: float, hi: float) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(field_name, value, f"must be a number in {lo}..{hi}") from None
    if isinstance(value, bool) or math.isnan(v) or not lo <= v <= hi:
        raise InvalidInput(field_name, value, f"must be a number in {lo}..{hi}")
    return v


def check_image(field_name: str, value: object, max_bytes: int = INIT_IMAGE_MAX_BYTES) -> bytes:
    """An encoded image (PNG, JPEG or WebP bytes), or b"" for none; decoded once here so a broken file is
    refused up front, naming the field."""
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidInput(field_name, value, f"must be the bytes of a {'/'.join(INIT_IMAGE_FORMATS)} image "
                                              "(base64 in JSON)")
    value = bytes(value)
    if len(value) > max_bytes:
        raise InvalidInput(field_name, f"<{len(value)} bytes>", f"must be at most {max_bytes} bytes")
    if value:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(value)) as im:
                fmt = im.format
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(field_name, f"<{len(value)} bytes>", f"is not a readable image ({exc})") from None
        if fmt not in INIT_IMAGE_FORMATS:
            raise InvalidInput(field_name, f"<{fmt} image>", f"must be one of {', '.join(INIT_IMAGE_FORMATS)}")
    return value


def decode_base64_image(field_name: str, value: object) -> bytes:
    """JSON's base64 text of an image (a `data:image/...;base64,` prefix allowed, as A1111 takes) -> bytes."""
    import base64
    import binascii

    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise InvalidInput(field_name, value, "must be a base64 string of a PNG, JPEG or WebP image")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field_name, value, "is not valid base64") from None


def check_bool(field_name: str, value: object) -> bool:
    """True or False only: a string like "false" must not turn into True."""
    try:
        import numpy as np

        if isinstance(value, np.bool_):
            return bool(value)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(value, bool):
        raise InvalidInput(field_name, value, "must be true or false")
    return value


def check_timeout(field_name: str, value: object) -> float | None:
    """None (no deadline) or seconds in TIMEOUT_RANGE."""
    return None if value is None else check_float(field_name, value, *TIMEOUT_RANGE)


def check_size(field_name: str, value: object) -> int:
    v = check_int(field_name, value, *SIZE_RANGE)
    if v % SIZE_MULTIPLE:
        raise InvalidInput(field_name, value, f"must be a multiple of {SIZE_MULTIPLE} in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}")
    return v


def check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(field_name, value, f"must be one of {', '.join(choices)}")
    return str(value)


def check_tags(field_name: str, tags: list[str]) -> list[str]:
    if not isinstance(tags, (list, tuple)):
        raise InvalidInput(field_name, tags, "must be a list of tag strings")
    if not 1 <= len(tags) <= TAGS_MAX:
        raise InvalidInput(field_name, f"<{len(tags)} tags>", f"must hold 1..{TAGS_MAX} tags")
    out = []
    for i, tag in enumerate(tags):
        out.append(check_text(f"{field_name}[{i}]", tag, max_chars=TAG_MAX_CHARS).strip())
    return out
