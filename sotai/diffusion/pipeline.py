"""The SDXL denoising loop over four named-tensor runners (ONNX Runtime in-process, or Triton over BLS).

`SdxlGenerator.__call__` follows diffusers' `StableDiffusionXLPipeline.__call__` step by step, so that
on the same weights and seed it paints the same picture; the parity test holds it to that.

The loop works on torch tensors on one device (`device`: the GPU of the Triton instance, or the
CPU): embeddings, latents and the scheduler stay there between steps. A runner marked
`device_tensors = True` (the BLS runner: DLPack in and out) takes and returns torch tensors; any
other runner takes and returns numpy arrays (ONNX Runtime in-process) and is wrapped. Only the
finished images (and, when streaming, one small preview latent per step) come back to the host.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from sotai.diffusion.hires import IMAGE_UPSCALERS, LATENT_MODES, HiresPlan, hires_plan
from sotai.diffusion.components import GRAPHS, OPTIONAL_GRAPHS, Manifest
from sotai.diffusion.png import PngParameters, encode_png
from sotai.diffusion.preview import latent_preview
from sotai.diffusion.conventions import conventions_for
from sotai.diffusion.prompting import (
    animagine_prompts, emphasize, pad_chunks, pad_multipliers, token_chunks, unweighted, weighted_chunks,
)
from sotai.diffusion.schedulers import A1111_NAMES, noised_to_first, scheduled_tail
from sotai.errors import InvalidInput, MissingArtifact, StageError
from sotai.limits import PROMPT_MAX_CHARS, check_text
from sotai.params import GenerationParams

Runner = Callable[[dict], dict]  # named tensors in, named tensors out (torch, or numpy: see the module doc)
# progress(step, total_steps, preview): step counts 1..total; preview is a small HxWx3 uint8 of image 0.
Progress = Callable[[int, int, "np.ndarray | None"], None]
# should_stop(step) is asked before each denoising step (step counts 0..total-1) and once before the
# decode: None goes on; FINISH ends the loop there and decodes the latents as they are (A1111's skip
# and interrupt). A hook that must abandon the request (cancelled, past its deadline) raises instead.
StopCheck = Callable[[int], "str | None"]
FINISH = "finish"



def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}[name]


def tensor_runner(runner: Runner) -> Runner:
    """The runner as one over torch tensors: a numpy runner gets host copies, its outputs wrapped (no copy)."""
    import torch

    if getattr(runner, "device_tensors", False):
        return runner

    def run(inputs: dict) -> dict:
        outputs = runner({k: v.detach().cpu().numpy() for k, v in inputs.items()})
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in outputs.items()}

    return run


@dataclass(frozen=True)
class GenerationResult:
    images: list[np.ndarray]  # HxWx3 uint8, one per requested image
    pngs: list[bytes]  # the same images as PNG with an A1111 `parameters` chunk
    seed: int  # the seed used (drawn at random when the request said -1)
    prompt: str  # the prompt the text encoders saw (after Animagine's tags were added)
    negative_prompt: str


def required_outputs(manifest: Manifest) -> dict[str, list[str]]:
    """The output tensors the loop reads from each graph (a BLS caller requests only these)."""
    return {
        "text_encoder": [manifest.text_encoder_hidden],
        "text_encoder_2": [manifest.text_encoder_2_hidden, manifest.text_encoder_2_pooled],
        "unet": ["out_sample"],
        "vae_decoder": ["sample"],
        "vae_encoder": ["latent_parameters"],
    }


class SdxlGenerator:
    """Text -> images with SDXL, over runners for "text_encoder", "text_encoder_2", "unet", "vae_decoder".

    components_dir holds the tokenizers, the scheduler and VAE configs, model_index.json and the
    manifest written by `export_sdxl_onnx`. Each runner maps the graph's named inputs to its named
    outputs (the ONNX tensor names). max_batch: the most rows one runner call may carry (the
    Triton models' max_batch_size); larger batches are split. TensorRT engines' own limits
    (components/engine_limits.json, sotai.diffusion.tensorrt) narrow both, and requests outside
    them are refused up front. device: where the loop's tensors live ("cpu", "cuda:0", ...).
    """

    def __init__(self, components_dir: Path, runners: Mapping[str, Runner], *, max_batch: int = 16,
                 device: str = "cpu"):
        import torch
        from transformers import CLIPTokenizer

        from sotai.diffusion.tensorrt import EngineLimits

        self.components_dir = Path(components_dir)
        missing = [g for g in GRAPHS if g not in runners and g not in OPTIONAL_GRAPHS]
        if missing:
            raise ValueError(f"runners is missing {missing}; it needs one callable per graph in {list(GRAPHS)}")
        self.runners = {g: tensor_runner(r) for g, r in runners.items()}
        self.device = torch.device(device)
        self.engine_limits = EngineLimits.load(self.components_dir)
        self.max_batch = {g: min(max_batch, self.engine_limits.max_batch(g)) if self.engine_limits else max_batch
                          for g in GRAPHS}
        self.manifest = Manifest.load(self.components_dir)
        self.conventions = conventions_for(self.manifest.model_name)  # the served model's prompt tags
        self.float_dtype = _torch_dtype(self.manifest.input_dtype("unet", "sample"))
        self.tokenizers = [
            CLIPTokenizer.from_pretrained(self.components_dir / name) for name in ("tokenizer", "tokenizer_2")
        ]
        self.scheduler_config = self._read_json("scheduler/scheduler_config.json")
        self.vae_config = self._read_json("vae/config.json")
        model_index = self._read_json("model_index.json")
        # SDXL base (and Animagine) encode an absent negative prompt as zeros, not as "".
        self.force_zeros_for_empty_prompt = bool(model_index.get("force_zeros_for_empty_prompt", True))
        self.vae_scale_factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)

    def _read_json(self, rel: str) -> dict:
        path = self.components_dir / rel
        if not path.is_file():
            raise MissingArtifact("diffusion component", path, "make export")
        return json.loads(path.read_text(encoding="utf-8"))

    # -- the algorithm ---------------------------------------------------------------------------

    def __call__(self, prompt: str, params: GenerationParams, progress: Progress | None = None,
                 should_stop: StopCheck | None = None) -> GenerationResult:
        import torch

        should_stop = should_stop or (lambda step: None)

        # 1. Check inputs before any compute.
        params = params.checked()
        hires = hires_plan(params.width, params.height, params.steps, hr_scale=params.hr_scale,
                           hr_resize_x=params.hr_resize_x, hr_resize_y=params.hr_resize_y,
                           hr_second_pass_steps=params.hr_second_pass_steps,
                           denoising_strength=params.denoising_strength) if params.enable_hr else None
        self.check_engine_limits(params)
        if hires is not None:
            field = next((f for f in ("hr_resize_x", "hr_resize_y") if getattr(params, f)), "hr_scale")
            self.check_engine_limits(params, (hires.width, hires.height), field)
            if params.hr_upscaler in IMAGE_UPSCALERS:
                self.require_vae_encoder("hr_upscaler")
        if params.init_image:
            self.require_vae_encoder("init_image")
        prompt = check_text("prompt", prompt, max_chars=PROMPT_MAX_CHARS)
        prompt, negative = animagine_prompts(
            prompt, params.negative_prompt, rating=params.rating,
            quality_tags=params.quality_tags, default_negative=params.default_negative,
            conventions=self.conventions,
        )
        seed = secrets.randbits(32) if params.seed == -1 else params.seed
        generator = torch.Generator("cpu").manual_seed(seed)  # one generator, end to end
        do_cfg = params.cfg_scale > 1.0  # as diffusers: guidance <= 1 is the conditional model alone

        # 2. Encode prompt and negative prompt (both encoders; penultimate states, pooled output).
        embeds, pooled = self.encode_prompt(prompt, negative if do_cfg else None, do_cfg)

        # 3. Prepare timesteps (img2img: only the last int(steps x denoising_strength) of them).
        run = int(params.steps * params.denoising_strength) if params.init_image else params.steps
        scheduler, timesteps = scheduled_tail(params.scheduler, self.scheduler_config, params.steps, run, self.device)

        # 4. Prepare latents from the seed (drawn on the CPU generator, as diffusers does, then moved);
        #    img2img: the init image's latents, noised to the first timestep that runs.
        noise = self.prepare_latents(params.num_images, params.height, params.width, generator).to(self.device)
        if params.init_image:
            image_latents = self.encode_image(params.init_image, params.width, params.height, generator)
            image_latents = image_latents.repeat(params.num_images, 1, 1, 1)
            latents = noised_to_first(scheduler, image_latents, noise, timesteps)
        else:
            latents = noise * scheduler.init_noise_sigma

        # 5. Added conditioning: the pooled text embedding and the size/crop time ids. Rows are
        #    [negative x n, positive x n]: the CFG pair goes to the UNet as one batch.
        n = params.num_images
        rows = embeds.shape[0] * n
        cond = {
            "encoder_hidden_states": embeds.repeat_interleave(n, dim=0),
            "text_embeds": pooled.repeat_interleave(n, dim=0),
            "time_ids": self.add_time_ids(params.height, params.width).repeat(rows, 1),
        }

        # 6. Denoising loop (asking should_stop before each step, so a stop costs at most the step under way).
        total = len(timesteps) + (hires.steps if hires else 0)
        latents, finished = self.denoise(latents, timesteps, scheduler, cond, params.cfg_scale, do_cfg, generator,
                                         progress, should_stop, first=0, total=total)

        # 7. Hires fix: upscale (the latents, or the picture through the VAE), noise it to the second pass's
        #    first timestep and denoise again at the target size (A1111's txt2img hires pass).
        if hires is not None and not finished:
            latents = self.upscale(latents, params.hr_upscaler, hires, generator)
            scheduler, hr_timesteps = scheduled_tail(params.scheduler, self.scheduler_config, hires.schedule,
                                                     hires.steps, self.device)
            if len(hr_timesteps):  # no noise is drawn for a pass that does not run (the generator's state)
                noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(self.device)
                latents = noised_to_first(scheduler, latents, noise, hr_timesteps)
            cond = {**cond, "time_ids": self.add_time_ids(hires.height, hires.width).repeat(rows, 1)}
            latents, _ = self.denoise(latents, hr_timesteps, scheduler, cond, params.cfg_scale, do_cfg, generator,
                                      progress, should_stop, first=len(timesteps), total=total)

        # 8. Decode to uint8 images and PNGs (unless the request was abandoned during the last step).
        should_stop(total)
        images = self.decode(latents)
        sampler = A1111_NAMES[params.scheduler]
        pngs = [
            encode_png(img, PngParameters(
                prompt=prompt, negative_prompt=negative if do_cfg else "", steps=params.steps, sampler=sampler,
                cfg_scale=params.cfg_scale, seed=seed, width=params.width, height=params.height,
                model=self.manifest.model_name, batch_size=n, batch_pos=k,
                denoising_strength=params.denoising_strength if params.init_image or hires else None,
                hires=self.hires_infotext(params, hires),
            ))
            for k, img in enumerate(images)
        ]
        return GenerationResult(images=images, pngs=pngs, seed=seed, prompt=prompt,
                                negative_prompt=negative if do_cfg else "")

    # -- the steps -------------------------------------------------------------------------------

    def denoise(self, latents, timesteps, scheduler, cond: dict, cfg_scale: float, do_cfg: bool, generator, progress,
                should_stop, *, first: int, total: int):
        """The denoising loop over `timesteps` -> (latents, True if should_stop said FINISH). Steps are
        numbered from `first` of `total` (the hires pass continues the count of the first one)."""
        import torch

        for i, t in enumerate(timesteps):
            if should_stop(first + i) == FINISH:
                return latents, True
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(model_input, t, cond)
            if do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + cfg_scale * (text - uncond)
            out = scheduler.step(noise_pred, t, latents, generator=generator, return_dict=True)
            latents = out.prev_sample
            if progress is not None:
                x0 = getattr(out, "pred_original_sample", None)
                progress(first + i + 1, total, latent_preview((x0 if x0 is not None else latents)[0].float().cpu().numpy()))
        return latents, False

    def upscale(self, latents, upscaler: str, hires: HiresPlan, generator):
        """Latents at the base size -> latents at the hires size, as A1111's hires fix upscales them."""
        import torch

        size = (hires.height // self.vae_scale_factor, hires.width // self.vae_scale_factor)
        if upscaler in LATENT_MODES:
            mode, antialias = LATENT_MODES[upscaler]
            return torch.nn.functional.interpolate(latents, size=size, mode=mode, antialias=antialias)
        from PIL import Image

        resample = getattr(Image, IMAGE_UPSCALERS[upscaler])
        encoded = []
        for image in self.decode(latents):
            big = Image.fromarray(image).resize((hires.width, hires.height), resample)
            encoded.append(self.encode_pixels(np.asarray(big), generator))
        return torch.cat(encoded)

    @staticmethod
    def hires_infotext(params: GenerationParams, hires: HiresPlan | None) -> dict[str, str]:
        """A1111's infotext keys of a hires pass (its `extra_generation_params`)."""
        if hires is None:
            return {}
        fields = {"Hires upscale": f"{params.hr_scale:g}"} if not (params.hr_resize_x or params.hr_resize_y) else \
            {"Hires resize": f"{hires.width}x{hires.height}"}
        if params.hr_second_pass_steps:
            fields["Hires steps"] = str(params.hr_second_pass_steps)
        fields["Hires upscaler"] = params.hr_upscaler
        return fields

    def check_engine_limits(self, params: GenerationParams, size: tuple[int, int] | None = None,
                            field: str = "width") -> None:
        """Requests the TensorRT engines cannot take are refused here, naming the field and the limit
        (size: the hires pass's width x height, and field the parameter that asked for it)."""
        limits = self.engine_limits
        if limits is None:
            return
        if params.num_images > limits.max_images:
            raise InvalidInput("num_images", params.num_images,
                               f"must be at most {limits.max_images} with this repository's TensorRT engines")
        width, height = size or (params.width, params.height)
        if not any(s.covers(width, height) for s in limits.sizes):
            boxes = "; ".join(f"{s.width[0]}-{s.width[1]} x {s.height[0]}-{s.height[1]}" for s in limits.sizes)
            raise InvalidInput(field, f"{width}x{height}",
                               f"width x height must lie in one of the TensorRT engines' size ranges ({boxes})")

    def encode_prompt(self, prompt: str, negative: str | None, do_cfg: bool):
        """-> (embeds [1 or 2, seq, D1+D2], pooled [1 or 2, P]) torch tensors on the loop's device;
        with CFG row 0 is the negative.

        negative None with CFG: zeros when the model says `force_zeros_for_empty_prompt` (SDXL
        does), else the empty string, as diffusers does for `negative_prompt=None`. An empty
        string negative prompt counts as None.
        """
        import torch

        texts = [prompt]
        zero_negative = do_cfg and not negative and self.force_zeros_for_empty_prompt
        if do_cfg and not zero_negative:
            texts.append(negative or "")
        hidden_names = (self.manifest.text_encoder_hidden, self.manifest.text_encoder_2_hidden)
        fields = ("prompt", "negative_prompt")
        # (input_ids, multipliers) per encoder and text: A1111's emphasis weights each token.
        per_encoder = [[self._chunks(tok, t, field) for t, field in zip(texts, fields)] for tok in self.tokenizers]
        n_chunks = max(len(ids) for rows in per_encoder for ids, _ in rows)
        if self.engine_limits is not None and n_chunks > self.engine_limits.max_chunks:
            body = self.tokenizers[0].model_max_length - 2
            field = next(f for rows in per_encoder for (r, _), f in zip(rows, fields) if len(r) == n_chunks)
            raise InvalidInput(field, f"<{n_chunks} chunks of {body} tokens>",
                               f"must be at most {self.engine_limits.max_chunks * body} CLIP tokens with this "
                               "repository's TensorRT engines")
        encoded, pooled = [], None
        for graph, tokenizer, hidden, rows in zip(("text_encoder", "text_encoder_2"), self.tokenizers, hidden_names, per_encoder):
            ids = torch.from_numpy(np.concatenate([pad_chunks(tokenizer, r, n_chunks) for r, _ in rows])).to(self.device)
            multipliers = torch.from_numpy(np.concatenate([pad_multipliers(m, n_chunks) for _, m in rows])).to(self.device)
            out = self._run(graph, {"input_ids": ids})
            # Each chunk weighted and its mean restored on its own, as A1111 encodes chunk by chunk;
            # the pooled output below stays the encoder's own (A1111 does not weight it either).
            states = emphasize(out[hidden], multipliers)
            states = states.reshape(len(texts), n_chunks * ids.shape[1], -1)  # chunks along the sequence
            encoded.append(states)
            if graph == "text_encoder_2":
                # The pooled output of each text's first chunk (its start, as A1111 does for long prompts).
                pooled = out[self.manifest.text_encoder_2_pooled].reshape(len(texts), n_chunks, -1)[:, 0]
        embeds = torch.cat(encoded, dim=-1)
        if zero_negative:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
            pooled = torch.cat([torch.zeros_like(pooled), pooled])
        elif do_cfg:
            embeds, pooled = embeds.flip(0), pooled.flip(0)  # negative first, as diffusers concatenates
        return embeds.to(self.float_dtype).contiguous(), pooled.to(self.float_dtype).contiguous()

    @staticmethod
    def _chunks(tokenizer, text: str, field: str):
        """(input_ids, multipliers) of one text; an unweighted one is chunked exactly as a plain prompt."""
        plain = unweighted(text, field)
        if plain is None:
            return weighted_chunks(tokenizer, text, field)
        ids = token_chunks(tokenizer, plain, field)
        return ids, np.ones(ids.shape, dtype=np.float32)

    def require_vae_encoder(self, field: str) -> None:
        if "vae_encoder" not in self.runners or "vae_encoder" not in self.manifest.io:
            raise InvalidInput(field, "<needs the VAE encoder>", "this repository has no VAE encoder (exported "
                               "before img2img): export it again (`make export`) and restart Triton")

    def encode_image(self, data: bytes, width: int, height: int, generator) -> "torch.Tensor":
        """PNG/JPEG bytes -> scaled latents [1, C, h, w]: resized to width x height (A1111's "Just resize"),
        encoded by the VAE, a sample drawn from its distribution with the request's generator."""
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB").resize((width, height), Image.LANCZOS)
        return self.encode_pixels(np.asarray(rgb), generator)

    def encode_pixels(self, rgb: np.ndarray, generator) -> "torch.Tensor":
        """HxWx3 uint8 -> scaled latents [1, C, h, w], a sample of the VAE's distribution (the request's generator)."""
        import torch

        pixels = torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        dtype = _torch_dtype(self.manifest.input_dtype("vae_encoder", "sample"))
        moments = self._run("vae_encoder", {"sample": pixels.to(self.device, dtype)})["latent_parameters"]
        mean, logvar = moments.to(torch.float32).chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        sample = mean + std * torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device)
        cfg = self.vae_config
        if cfg.get("latents_mean") is not None and cfg.get("latents_std") is not None:
            lat_mean = torch.tensor(cfg["latents_mean"], dtype=torch.float32, device=sample.device).reshape(1, -1, 1, 1)
            lat_std = torch.tensor(cfg["latents_std"], dtype=torch.float32, device=sample.device).reshape(1, -1, 1, 1)
            return (sample - lat_mean) * cfg["scaling_factor"] / lat_std
        return sample * cfg["scaling_factor"]

    def prepare_latents(self, num_images: int, height: int, width: int, generator) -> "torch.Tensor":
        import torch

        shape = (num_images, int(self.manifest.io["unet"]["inputs"]["sample"][1][1]),
                 height // self.vae_scale_factor, width // self.vae_scale_factor)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def add_time_ids(self, height: int, width: int) -> "torch.Tensor":
        import torch

        # original size, crop top-left, target size; SDXL conditions on all six numbers.
        return torch.tensor([[height, width, 0, 0, height, width]], dtype=self.float_dtype, device=self.device)

    def unet(self, sample: "torch.Tensor", t, cond: dict) -> "torch.Tensor":
        import torch

        timestep_dtype = _torch_dtype(self.manifest.input_dtype("unet", "timestep"))
        inputs = {
            "sample": sample.to(self.float_dtype),
            "timestep": torch.full((sample.shape[0], 1), float(t), dtype=timestep_dtype, device=self.device),
            **cond,
        }
        return self._run("unet", inputs)["out_sample"].to(torch.float32)

    def decode(self, latents: "torch.Tensor") -> list[np.ndarray]:
        import torch

        cfg = self.vae_config
        if cfg.get("latents_mean") is not None and cfg.get("latents_std") is not None:
            mean = torch.tensor(cfg["latents_mean"], dtype=torch.float32, device=latents.device).reshape(1, -1, 1, 1)
            std = torch.tensor(cfg["latents_std"], dtype=torch.float32, device=latents.device).reshape(1, -1, 1, 1)
            latents = latents * std / cfg["scaling_factor"] + mean
        else:
            latents = latents / cfg["scaling_factor"]
        dtype = _torch_dtype(self.manifest.input_dtype("vae_decoder", "latent_sample"))
        sample = self._run("vae_decoder", {"latent_sample": latents.to(dtype)})["sample"].to(torch.float32)
        images = (sample / 2 + 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)
        # The one host copy of the loop: the finished pictures, as uint8.
        return list((images * 255).round().to(torch.uint8).cpu().numpy())

    # -- calling the graphs ----------------------------------------------------------------------

    def _run(self, graph: str, inputs: dict) -> dict:
        """Call one graph, in slices of at most its max batch rows; a failure keeps the graph's name."""
        import torch

        rows = next(iter(inputs.values())).shape[0]
        step = self.max_batch[graph]
        parts = []
        for start in range(0, rows, step):
            part = {k: v[start:start + step].contiguous() for k, v in inputs.items()}
            try:
                parts.append(self.runners[graph](part))
            except StageError:
                raise
            except Exception as exc:
                raise StageError(graph, f"{type(exc).__name__}: {exc}") from exc
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

