"""Hires fix as A1111 does it: paint at the base size, upscale, then denoise again at the target size.

The upscalers are A1111's names. Latent modes resize the latents (torch interpolation, A1111's
`shared.latent_upscale_modes`); the image-space ones decode, resize the picture and encode it again
through the VAE ("None" is A1111's plain Lanczos resize, as its UpscalerNone leaves the resize to PIL).
The second pass runs `hr_second_pass_steps` (0: `steps`) steps at `denoising_strength`: like A1111's
img2img with fixed steps, the schedule is int(steps / strength) long and the last `steps` of it run.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotai.errors import InvalidInput
from sotai.limits import check_size

# name -> (torch interpolate mode, antialias); A1111 shared.latent_upscale_modes.
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# name -> PIL resample filter name; decoded, resized, encoded again (needs the VAE encoder).
IMAGE_UPSCALERS = {"None": "LANCZOS", "Lanczos": "LANCZOS", "Nearest": "NEAREST"}
HR_UPSCALERS = (*LATENT_MODES, *IMAGE_UPSCALERS)
HR_SCALE_RANGE = (1.0, 4.0)
HR_RESIZE_RANGE = (0, 2048)  # 0: from hr_scale


@dataclass(frozen=True)
class HiresPlan:
    width: int
    height: int
    steps: int  # second-pass denoising steps that run
    schedule: int  # length of the schedule they are the end of

    @property
    def start(self) -> int:
        return self.schedule - self.steps


def hires_plan(width: int, height: int, steps: int, *, hr_scale: float, hr_resize_x: int, hr_resize_y: int,
               hr_second_pass_steps: int, denoising_strength: float) -> HiresPlan:
    """The target size (A1111: hr_resize_x/y when given, one of them keeping the aspect, else x hr_scale) and
    the second pass's steps; a target outside the size limits names the field that asked for it."""
    if hr_resize_x == 0 and hr_resize_y == 0:
        target, field = (int(width * hr_scale), int(height * hr_scale)), "hr_scale"
    elif hr_resize_y == 0:
        target, field = (hr_resize_x, hr_resize_x * height // width), "hr_resize_x"
    elif hr_resize_x == 0:
        target, field = (hr_resize_y * width // height, hr_resize_y), "hr_resize_y"
    else:
        target, field = (hr_resize_x, hr_resize_y), "hr_resize_x"
    try:
        check_size(field, target[0])
        check_size(field, target[1])
    except InvalidInput as exc:
        raise InvalidInput(field, f"{target[0]}x{target[1]}", f"the hires size {exc.rule}") from None
    hr_steps = hr_second_pass_steps or steps
    if denoising_strength <= 0:
        return HiresPlan(target[0], target[1], 0, 0)
    schedule = int(hr_steps / min(denoising_strength, 0.999))
    return HiresPlan(target[0], target[1], hr_steps, schedule)
