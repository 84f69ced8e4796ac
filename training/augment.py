"""Batch augmentations that mimic inspection-site capture (torch).

Geometry (rotation, scale, shift, mild perspective), lighting (brightness, contrast,
colour temperature), camera (defocus blur, sensor noise) run on whole batches; JPEG
recompression runs per photo in the dataset. Colour changes stay mild so that an
off-palette print, itself a counterfeit tell, survives augmentation.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from longteng.preprocess import PreprocessSpec
from longteng.training.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _homographies(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    angle = torch.deg2rad(_uniform(n, -config.rotate_degrees, config.rotate_degrees, generator))
    scale = _uniform(n, *config.scale_range, generator)
    shift = _uniform(2 * n, -config.translate_fraction, config.translate_fraction, generator).view(n, 2) * 2
    tilt = _uniform(2 * n, -config.perspective, config.perspective, generator).view(n, 2)
    # Maps output coordinates to input coordinates (grid_sample convention), in [-1, 1] units.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    matrix = torch.zeros(n, 3, 3)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2] = cos, -sin, shift[:, 0]
    matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2] = sin, cos, shift[:, 1]
    matrix[:, 2, 0], matrix[:, 2, 1], matrix[:, 2, 2] = tilt[:, 0], tilt[:, 1], 1.0
    return matrix


def _warp(images: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).view(1, h * w, 3)
    mapped = base @ matrix.transpose(1, 2)
    grid = (mapped[..., :2] / mapped[..., 2:3].clamp(min=1e-3)).view(n, h, w, 2)
    # Out-of-frame pixels take the padding colour, as letterboxing does.
    warped = F.grid_sample(images - fill, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + fill


def _gaussian_kernels(sigmas: torch.Tensor, radius: int = 2) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    return kernels / kernels.sum(dim=1, keepdim=True)


def _blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    n, c, h, w = images.shape
    kernel = _gaussian_kernels(sigmas).to(images.dtype)  # (n, k)
    k = kernel.shape[1]
    flat = images.reshape(1, n * c, h, w)
    horizontal = kernel.repeat_interleave(c, dim=0).view(n * c, 1, 1, k)
    vertical = kernel.repeat_interleave(c, dim=0).view(n * c, 1, k, 1)
    flat = F.conv2d(F.pad(flat, (k // 2, k // 2, 0, 0), mode="replicate"), horizontal, groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, k // 2, k // 2), mode="replicate"), vertical, groups=n * c)
    return flat.view(n, c, h, w)


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, spec: PreprocessSpec, generator: torch.Generator
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> augmented float32 (N, H, W, 3) on the 0..255 scale.

    The result goes through longteng.preprocess.normalize, the runtime's own function.
    """
    x = images.permute(0, 3, 1, 2).float()
    n = x.shape[0]
    fill = torch.tensor(spec.pad_color, dtype=torch.float32).view(1, 3, 1, 1)
    if config.hflip_probability > 0:
        flip = torch.rand(n, generator=generator) < config.hflip_probability
        x[flip] = x[flip].flip(-1)
    x = _warp(x, _homographies(n, config, generator), fill)

    brightness = _uniform(n, 1 - config.brightness, 1 + config.brightness, generator).view(n, 1, 1, 1)
    contrast = _uniform(n, 1 - config.contrast, 1 + config.contrast, generator).view(n, 1, 1, 1)
    warmth = _uniform(n, -config.colour_temperature, config.colour_temperature, generator)
    gains = torch.stack([1 + warmth, torch.ones(n), 1 - warmth], dim=1).view(n, 3, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness * gains

    blurred = torch.rand(n, generator=generator) < config.blur_probability
    if blurred.any():
        sigmas = _uniform(int(blurred.sum()), 0.4, 1.3, generator)
        x[blurred] = _blur(x[blurred], sigmas)
    if config.noise_std > 0:
        level = _uniform(n, 0, config.noise_std, generator).view(n, 1, 1, 1)
        x = x + torch.randn(x.shape, generator=generator) * level
    return x.clamp_(0, 255).permute(0, 2, 3, 1).contiguous()


def recompress_jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode one uint8 HWC image as JPEG, as messaging apps and archives do."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))
