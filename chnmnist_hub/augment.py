"""Batched augmentation on whatever device the batch is on: every image gets its own random
warp (rotation, scale, shear, translation, a smooth elastic field), stroke thickness and contrast.

Parameters are drawn for the whole global batch from a generator the caller seeds, so a DDP rank
that takes its slice of the batch gets exactly the parameters a single process would have used.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def draw_params(n: int, generator: torch.Generator, device) -> dict[str, torch.Tensor]:
    def u(lo, hi, *shape):
        return torch.rand(n, *shape, generator=generator, device=device) * (hi - lo) + lo

    return {
        "angle": u(-15, 15) * (math.pi / 180),
        "scale": u(0.85, 1.08),
        "aspect": u(-0.15, 0.15),
        "shear": u(-0.25, 0.25),
        "shift": u(-0.08, 0.08, 2),
        "elastic": u(-1, 1, 2, 5, 5) * u(0.0, 0.06)[:, None, None, None],
        "thickness": torch.randint(0, 6, (n,), generator=generator, device=device),
        "gamma": u(0.7, 1.3),
    }


def apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """x: float (B, 1, H, W) in [0, 1], ink bright -> augmented batch, same shape."""
    b, _, h, w = x.shape
    cos, sin = torch.cos(p["angle"]), torch.sin(p["angle"])
    sx = p["scale"] * torch.exp(p["aspect"])
    sy = p["scale"] * torch.exp(-p["aspect"])
    sh = p["shear"]
    # Output->input mapping for grid_sample: rotate . shear . scale, inverted by dividing by scale.
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = cos / sx
    theta[:, 0, 1] = (-sin + sh * cos) / sx
    theta[:, 1, 0] = sin / sy
    theta[:, 1, 1] = (cos + sh * sin) / sy
    theta[:, :, 2] = p["shift"]
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
    field = F.interpolate(p["elastic"].to(x.dtype), size=(h, w), mode="bicubic", align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke weight: mostly as canonicalized, sometimes a pen a pixel thinner or thicker.
    k = p["thickness"].view(b, 1, 1, 1)
    out = torch.where(k == 0, thinner(out), torch.where(k == 5, thicker(out), out))
    return out.clamp(0, 1).pow(p["gamma"].view(b, 1, 1, 1))


def thicker(x: torch.Tensor) -> torch.Tensor:
    """Strokes a pixel wider on every side."""
    return F.max_pool2d(x, 3, 1, 1)


def thinner(x: torch.Tensor) -> torch.Tensor:
    """Strokes a pixel narrower, taken off their right side."""
    return F.pad(-F.max_pool2d(-x, (1, 2), 1, 0), (0, 1, 0, 0))


def written_smaller(images, factors) -> np.ndarray:
    """Raw uint8 images (N, H, W) -> the same characters as if written smaller: each shrunk by its
    factor (area-averaged, so thin strokes fade as they would in a small or far-off drawing) and
    centred on an empty canvas of the same size. Canonicalised afterwards like any image."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    for i, f in enumerate(factors):
        if not 0 < f <= 1:
            raise ValueError(f"written_smaller: factor {f} is not in (0, 1]")
        sh, sw = max(2, round(h * float(f))), max(2, round(w * float(f)))
        oy, ox = (h - sh) // 2, (w - sw) // 2
        out[i, :, oy : oy + sh, ox : ox + sw] = F.interpolate(x[i : i + 1], size=(sh, sw), mode="area")[0]
    return out[:, 0].round_().clamp_(0, 255).to(torch.uint8).numpy()


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return apply(x, draw_params(x.shape[0], generator, x.device))
