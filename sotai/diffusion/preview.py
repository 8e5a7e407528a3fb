"""A cheap preview of the picture in progress: SDXL latents -> RGB by one 4x3 linear map, no VAE.

The factors are the least-squares fit of SDXL VAE decodes to latents that ComfyUI ships
(comfy/latent_formats.py, `SDXL`); with random-weight stand-in models the preview is as
meaningless as the picture.
"""

from __future__ import annotations

import numpy as np

SDXL_LATENT_RGB = np.array(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ],
    dtype=np.float32,
)
SDXL_LATENT_RGB_BIAS = np.array([0.1084, -0.0175, -0.0011], dtype=np.float32)


def latent_preview(latent: np.ndarray) -> np.ndarray:
    """One latent [4, h, w] -> uint8 [h, w, 3] (1/8 of the final size on each side)."""
    rgb = np.einsum("chw,ck->hwk", latent.astype(np.float32), SDXL_LATENT_RGB) + SDXL_LATENT_RGB_BIAS
    return (np.clip((rgb + 1.0) / 2.0, 0.0, 1.0) * 255.0).round().astype(np.uint8)
