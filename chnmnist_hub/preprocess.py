"""One path from any image to the model's input.

Dataset scans, sketchpad strokes and phone photos all pass through :func:`canonicalize`, in
training and in inference, so the models are shown what they learned from. The canonical form is
a 64x64 image, ink bright on black, the character cropped, scaled so that its longer side is
``BOX`` pixels, centred, and redrawn with strokes of one fixed width: brush size, paper colour,
lighting and where the character sat on the page no longer matter.
"""
from __future__ import annotations

import hashlib
import io
import struct
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, NoCharacterError

VERSION = 4  # bump when the output changes: models record the version they were trained with
SIZE = 64  # output side
BOX = 48  # the character's longer side in the output
STROKE = 3.0  # stroke width in output pixels
_UP = 4  # strokes are measured and redrawn at this multiple of the output resolution
_WORK = 512  # larger inputs are reduced to this longer side first: nothing finer survives anyway
_GRID = 8  # blocks a side for the paper-level map
_INK = 0.35  # ink strength (of the strongest) that surely is a stroke
_WEAK = 0.15  # fainter ink counts too where it touches sure strokes (hysteresis)
MAX_PIXELS = 40_000_000  # larger images are refused before they are decoded

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check then fires on anything larger
# What Pillow raises on damaged files (it takes SyntaxError, IndexError, TypeError, struct.error for format errors)
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError, TypeError, KeyError, struct.error)


# ---------------------------------------------------------------- reading any image into grey

def open_image(source) -> Image.Image:
    """Open a path, bytes or file object as a PIL image, refusing what is not an image."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the upload"
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            raise ImageError(f"{p} is a folder, not an image")
        if not p.exists():
            raise ImageError(f"{p} does not exist")
        if not p.is_file():  # a FIFO or device would block or stream forever
            raise ImageError(f"{p} is not a regular file")
    elif isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        im = Image.open(source)
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageError(f"{name} is too large ({w}x{h} pixels); the limit is {MAX_PIXELS // 1_000_000} megapixels")
        im.load()
        return im
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large to decode safely (a decompression bomb?)") from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise ImageError(f"{name} is not an image we can read (unknown format, empty, truncated or corrupt)") from None


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if getattr(im, "n_frames", 1) > 1:  # the first frame, before exif_transpose copies the current one
        im.seek(0)
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # a broken EXIF block must not cost the user their image
        pass
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32)
        return a / (65535.0 if a.max(initial=0) > 255 or mode.startswith("I;16") else 255.0)
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in im.info:
        return np.asarray((im.convert("LA") if mode == "La" else im).convert("RGBA"))  # Pillow has no La -> RGBA
    if mode in ("L", "1"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))


def _to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ImageError("image values must lie in 0..255 (8-bit) or 0..65535 (16-bit)")
        return a.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)
    if np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ImageError("image holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 255:
            raise ImageError("float image values must lie in 0..1 or 0..255")
        return a / 255.0 if hi > 1.0 else a
    raise ImageError(f"cannot read an image of type {a.dtype}")


def to_grey(image) -> np.ndarray:
    """Any supported image -> float32 (H, W) in [0, 1]; transparency is laid on paper."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)) or hasattr(image, "read"):
        image = open_image(image)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w * h > MAX_PIXELS:  # before the pixels of a lazily opened image are decoded
            raise ImageError(f"image is too large ({w}x{h} pixels); the limit is {MAX_PIXELS // 1_000_000} megapixels")
        try:
            a = _pil_to_array(image)
        except _DECODE_ERRORS:  # decoding a lazily opened, damaged file
            raise ImageError("image is not one we can read (truncated or corrupt)") from None
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.float()  # bfloat16, float8: numpy has no such type
        try:
            a = t.numpy()
        except (TypeError, RuntimeError):
            raise ImageError(f"cannot read a tensor of type {t.dtype} with layout {t.layout}") from None
    elif isinstance(image, np.ndarray):
        a = image
    else:
        raise ImageError(f"expected an image (PIL image, numpy array or file), got {type(image).__name__}")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first, as torch keeps them
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ImageError(f"an image must be H x W, H x W x 3 or H x W x 4; got shape {tuple(a.shape)}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ImageError(f"image is too large ({a.shape[1]}x{a.shape[0]} pixels)")
    if min(a.shape[:2]) == 0:
        raise ImageError("image is empty (0 pixels)")
    a = _to_float(a)
    if a.ndim == 2:
        return a
    grey = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    if a.shape[-1] == 3:
        return grey
    alpha = a[..., 3]
    if alpha.min() > 0.99:
        return grey
    if alpha.max() < 0.02:
        raise NoCharacterError("no character found: the image is fully transparent")
    # Strokes on transparent paper (as sketchpads export them): lay them on paper of the
    # opposite brightness, so dark strokes end up on white and light strokes on black.
    ink = alpha > 0.5
    stroke_level = float(grey[ink].mean()) if ink.any() else float((grey * alpha).sum() / alpha.sum())
    paper = 1.0 if stroke_level < 0.5 else 0.0
    return grey * alpha + paper * (1.0 - alpha)


# ---------------------------------------------------------------- finding and redrawing the ink

def _erode(x: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-x, 3, 1, 1)


def _grow(x: torch.Tensor, step: int) -> torch.Tensor:
    # Alternating square and cross neighbourhoods grows by near-octagons, close to a round pen.
    if step % 2 == 0:
        return F.max_pool2d(x, 3, 1, 1)
    return torch.maximum(F.max_pool2d(x, (1, 3), 1, (0, 1)), F.max_pool2d(x, (3, 1), 1, (1, 0)))


def _shrink(x: torch.Tensor, step: int) -> torch.Tensor:
    return -_grow(-x, step)


def _ink_map(g: np.ndarray) -> torch.Tensor:
    """Grey image -> ink strength in [0, 1] (1 = ink), paper level and lighting removed."""
    x = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))[None, None]
    h, w = x.shape[-2:]
    if max(h, w) > _WORK:
        s = _WORK / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")
        h, w = x.shape[-2:]
    # Ink is the minority that stands out from the typical pixel: bright ink on dark paper if the
    # brightest pixels are further from the median than the darkest (a 2x2 mean first, so that
    # single pixels do not decide). Shadows darken paper but ink stays darker still.
    smooth = F.avg_pool2d(x, 2, 1) if min(h, w) >= 2 else x
    med = x.median()
    if smooth.max() - med < med - smooth.min():
        x = 1.0 - x
    # Paper level: a low percentile per block, each block taking the lowest of its neighbours'
    # (a block full of ink borrows their paper). On scans and sketchpads that map is flat and
    # is simply subtracted.
    n = _GRID if min(h, w) >= 4 * _GRID else 1
    uneven = False
    if n > 1:
        bh, bw = h // n, w // n
        blocks = x[..., : bh * n, : bw * n].reshape(n, bh, n, bw).permute(0, 2, 1, 3).reshape(n * n, -1)
        level = blocks.kthvalue(max(1, blocks.shape[1] // 5), dim=1).values.reshape(1, 1, n, n)
        level = -F.max_pool2d(-level, 3, 1, 1)
        # Uneven light tints much of the page; very bold strokes raise only a few blocks.
        lo = level.min()
        uneven = float(level.max() - lo) >= 0.1 and float((level > lo + 0.05).float().mean()) >= 0.25
        # A constant map (most scans and sketches) needs no enlarging: the same result, cheaper.
        level = lo if bool((level == lo).all()) else F.interpolate(level, size=(h, w), mode="bilinear", align_corners=False)
    else:
        level = x.flatten().kthvalue(max(1, x.numel() // 5)).values
    if not uneven:
        x = (x - level).clamp_(min=0)
    else:
        # Uneven light (photos): a top-hat. Subtract the image opened with a window wider than a
        # pen stroke, so what is left is thin and bright, i.e. strokes; then drop what is not
        # strokes (specks, shadow blobs, paper edges).
        s = min(1.0, 160 / min(h, w))  # the background is smooth: estimate it small
        small = F.interpolate(x, scale_factor=s, mode="area") if s < 1 else x
        k = max(5, round(min(small.shape[-2:]) / 8)) | 1
        bg = ndimage.grey_opening(small[0, 0].numpy(), size=(k, k), mode="nearest")
        bg = ndimage.uniform_filter(bg, size=max(3, k // 3), mode="nearest")  # no blocky edges
        bg = torch.from_numpy(bg)[None, None]
        if s < 1:
            bg = F.interpolate(bg, size=(h, w), mode="bilinear", align_corners=False)
        x = (x - bg).clamp_(min=0)
    # The strongest ink sets the scale; a 2x2 mean first so that one hot pixel cannot.
    peak = F.avg_pool2d(x, 2, 1).max() if min(h, w) >= 2 else x.max()
    if peak < 0.08:
        raise NoCharacterError("no character found: the image is blank or has almost no contrast")
    x = (x / peak).clamp_(0, 1)
    return _keep_strokes(x) if uneven else x


def _keep_strokes(ink: torch.Tensor) -> torch.Tensor:
    """Zero what is not pen strokes: specks smaller than a pen dot, solid blobs far thicker than the
    strokes (shadows, thumbs), and shapes that hug the image border (paper edges, table)."""
    full = (ink[0, 0] > _INK).numpy()
    labels, n = ndimage.label(full, structure=np.ones((3, 3)))
    if n <= 1:
        return ink
    mask = full
    idx = np.arange(1, n + 1)
    dist = ndimage.distance_transform_edt(mask)
    ridge = mask & (dist >= ndimage.maximum_filter(dist, size=3))
    width = 2.0 * float(np.median(dist[ridge]))  # typical stroke width, robust to a few blobs
    area = ndimage.sum_labels(mask, labels, idx)
    thick = 2.0 * ndimage.maximum(dist, labels, idx)
    h, w = mask.shape
    contact = np.zeros(n + 1)
    for edge, side in ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)):
        counts = np.bincount(edge, minlength=n + 1) / side
        contact = np.maximum(contact, counts)
    keep = (area >= max(3.0, 0.5 * width * width)) & (thick <= 3.0 * width + 2) & (contact[1:] < 0.25)
    if not keep.any():
        keep[np.argmax(area)] = True
    if keep.all():
        return ink
    kept = ndimage.binary_dilation(np.isin(labels, idx[keep]), iterations=2)
    return ink * torch.from_numpy(kept)[None, None]


def _stroke_mask(ink: torch.Tensor) -> torch.Tensor:
    """Pixels that are strokes: sure ink, plus fainter ink connected to it. A light pen or a
    faint scan leaves whole strokes at a third of the darkest one's strength; a fixed cut-off
    would break them into fragments, while noise that touches no sure stroke stays out."""
    weak = (ink[0, 0] > _WEAK).numpy()
    labels, n = ndimage.label(weak, structure=np.ones((3, 3)))
    if n == 0:
        return torch.zeros_like(ink)
    sure = np.unique(labels[(ink[0, 0] > _INK).numpy()])
    keep = np.zeros(n + 1, bool)
    keep[sure] = True  # sure ink is weak ink too, so label 0 (no ink) is never among them
    return torch.from_numpy(keep[labels]).float()[None, None]


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    # Bounds by ink mass, trimming a sliver on each side so that a stray speck cannot stretch them.
    def bounds(profile: torch.Tensor) -> tuple[int, int]:
        c = profile.cumsum(0)
        total = c[-1]
        lo = int(torch.searchsorted(c, total * 0.002))
        hi = int(torch.searchsorted(c, total * 0.998))
        return lo, min(hi, len(profile) - 1) + 1

    m = mask[0, 0]
    y0, y1 = bounds(m.sum(1))
    x0, x1 = bounds(m.sum(0))
    return y0, y1, x0, x1


def canonicalize_uint8(image) -> np.ndarray:
    """Any image -> uint8 (64, 64), ink bright on black, in the canonical form."""
    ink = _ink_map(to_grey(image))
    mask = _stroke_mask(ink)
    if mask.sum() < 4:
        raise NoCharacterError("no character found: too little ink")
    y0, y1, x0, x1 = _bbox(mask)
    h, w = y1 - y0, x1 - x0
    if max(h, w) < 3:
        raise NoCharacterError("no character found: only a dot")
    big = BOX * _UP
    s = big / max(h, w)
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    # Faint strokes that were kept count as fully as strong ones: pen pressure and scanner
    # contrast are not part of the character.
    crop = (ink[..., y0:y1, x0:x1] * mask[..., y0:y1, x0:x1] / (2 * _WEAK)).clamp_(max=1.0)
    crop = F.interpolate(crop, size=(th, tw), mode="area" if s < 1 else "bilinear", align_corners=None if s < 1 else False)
    # A thin line shrunk below a pixel keeps its place but loses strength: threshold relative
    # to what survived rather than to 1.
    m = (crop > 0.4 * crop.max()).float()
    pad = _UP * 4
    m = F.pad(m, (pad, pad, pad, pad))
    # Stroke width from area and boundary: a band of width w loses ~2 pixels of width per erosion.
    a0 = float(m.sum())
    a1 = float(_erode(m).sum())
    width = 2.0 * a0 / max(a0 - a1, 1.0)
    steps = round((STROKE * _UP - width) / 2)
    if steps > 0:
        for i in range(min(steps, 3 * _UP)):
            m = _grow(m, i)
    elif steps < 0:
        for i in range(-steps):
            thinner = _shrink(m, i)
            if float(thinner.sum()) < 0.35 * a0:  # never erode a character away
                break
            m = thinner
    m = F.avg_pool2d(m, _UP)[0, 0]  # back to output resolution, with smooth edges
    # Centre the character's box (not its mass): that is how the pen strokes sit on the grid.
    ys, xs = torch.nonzero(m > 0.05, as_tuple=True)
    m = m[int(ys.min()) : int(ys.max()) + 1, int(xs.min()) : int(xs.max()) + 1]
    mh, mw = m.shape
    if mh > SIZE or mw > SIZE:
        m = F.interpolate(m[None, None], size=(min(mh, SIZE), min(mw, SIZE)), mode="area")[0, 0]
        mh, mw = m.shape
    out = torch.zeros(SIZE, SIZE)
    oy, ox = (SIZE - mh) // 2, (SIZE - mw) // 2
    out[oy : oy + mh, ox : ox + mw] = m
    return (out * 255.0).round().clamp_(0, 255).to(torch.uint8).numpy()


def canonicalize(image) -> torch.Tensor:
    """Any image -> float32 tensor (1, 64, 64) in [0, 1], the models' input."""
    return torch.from_numpy(canonicalize_uint8(image)).float().div_(255.0)[None]


def canonicalize_many(images, progress: bool = False) -> np.ndarray:
    """Canonicalize a sequence of images -> uint8 (N, 64, 64). Errors name the image's position."""
    out = np.zeros((len(images), SIZE, SIZE), np.uint8)
    with torch.inference_mode():
        for i, im in enumerate(images):
            try:
                out[i] = canonicalize_uint8(im)
            except NoCharacterError:
                pass  # a blank scan stays blank; the model sees an empty canvas
    return out


def _cache_dir() -> Path:
    return Path(os.environ.get("CHNMNIST_CACHE", Path.home() / ".cache" / "chnmnist_hub"))


def _canon_chunk(chunk: np.ndarray) -> np.ndarray:
    torch.set_num_threads(1)
    return canonicalize_many(chunk)


def canonicalize_dataset(images: np.ndarray) -> np.ndarray:
    """Canonicalize a whole dataset once, in parallel, and keep the result on disk keyed by the
    images' content and the preprocessing version (training and evaluation reuse it)."""
    key = hashlib.sha1(images.tobytes()).hexdigest()[:16]
    path = _cache_dir() / f"canon-v{VERSION}-{key}.npy"
    if path.exists():
        try:
            out = np.load(path, allow_pickle=False)
            if out.shape == images.shape and out.dtype == np.uint8:
                return out
        except (OSError, ValueError):
            pass
    workers = min(os.cpu_count() or 1, 16)
    if len(images) >= 2000 and workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            out = np.concatenate(list(ex.map(_canon_chunk, np.array_split(images, workers * 4))))
    else:
        out = canonicalize_many(images)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the next run the same work
    return out
