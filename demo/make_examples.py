"""Write the demo's example images into demo/examples/ (synthetic strokes, no dataset images).

    python demo/make_examples.py

Two kinds: "scan" images look like Chinese MNIST (64x64, bright ink on a dark, slightly noisy
ground, a little blur); "drawing" images look like a sketchpad export or a photo of paper (dark
ink on light paper, larger, one with uneven light). The strokes are rough skeletons drawn by
hand below, jittered with a fixed seed, so the files are the same on every run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent / "examples"

# Stroke skeletons, (x, y) in 0..1.
STROKES = {
    "三": [[(0.25, 0.22), (0.75, 0.2)], [(0.3, 0.5), (0.7, 0.49)], [(0.12, 0.8), (0.88, 0.78)]],
    "十": [[(0.12, 0.45), (0.88, 0.43)], [(0.5, 0.1), (0.51, 0.92)]],
    "七": [[(0.12, 0.45), (0.88, 0.36)],
           [(0.42, 0.1), (0.42, 0.74), (0.5, 0.85), (0.82, 0.85), (0.88, 0.72)]],
    "八": [[(0.42, 0.2), (0.36, 0.55), (0.14, 0.86)], [(0.58, 0.22), (0.66, 0.56), (0.9, 0.86)]],
    "五": [[(0.2, 0.15), (0.8, 0.15)], [(0.48, 0.15), (0.4, 0.86)],
           [(0.26, 0.48), (0.72, 0.48), (0.68, 0.86)], [(0.1, 0.86), (0.9, 0.86)]],
    "六": [[(0.48, 0.08), (0.55, 0.2)], [(0.12, 0.34), (0.88, 0.34)],
           [(0.38, 0.52), (0.2, 0.86)], [(0.62, 0.52), (0.84, 0.86)]],
    "千": [[(0.72, 0.1), (0.3, 0.24)], [(0.12, 0.46), (0.88, 0.44)], [(0.5, 0.2), (0.5, 0.94)]],
    "四": [[(0.14, 0.2), (0.14, 0.84)], [(0.14, 0.2), (0.86, 0.2), (0.86, 0.84)],
           [(0.4, 0.2), (0.36, 0.52), (0.26, 0.62)], [(0.6, 0.2), (0.6, 0.56), (0.7, 0.6)],
           [(0.14, 0.8), (0.86, 0.8)]],
}
PINYIN = {"三": "san", "十": "shi", "七": "qi", "八": "ba", "五": "wu", "六": "liu", "千": "qian", "四": "si"}
SCANS = ["三", "七", "六", "千"]
DRAWINGS = ["十", "五", "八", "四"]


def jitter(strokes, rng, amount=0.025):
    return [[(x + rng.normal(0, amount), y + rng.normal(0, amount)) for x, y in s] for s in strokes]


def render(strokes, size, width, ink, paper, margin=0.1):
    im = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(im)
    scale = size * (1 - 2 * margin)
    for s in strokes:
        pts = [(size * margin + x * scale, size * margin + y * scale) for x, y in s]
        d.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2  # round pen ends, as a brush leaves them
        for x, y in (pts[0], pts[-1]):
            d.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return im


def scan(char, rng) -> Image.Image:
    """Chinese MNIST-like: 64x64, bright ink on a dark ground, soft edges, a little noise."""
    im = render(jitter(STROKES[char], rng), 256, 16, ink=235, paper=20).filter(ImageFilter.GaussianBlur(3))
    a = np.asarray(im.resize((64, 64), Image.Resampling.LANCZOS), np.float32)
    a = a + rng.normal(0, 6, a.shape)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def drawing(char, rng, n) -> Image.Image:
    """A sketchpad drawing (black on white); every other one as a photo of paper in uneven light."""
    im = render(jitter(STROKES[char], rng, 0.035), 384, 22, ink=10, paper=255, margin=0.15)
    if n % 2 == 0:
        return im.convert("RGB")
    a = np.asarray(im, np.float32) / 255
    yy, xx = np.mgrid[0:384, 0:384] / 384
    light = 0.95 - 0.35 * xx * yy  # darker towards one corner
    paper = np.stack([light * 0.98, light * 0.95, light * 0.88], -1)  # warm paper
    ink = np.array([0.12, 0.12, 0.25])  # blue-black pen
    rgb = a[..., None] * paper + (1 - a[..., None]) * ink
    return Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(2024)
    for char in SCANS:
        scan(char, rng).save(OUT / f"scan_{PINYIN[char]}.png", optimize=True)
    for n, char in enumerate(DRAWINGS):
        drawing(char, rng, n).save(OUT / f"drawing_{PINYIN[char]}.png", optimize=True)
    print(f"wrote {len(SCANS) + len(DRAWINGS)} images to {OUT}")


if __name__ == "__main__":
    main()
