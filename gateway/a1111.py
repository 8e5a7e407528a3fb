"""The core of the AUTOMATIC1111 web UI's API (`/sdapi/v1/...`), so tools that speak it work unchanged.

- A `prompt` with Japanese in it is a scene description: it goes through RAG and Dart first, and
  `info` says so (`sotai.route`, `sotai.tags`). A prompt already in tags goes straight to diffusion.
- Images of one batch share one seed (one noise tensor, A1111's "Batch pos"); iteration k of
  `n_iter` uses seed + k * batch_size, as A1111 numbers them.
- Unset fields take this server's defaults (DEFAULT_STEPS, DEFAULT_WIDTH ...), not A1111's.
- Fields this server cannot honour are refused with 422 when they ask for something (enable_hr,
  restore_faces ...); fields without effect here are accepted and listed in `info.sotai.ignored`.
- `POST /interrupt` and `/skip` act on the job `/progress` reports (the oldest under way), as A1111's
  one job: both finish the image being painted at the next step, decoded as it is, and it is returned;
  interrupt also paints no further images of the job (n_iter). A client that goes away cancels its job.
- Overload: 429 with Retry-After (never a queue without bound); `timeout_s` (ours, not A1111's): 504.

txt2img fields (A1111's StableDiffusionTxt2ImgProcessingAPI):
- honoured: prompt, negative_prompt, steps, cfg_scale, width, height, seed, batch_size, n_iter,
  sampler_name / sampler_index + scheduler (every spelling A1111 maps: see a1111_names.py), send_images;
  hires fix: enable_hr, hr_scale, hr_resize_x, hr_resize_y, hr_upscaler (latent modes, None, Lanczos,
  Nearest), hr_second_pass_steps, denoising_strength (with enable_hr).
- accepted without effect, with a note in info: clip_skip, override_settings.CLIP_stop_at_last_layers
  (SDXL already uses the penultimate layer).
- ignored and listed in `info.sotai.ignored` when set: every other field (eta, s_noise, firstphase_*,
  override_settings.*, extension keys ...); hr_* and denoising_strength without enable_hr, as A1111.
- refused (422 naming the field) when they ask for something: hr_prompt, hr_negative_prompt,
  hr_sampler_name, hr_scheduler, hr_checkpoint_name (a second pass unlike the first), restore_faces, tiling,
  subseed_strength, styles, script_name, alwayson_scripts, refiner_checkpoint; a sampler/schedule type
  this server does not have.
img2img fields (A1111's StableDiffusionImg2ImgProcessingAPI), besides txt2img's:
- honoured: init_images (exactly one; base64, a data: URL prefix allowed), denoising_strength
  (int(steps x strength) steps run, none at 0), resize_mode 0 (Just resize: to width x height).
- ignored: include_init_images and the inpainting fields (mask_blur, inpainting_fill ...) without a mask.
- refused: mask (inpainting), resize_mode other than 0, more than one init image.
/options POST: sd_model_checkpoint must name the served model; other changes are kept for GET and listed
in `ignored` (a client posting back the whole GET dict changes nothing and gets `ignored: []`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import time
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sotai.client import GenerateRequest, GenerateResult, Progress
from sotai.diffusion.hires import IMAGE_UPSCALERS, LATENT_MODES
from sotai.errors import InvalidInput
from sotai.limits import NUM_IMAGES_RANGE, check_int, decode_base64_image
from sotai.params import PARAMS_BY_NAME, GenerationParams

from . import a1111_names as names
from .routes import unless_disconnected
from .state import GatewayState, Job

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])

JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
# Features this server does not have: asking for them is an error, not a silent no-op.
REFUSED = {"hr_checkpoint_name": None, "hr_prompt": "", "hr_negative_prompt": "", "hr_sampler_name": None,
           "hr_scheduler": None, "restore_faces": False, "tiling": False, "subseed_strength": 0,
           "styles": [], "script_name": "", "alwayson_scripts": {}, "refiner_checkpoint": ""}
CLIP_SKIP_NOTE = ("no further effect: SDXL already conditions on the text encoders' penultimate layer "
                  "(as A1111 does for SDXL)")
CLIP_SKIP_RANGE = (1, 12)  # A1111's CLIP_stop_at_last_layers slider


class Txt2ImgRequest(BaseModel):
    """A1111's StableDiffusionTxt2ImgProcessingAPI, the fields that matter here; others are accepted."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"prompt": "1girl, silver hair, cherry blossoms, night, smile", "negative_prompt": "lowres",
         "steps": 20, "cfg_scale": 7, "width": 832, "height": 1216, "seed": -1, "sampler_name": "Euler a",
         "batch_size": 1, "n_iter": 1},
    ]})

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    enable_hr: bool = False
    hr_scale: float = 2.0  # A1111's defaults
    hr_upscaler: str | None = None  # None: "Latent", A1111's latent_upscale_default_mode
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    denoising_strength: float | None = None  # the hires pass's (A1111 txt2img uses it only with enable_hr)
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = ""
    hr_negative_prompt: str | None = ""
    restore_faces: bool | None = False
    tiling: bool | None = False
    subseed_strength: float = 0
    styles: list[str] | None = []
    script_name: str | None = None
    alwayson_scripts: dict | None = {}
    refiner_checkpoint: str | None = None
    override_settings: dict | None = None
    send_images: bool = True
    timeout_s: float | None = Field(None, description="not A1111's: seconds after which painting stops (504)")


class Img2ImgRequest(Txt2ImgRequest):
    """A1111's StableDiffusionImg2ImgProcessingAPI: txt2img's fields, one init image and its strength."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"init_images": ["<base64 PNG>"], "denoising_strength": 0.5, "prompt": "1girl, silver hair, night",
         "steps": 20, "width": 832, "height": 1216, "sampler_name": "Euler a"},
    ]})

    init_images: list[str] = Field(description="base64 PNG/JPEG/WebP (a data: URL prefix is allowed); one image")
    denoising_strength: float | None = 0.75  # A1111's default
    resize_mode: int = 0
    mask: str | None = None
    include_init_images: bool = False


# img2img fields of A1111 this server does not have: asking for them is an error (see _refused).
IMG2IMG_REFUSED = {"resize_mode": 0, "mask": None}
RESIZE_MODES = {0: "Just resize"}


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64 PNG files (each with its A1111 `parameters` text chunk)")
    parameters: dict
    info: str = Field(description="JSON: seed, all_seeds, infotexts ... and `sotai` (route, tags, ignored)")


def model_title(state: GatewayState) -> str:
    return {"animagine": "animagine-xl-3.0"}.get(state.settings.profile, f"sotai-{state.settings.profile}")


HIRES_FIELDS = ("hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "denoising_strength")
# The second pass's own prompt, sampler or model: honoured only when it is the first pass's own.
SAME_AS = {"hr_prompt": "prompt", "hr_negative_prompt": "negative_prompt", "hr_sampler_name": "sampler_name"}


def _refused(body: Txt2ImgRequest) -> None:
    for name, off in REFUSED.items():
        value = getattr(body, name)
        if name.startswith("hr_") and (not body.enable_hr or (name in SAME_AS and value == getattr(body, SAME_AS[name]))):
            continue  # A1111 reads hr_* only with enable_hr
        if value not in (None, off, "", [], {}):
            raise InvalidInput(name, value, f"is not supported by this server (leave it at {off!r})")


def _ignored(body: Txt2ImgRequest) -> list[str]:
    """Fields sent with a value that has no effect here (A1111 fields this server does not model)."""
    extras = sorted(k for k, v in (body.model_extra or {}).items() if v not in (None, "", [], {}, False, 0, -1))
    extras = [k for k in extras if k != "clip_skip"]
    if not body.enable_hr and not isinstance(body, Img2ImgRequest):
        # Sent, but without enable_hr A1111 reads none of them either.
        extras += sorted(k for k in HIRES_FIELDS if k in body.model_fields_set
                         and getattr(body, k) not in (None, "", [], {}, False, 0))
    return extras + sorted(f"override_settings.{k}" for k in (body.override_settings or {})
                           if k != "CLIP_stop_at_last_layers")


def params_of(body: Txt2ImgRequest, state: GatewayState, **img2img) -> GenerationParams:
    return GenerationParams.from_settings(
        state.settings, steps=body.steps, cfg_scale=body.cfg_scale, width=body.width, height=body.height,
        seed=body.seed, negative_prompt=body.negative_prompt, num_images=body.batch_size,
        scheduler=sampler_of(body).scheduler, **img2img,
    )


def hires_of(body: Txt2ImgRequest) -> dict:
    """A txt2img body's hires-fix fields as our parameters (none unless enable_hr, as A1111)."""
    if not body.enable_hr:
        return {}
    hires = {"enable_hr": True, "hr_scale": body.hr_scale, "hr_upscaler": body.hr_upscaler or "Latent",
             "hr_second_pass_steps": body.hr_second_pass_steps, "hr_resize_x": body.hr_resize_x,
             "hr_resize_y": body.hr_resize_y}
    if body.denoising_strength is not None:
        hires["denoising_strength"] = body.denoising_strength
    return hires


def img2img_of(body: Img2ImgRequest) -> dict:
    """init_image and denoising_strength of an img2img body, checked (A1111's names in the errors)."""
    if body.resize_mode not in RESIZE_MODES:
        raise InvalidInput("resize_mode", body.resize_mode, "only 0 (Just resize) is supported by this server")
    if body.mask:
        raise InvalidInput("mask", "<image>", "inpainting is not supported by this server (send no mask)")
    if len(body.init_images) != 1:
        raise InvalidInput("init_images", f"<{len(body.init_images)} images>", "must hold exactly one image")
    image = PARAMS_BY_NAME["init_image"]
    try:
        data = image.check(image.from_json(body.init_images[0]))
    except InvalidInput as exc:
        raise InvalidInput("init_images[0]", exc.value, exc.rule) from None
    if not data:
        raise InvalidInput("init_images[0]", "", "must not be empty")
    return {"init_image": data, "denoising_strength": body.denoising_strength}


def sampler_of(body: Txt2ImgRequest) -> names.Resolved:
    field = "sampler_name" if body.sampler_name else "sampler_index"
    return names.resolve(body.sampler_name or body.sampler_index, body.scheduler, sampler_field=field)


def clip_skip_of(body: Txt2ImgRequest) -> int | None:
    """`clip_skip` (some clients) or override_settings.CLIP_stop_at_last_layers (A1111's own), checked."""
    extra = body.model_extra or {}
    for field, value in (("override_settings.CLIP_stop_at_last_layers",
                          (body.override_settings or {}).get("CLIP_stop_at_last_layers")),
                         ("clip_skip", extra.get("clip_skip"))):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise InvalidInput(field, value, f"must be an integer in {CLIP_SKIP_RANGE[0]}..{CLIP_SKIP_RANGE[1]}")
            return check_int(field, int(value), *CLIP_SKIP_RANGE)
    return None


def _infotext(png: bytes) -> str:
    from PIL import Image

    return Image.open(io.BytesIO(png)).info.get("parameters", "")


@router.post("/txt2img", response_model=Txt2ImgResponse, summary="A1111 txt2img (Japanese prompts go through RAG and Dart)")
async def txt2img(body: Txt2ImgRequest, request: Request) -> Txt2ImgResponse:
    return await _generate(body, request, hires_of(body))


@router.post("/img2img", response_model=Txt2ImgResponse, summary="A1111 img2img: one init image repainted at "
             "denoising_strength (int(steps x strength) steps; Japanese prompts go through RAG and Dart)")
async def img2img(body: Img2ImgRequest, request: Request) -> Txt2ImgResponse:
    return await _generate(body, request, img2img_of(body))


async def _generate(body: Txt2ImgRequest, request: Request, extra: dict | None = None) -> Txt2ImgResponse:
    """txt2img and img2img: `extra` holds the hires-fix or the init-image parameters."""
    state: GatewayState = request.app.state.sotai
    extra = extra or {}
    _refused(body)
    chosen = sampler_of(body)
    clip_skip = clip_skip_of(body)
    n_iter = check_int("n_iter", body.n_iter, 1, NUM_IMAGES_RANGE[1])
    batch = check_int("batch_size", body.batch_size, *NUM_IMAGES_RANGE)
    if batch * n_iter > NUM_IMAGES_RANGE[1]:
        raise InvalidInput("n_iter", n_iter, f"batch_size * n_iter must be at most {NUM_IMAGES_RANGE[1]} images")
    if not body.prompt.strip():
        raise InvalidInput("prompt", body.prompt, "must not be empty or only whitespace")
    japanese = bool(JAPANESE.search(body.prompt))
    params = params_of(body, state, **extra)
    base = GenerateRequest(text=body.prompt, params=params, timeout_s=body.timeout_s) if japanese \
        else GenerateRequest(prompt=body.prompt, params=params, timeout_s=body.timeout_s)
    base = base.checked()  # seed -1 -> a concrete seed, shared by the iterations

    timestamp = time.strftime("%Y%m%d%H%M%S")
    with state.board.job(base) as job:
        results = await unless_disconnected(request, _paint(state, job, base, n_iter, batch))
    if not results:  # interrupted before its first image was begun
        return Txt2ImgResponse(images=[], parameters=body.model_dump(exclude_none=False), info=json.dumps(
            {"prompt": body.prompt, "all_prompts": [], "seed": base.params.seed, "all_seeds": [], "infotexts": [],
             "job_timestamp": timestamp, "version": "sotai", "sotai": {"interrupted": True}}, ensure_ascii=False))

    images = [png for r in results for png in r.images]
    all_seeds = [r.seed for r in results for _ in r.images]
    first = results[0]
    prompts = [r.prompt for r in results for _ in r.images]
    info = {
        "prompt": first.prompt, "all_prompts": prompts,
        "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * len(images),
        "seed": first.seed, "all_seeds": all_seeds, "subseed": -1, "all_subseeds": [-1] * len(images),
        "subseed_strength": 0, "width": base.params.width, "height": base.params.height,
        "sampler_name": chosen.sampler_name, "scheduler": chosen.schedule_type,
        "cfg_scale": base.params.cfg_scale, "steps": base.params.steps, "batch_size": batch, "n_iter": n_iter,
        "restore_faces": False, "sd_model_name": model_title(state), "sd_model_hash": None,
        "index_of_first_image": 0, "infotexts": [_infotext(png) for png in images], "styles": [],
        "job_timestamp": timestamp, "clip_skip": clip_skip or 1, "version": "sotai",
        **({"denoising_strength": base.params.denoising_strength} if extra else {}),
        "sotai": {
            "input": "japanese_text" if japanese else "tags",
            "route": first.route,
            "note": ("Japanese prompt: RAG and Dart turned it into the tags in `prompt`" if japanese
                     else "prompt already in tags: sent straight to diffusion"),
            "tags": first.tags if japanese else None,
            "ignored": _ignored(body),
            "notes": {"clip_skip": CLIP_SKIP_NOTE} if clip_skip is not None else {},
        },
    }
    parameters = body.model_dump(exclude_none=False)
    if "init_image" in extra:
        parameters["init_images"] = [f"<{len(base.params.init_image)} bytes>"]  # not echoed back, as A1111
    return Txt2ImgResponse(images=[base64.b64encode(p).decode("ascii") for p in images] if body.send_images else [],
                           parameters=parameters, info=json.dumps(info, ensure_ascii=False))


async def _paint(state: GatewayState, job: Job, base: GenerateRequest, n_iter: int, batch: int) -> list[GenerateResult]:
    """The job's n_iter painting calls; iteration k uses seed + k * batch_size, as A1111 numbers them."""
    results: list[GenerateResult] = []
    for k in range(n_iter):
        if job.interrupted:
            break
        gen = job.painting(replace(base, params=replace(base.params, seed=(base.params.seed + k * batch) % 2**32)), k)
        async with contextlib.aclosing(state.pool.stream(gen)) as events:
            async for event in events:
                if isinstance(event, Progress):
                    job.update(event)
                    if job.interrupted and event.stage != "diffusion":
                        break  # interrupted before this image's painting began: none is painted, as in A1111
                else:
                    results.append(event)
    return results


@router.post("/interrupt", summary="finish the image under way now and paint no more of its job (A1111's)")
async def interrupt(request: Request) -> dict:
    state: GatewayState = request.app.state.sotai
    job = state.board.current()
    if job is not None:
        job.interrupted = True
        await state.pool.control(job.request_id, "interrupt")
    return {}


@router.post("/skip", summary="finish the image under way now, decoded as it is; the job goes on (A1111's)")
async def skip(request: Request) -> None:
    state: GatewayState = request.app.state.sotai
    job = state.board.current()
    if job is not None:
        job.skipped = True
        await state.pool.control(job.request_id, "skip")
    return None


@router.get("/samplers", summary="the samplers this server paints with (A1111's SamplerItem)")
async def samplers() -> list[dict]:
    return [{"name": x.name, "aliases": list(x.aliases), "options": {k: str(v) for k, v in x.options.items()}}
            for x in names.SAMPLERS]


@router.get("/schedulers", summary="the schedule types this server paints with (A1111 1.9+ SchedulerItem)")
async def schedulers() -> list[dict]:
    used = {t for _, t in names.PAINTS_WITH}
    return [{"name": x.name, "label": x.label, "aliases": list(x.aliases) or None, "default_rho": x.default_rho,
             "need_inner_model": x.need_inner_model} for x in names.SCHEDULE_TYPES if x.name in used]


@router.get("/scripts", summary="no scripts (A1111's ScriptsList)")
async def scripts() -> dict:
    return {"txt2img": [], "img2img": []}


@router.get("/loras", summary="no LoRAs")
async def loras() -> list[dict]:
    return []


@router.get("/latent-upscale-modes", summary="the hires fix's latent upscalers (A1111's names)")
async def latent_upscale_modes() -> list[dict]:
    return [{"name": name} for name in LATENT_MODES]


@router.get("/cmd-flags", summary="A1111's command-line flags, as this server stands")
async def cmd_flags(request: Request) -> dict:
    state: GatewayState = request.app.state.sotai
    return {"api": True, "nowebui": False, "listen": False, "ckpt_dir": str(state.settings.repository_dir()),
            "lora_dir": None, "vae_dir": None, "embeddings_dir": None, "hypernetwork_dir": None,
            "api_auth": None, "medvram": False, "lowvram": False, "xformers": False, "no_half": False}


@router.get("/sd-models", summary="the one checkpoint this server serves")
async def sd_models(request: Request) -> list[dict]:
    state: GatewayState = request.app.state.sotai
    title = model_title(state)
    return [{"title": title, "model_name": title, "hash": None, "sha256": None,
             "filename": str(state.settings.repository_dir()), "config": None}]


@router.get("/sd-vae", summary="no separate VAEs")
async def sd_vae() -> list[dict]:
    return []


@router.get("/upscalers", summary="the image-space upscalers of the hires fix (A1111's UpscalerItem)")
async def upscalers() -> list[dict]:
    return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for name in IMAGE_UPSCALERS]


def _options(state: GatewayState) -> dict[str, Any]:
    return {"sd_model_checkpoint": model_title(state), "sd_checkpoint_hash": None, "samples_format": "png",
            "CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic", **state.a1111_options}


@router.get("/options", summary="current options")
async def get_options(request: Request) -> dict:
    return _options(request.app.state.sotai)


@router.post("/options", summary="set options: the whole GET dict may come back; changes we cannot honour are listed")
async def set_options(body: dict[str, Any], request: Request) -> dict:
    state: GatewayState = request.app.state.sotai
    title = model_title(state)
    checkpoint = body.get("sd_model_checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, str) or checkpoint.split(" [")[0] != title):
        raise InvalidInput("sd_model_checkpoint", checkpoint, f"must be {title} (the model this server serves)")
    clip_skip = body.get("CLIP_stop_at_last_layers")
    if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)):
        raise InvalidInput("CLIP_stop_at_last_layers", clip_skip,
                           f"must be an integer in {CLIP_SKIP_RANGE[0]}..{CLIP_SKIP_RANGE[1]}")
    if clip_skip is not None:
        check_int("CLIP_stop_at_last_layers", clip_skip, *CLIP_SKIP_RANGE)
    current = _options(state)
    # Only changes are listed: a client that posts back the whole GET dict changes nothing.
    ignored = sorted(k for k in body if k != "sd_model_checkpoint" and current.get(k, object()) != body[k])
    # Kept so GET shows them back, as A1111 would; they change nothing in how images are painted.
    state.a1111_options.update({k: body[k] for k in ignored})
    notes = {"CLIP_stop_at_last_layers": CLIP_SKIP_NOTE} if "CLIP_stop_at_last_layers" in ignored else {}
    return {"updated": ["sd_model_checkpoint"] if checkpoint is not None else [], "ignored": ignored, "notes": notes}


class PngInfoRequest(BaseModel):
    image: str = Field(description="base64 PNG (a data:image/png;base64, prefix is allowed)")


@router.post("/png-info", summary="read the A1111 `parameters` text of a PNG back (A1111's PNGInfoResponse)")
async def png_info(body: PngInfoRequest) -> dict:
    from PIL import Image, UnidentifiedImageError

    from sotai.diffusion.png import parse_parameters

    try:
        image = Image.open(io.BytesIO(decode_base64_image("image", body.image.strip())))
    except (ValueError, UnidentifiedImageError) as e:  # InvalidInput is a ValueError: one message for both
        raise InvalidInput("image", body.image[:40], "must be a base64-encoded image (PNG)") from e
    items = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
    info = items.pop("parameters", "")
    if not info:
        return {"info": "", "items": items, "parameters": {}}
    parsed = parse_parameters(info)
    # A1111's parse_generation_parameters keys: "Prompt", "Negative prompt", "Size-1"/"Size-2" ...
    parameters = {"Prompt": parsed.pop("prompt"), "Negative prompt": parsed.pop("negative_prompt")}
    for key, value in parsed.items():
        width, x, height = value.partition("x")
        if key == "Size" and x:
            parameters["Size-1"], parameters["Size-2"] = width, height
        else:
            parameters[key] = value
    return {"info": info, "items": items, "parameters": parameters}


@router.get("/progress", summary="progress of the running job (0..1) with a preview image")
async def progress(request: Request, skip_current_image: bool = Query(False)) -> dict:
    state: GatewayState = request.app.state.sotai
    job = state.board.current()
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": _job_state(0, 0, 0), "current_image": None,
                "textinfo": None}
    elapsed = time.monotonic() - job.started
    fraction = job.fraction
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    latest = job.latest
    step = latest.step if latest and latest.stage == "diffusion" else 0
    preview = None if skip_current_image or not job.preview else base64.b64encode(job.preview).decode("ascii")
    return {"progress": round(fraction, 4), "eta_relative": round(eta, 3),
            "state": _job_state(len(state.board.jobs), step, job.steps, job), "current_image": preview,
            "textinfo": f"{latest.stage} {latest.step}/{latest.total}" if latest else "queued"}


def _job_state(jobs: int, step: int, steps: int, job: Job | None = None) -> dict:
    return {"skipped": bool(job and job.skipped), "interrupted": bool(job and job.interrupted),
            "stopping_generation": False, "job": job.request_id if job else "", "job_count": jobs,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "job_no": 0, "sampling_step": step,
            "sampling_steps": steps}
