#!/usr/bin/env python3
"""Generate the sketch-style VALIDATION set for the 15 Chinese numerals.

Nothing here comes from Chinese MNIST, and nothing here may ever be used for
training.  Three kinds of image are produced:

* ``median-sketch`` -- stroke centre-lines ("medians") of the npm package
  ``hanzi-writer-data`` (Make Me a Hanzi data), drawn the way a sketchpad draws
  mouse strokes: polylines with round caps/joins, pen 2-20 px, canvases
  200-800 px, varying placement, per-"writer" stroke perturbations.
* ``font:<name>`` -- glyphs of the fonts in :data:`VALIDATION_FONTS` placed on a
  sketchpad-like canvas.
* ``photo:median`` / ``photo:font:<name>`` -- phone-photo-like versions of the
  two above: pen ink on grey/beige paper, lighting gradient, shadow, blur,
  noise, perspective, JPEG compression.

Font split
----------
Make Me a Hanzi's strokes (and therefore the medians) were traced from Arphic
fonts, so the whole Arphic lineage (AR PL UKai/UMing and the older
KaitiM/SungtiL/Mingti2L fonts, plus BabelStone Han, whose CJK glyphs come from
Arphic, and cwTeX Kai, whose glyphs of these characters are practically those
of AR PL UKai) belongs to the validation side.  In addition WenQuanYi Zen Hei, Seto
font and Yusei Magic are reserved for validation.  Every font file listed in
:data:`VALIDATION_RESERVED_FILES` must never be used by a training generator
(``tools/make_synth_train.py`` imports that set and refuses those files).

Usage::

    python tools/make_sketchset.py --out data/sketchset [--seed N] [--per-class N]

Output: ``labels.csv`` (``file,index,character,source``) plus PNG (clean
drawings) and JPEG (photo-like) files.  The output is byte-for-byte
reproducible for the same seed, per-class count, hanzi-writer-data version,
font files and Pillow/libjpeg/FreeType versions.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CHARS = "零一二三四五六七八九十百千万亿"  # class index = position

HANZI_DATA_VERSION = "2.0.1"  # the version the committed set was made from
NPM_HINT = ("npm install --prefix tools/.npm hanzi-writer-data@" + HANZI_DATA_VERSION
            + " (run in the repository root)")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Make Me a Hanzi / hanzi-writer-data coordinates: a 1024-unit em box whose
# y axis points UP with the baseline at y = -124, i.e. the SVG shows them with
# transform "scale(1, -1) translate(0, -900)".  Display y = 900 - y.
HANZI_Y_FLIP = 900.0


# ---------------------------------------------------------------------------
# Fonts
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FontSpec:
    name: str  # short id used in labels.csv / npz
    file: str  # file name (searched for under the font directories)
    index: int  # face index inside a .ttc collection
    package: str  # Debian package that ships the file


#: Fonts whose glyphs appear in the validation set (set V).
VALIDATION_FONTS: tuple[FontSpec, ...] = (
    FontSpec("ar-pl-ukai", "ukai.ttc", 0, "fonts-arphic-ukai"),
    FontSpec("ar-pl-uming", "uming.ttc", 0, "fonts-arphic-uming"),
    FontSpec("ar-pl-kaitim-gb", "gkai00mp.ttf", 0, "fonts-arphic-gkai00mp"),
    FontSpec("ar-pl-sungtil-gb", "gbsn00lp.ttf", 0, "fonts-arphic-gbsn00lp"),
    FontSpec("babelstone-han", "BabelStoneHan.ttf", 0, "fonts-babelstone-han"),
    FontSpec("wqy-zenhei", "wqy-zenhei.ttc", 0, "fonts-wqy-zenhei"),
    FontSpec("setofont", "setofont.ttf", 0, "fonts-seto"),
    FontSpec("yusei-magic", "YuseiMagic-Regular.ttf", 0, "fonts-yusei-magic"),  # no 亿
)

#: Every font FILE reserved for validation: the files above plus the other
#: members of the same lineages (other faces of the same .ttc, the Big5
#: Arphic fonts, Seto's extension font).  Training generators must not read
#: any of these.
VALIDATION_RESERVED_FILES: frozenset[str] = frozenset(
    {f.file for f in VALIDATION_FONTS}
    | {
        "bkai00mp.ttf",  # AR PL KaitiM Big5 (Arphic)
        "bsmi00lp.ttf",  # AR PL Mingti2L Big5 (Arphic)
        "setofont-ex.ttf",
        # cwTeX Kai: its glyphs of these characters are near-identical to
        # AR PL UKai (mean glyph correlation 0.99, measured), so it counts
        # as Arphic lineage
        "cwkai.ttf",
    }
)

#: Substrings of font family names that belong to the validation lineages
#: (checked by the training generator in addition to the file names).
VALIDATION_RESERVED_FAMILY_WORDS: tuple[str, ...] = (
    "AR PL", "Arphic", "BabelStone", "Zen Hei", "Seto", "Yusei",
)

FONT_DIRS_ENV = "CHNMNIST_FONT_DIRS"


def font_dirs() -> list[Path]:
    env = os.environ.get(FONT_DIRS_ENV)
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
            Path.home() / ".local/share/fonts", Path.home() / ".fonts"]


def find_font_files() -> dict[str, Path]:
    """Map file name -> path over the font directories (first hit wins)."""
    found: dict[str, Path] = {}
    for d in font_dirs():
        if not d.is_dir():
            continue
        for root, dirs, files in os.walk(d):
            dirs.sort()
            for f in sorted(files):
                found.setdefault(f, Path(root) / f)
    return found


def load_font(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size=size, index=index,
                              layout_engine=ImageFont.Layout.BASIC)


def glyph_present(path: Path, index: int, ch: str) -> bool:
    """True when the font has a real glyph for ``ch`` (not .notdef/empty)."""
    font = load_font(path, index, 48)

    def render(c: str) -> bytes:
        im = Image.new("L", (72, 72), 0)
        ImageDraw.Draw(im).text((8, 8), c, font=font, fill=255)
        return im.tobytes()

    got = render(ch)
    return any(got) and got != render("\U000F0000")


def resolve_fonts(specs, files=None) -> dict[str, tuple[FontSpec, Path, str]]:
    """Return {name: (spec, path, covered chars)}; raise SystemExit if missing."""
    files = find_font_files() if files is None else files
    missing = [s for s in specs if s.file not in files]
    if missing:
        pkgs = " ".join(sorted({s.package for s in missing}))
        die(f"font file(s) not found: {', '.join(s.file for s in missing)} "
            f"(looked in {', '.join(map(str, font_dirs()))}); install them with: "
            f"apt-get update && apt-get install -y {pkgs}")
    out = {}
    for s in specs:
        p = files[s.file]
        cov = "".join(c for c in CHARS if glyph_present(p, s.index, c))
        out[s.name] = (s, p, cov)
    return out


def die(msg: str) -> None:
    raise SystemExit(f"{Path(sys.argv[0]).name}: error: {msg}")


# ---------------------------------------------------------------------------
# hanzi-writer-data medians
# ---------------------------------------------------------------------------
def find_hanzi_data(explicit: str | None) -> Path:
    cands = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("HANZI_WRITER_DATA"):
        cands.append(Path(os.environ["HANZI_WRITER_DATA"]))
    cands += [REPO_ROOT / "tools/.npm/node_modules/hanzi-writer-data",
              REPO_ROOT / "node_modules/hanzi-writer-data",
              Path.cwd() / "node_modules/hanzi-writer-data"]
    cands = list(dict.fromkeys(cands))
    for c in cands:
        if (c / f"{CHARS[0]}.json").is_file():
            return c
    die("npm package hanzi-writer-data not found (looked in "
        + ", ".join(map(str, cands)) + f"); install it with: {NPM_HINT}")
    raise AssertionError


def load_medians(data_dir: Path) -> dict[int, list[np.ndarray]]:
    """Per class: list of strokes, each (n, 2) in display coords (y down)."""
    out = {}
    for i, ch in enumerate(CHARS):
        p = data_dir / f"{ch}.json"
        if not p.is_file():
            die(f"{p} missing from hanzi-writer-data; reinstall with: {NPM_HINT}")
        d = json.loads(p.read_text(encoding="utf-8"))
        strokes = []
        for med in d["medians"]:
            a = np.asarray(med, dtype=np.float64)
            a[:, 1] = HANZI_Y_FLIP - a[:, 1]
            strokes.append(a)
        out[i] = strokes
    return out


def hanzi_data_version(data_dir: Path) -> str:
    try:
        return json.loads((data_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------
def resample(pts: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline at (about) equal arc-length spacing."""
    if len(pts) < 2:
        return pts.copy()
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    if total <= 1e-9:
        return pts[:1].copy()
    n = max(2, int(math.ceil(total / max(spacing, 1e-6))) + 1)
    t = np.linspace(0.0, total, n)
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], 1)


def normals(pts: np.ndarray) -> np.ndarray:
    d = np.gradient(pts, axis=0) if len(pts) > 1 else np.zeros_like(pts)
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    ln = np.hypot(n[:, 0], n[:, 1])[:, None]
    return n / np.maximum(ln, 1e-9)


def rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def writer_strokes(strokes: list[np.ndarray], rng: np.random.Generator,
                   wobble: bool) -> list[np.ndarray]:
    """Perturb the medians as a different writer would (char units)."""
    out = []
    # per-stroke: small rotation/scale about the stroke centre, offset, and
    # over/undershoot of both ends
    for s in strokes:
        s = s.copy()
        c = s.mean(0)
        m = rot(rng.normal(0, math.radians(4))) * rng.uniform(0.9, 1.1)
        s = (s - c) @ m.T + c + rng.normal(0, 14, 2)
        length = float(np.hypot(*np.diff(s, axis=0).T).sum()) if len(s) > 1 else 0.0
        if len(s) >= 2:
            # over/undershoot both ends a little (absolute, in char units)
            for end, nb in ((0, 1), (-1, -2)):
                v = s[end] - s[nb]
                seg = float(np.hypot(*v))
                if seg < 1e-6:
                    continue
                delta = float(np.clip(rng.uniform(-0.06, 0.09) * length, -35, 45))
                delta = max(delta, -0.4 * seg)
                s[end] = s[end] + v / seg * delta
        s = resample(s, 6.0)
        if wobble and len(s) > 2:
            # slow sideways drift of an unsteady hand, strongest mid-stroke
            t = np.linspace(0, 1, len(s))
            disp = np.zeros(len(s))
            for _ in range(2):
                amp = rng.uniform(0.004, 0.016) * length + rng.uniform(1, 4)
                disp += amp * np.sin(2 * math.pi * (rng.uniform(0.5, 1.6) * t + rng.uniform()))
            s = s + normals(s) * (disp * np.sin(math.pi * t) ** 0.5)[:, None]
        out.append(s)
    # global: rotation, shear, aspect about the character centre
    allp = np.concatenate(out)
    c = (allp.min(0) + allp.max(0)) / 2
    shear = np.array([[1, rng.normal(0, 0.08)], [0, 1]])
    aspect = np.diag([rng.uniform(0.82, 1.18), 1.0])
    m = rot(rng.normal(0, math.radians(4))) @ shear @ aspect
    return [(s - c) @ m.T for s in out]


def mouse_path(pts: np.ndarray, rng: np.random.Generator, spacing: float,
               tremor: float) -> np.ndarray:
    """Canvas-pixel polyline as sampled from mouse events, with hand tremor."""
    p = resample(pts, spacing)
    if len(p) > 2:
        walk = np.cumsum(rng.normal(0, tremor * 0.35, p.shape), axis=0)
        walk -= np.linspace(walk[0], walk[-1], len(p))  # keep the ends anchored
        p = p + walk + rng.normal(0, tremor * 0.5, p.shape)
    return p


# ---------------------------------------------------------------------------
# Canvas placement
# ---------------------------------------------------------------------------
def canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    if rng.random() < 0.55:
        s = int(rng.integers(200, 801))
        return s, s
    w = int(rng.integers(200, 801))
    h = int(np.clip(w * math.exp(rng.uniform(-0.7, 0.7)), 200, 800))
    return w, h


def placement(rng: np.random.Generator, W: int, H: int, aspect: float):
    """Return (box_w, box_h, x0, y0, mode) for a character of aspect w/h."""
    m = min(W, H)
    r = rng.random()
    if r < 0.45:
        mode, frac = "centre", rng.uniform(0.5, 0.85)
    elif r < 0.70:
        mode, frac = "offset", rng.uniform(0.35, 0.7)
    elif r < 0.85:
        mode, frac = "corner", rng.uniform(0.17, 0.35)
    else:
        mode, frac = "fill", rng.uniform(0.9, 0.99)
    size = max(40.0, frac * m)
    bw, bh = (size, size / aspect) if aspect >= 1 else (size * aspect, size)
    if mode == "fill" and W != H and rng.random() < 0.5:
        # stretch to the longer side a little, as people do on wide canvases
        k = min(W / bw, H / bh) * 0.97
        bw, bh = bw * k, bh * k
    bw, bh = min(bw, W - 2), min(bh, H - 2)
    fw, fh = W - bw, H - bh
    if mode == "centre":
        x0 = fw / 2 + rng.normal(0, 0.06) * W
        y0 = fh / 2 + rng.normal(0, 0.06) * H
    elif mode == "corner":
        cx, cy = rng.integers(0, 2, 2)
        x0 = (cx * 0.75 + rng.uniform(0.02, 0.25)) * fw
        y0 = (cy * 0.75 + rng.uniform(0.02, 0.25)) * fh
    else:
        x0, y0 = rng.uniform(0, 1) * fw, rng.uniform(0, 1) * fh
    x0 = float(np.clip(x0, 0, fw))
    y0 = float(np.clip(y0, 0, fh))
    return bw, bh, x0, y0, mode


# ---------------------------------------------------------------------------
# Coverage maps (float32 0..1, 1 = ink)
# ---------------------------------------------------------------------------
def draw_strokes_coverage(strokes_px: list[np.ndarray], W: int, H: int,
                          width: float, ss: int) -> np.ndarray:
    im = Image.new("L", (W * ss, H * ss), 0)
    d = ImageDraw.Draw(im)
    w = max(1, int(round(width * ss)))
    r = w / 2.0
    for s in strokes_px:
        p = [(float(x * ss), float(y * ss)) for x, y in s]
        if len(p) >= 2:
            d.line(p, fill=255, width=w, joint="curve")
        for x, y in (p[0], p[-1]):  # round caps
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    if ss > 1:
        im = im.reduce(ss)
    return np.asarray(im, dtype=np.float32) / 255.0


def median_coverage(strokes: list[np.ndarray], rng: np.random.Generator,
                    W: int, H: int, width_range=(2.0, 20.0),
                    box=None, antialias: bool = True):
    """Draw a perturbed median character on a W x H canvas.

    Returns (coverage, info dict)."""
    wob = rng.random() < 0.35
    ws = writer_strokes(strokes, rng, wob)
    allp = np.concatenate(ws)
    lo, hi = allp.min(0), allp.max(0)
    ext = np.maximum(hi - lo, 1.0)
    aspect = float(np.clip(ext[0] / ext[1], 0.25, 4.0))
    if box is None:
        bw, bh, x0, y0, mode = placement(rng, W, H, aspect)
    else:
        bw, bh, x0, y0, mode = box
    # pen width, log-uniform, limited by the character's size
    w = math.exp(rng.uniform(math.log(width_range[0]), math.log(width_range[1])))
    w = float(np.clip(w, 2.0, max(2.0, 0.11 * max(bw, bh))))
    # fit the stroke centre-lines (plus pen radius) into the box
    k = min((bw - w) / ext[0], (bh - w) / ext[1])
    k = max(k, 1e-3)
    off = np.array([x0 + (bw - ext[0] * k) / 2, y0 + (bh - ext[1] * k) / 2])
    spacing = rng.uniform(2.5, 10.0)
    tremor = rng.uniform(0.15, 1.0) * (1.0 + 0.04 * w)
    px = [mouse_path((s - lo) * k + off, rng, spacing, tremor) for s in ws]
    cov = draw_strokes_coverage(px, W, H, w, 3 if antialias else 1)
    return cov, {"mode": mode, "pen": w, "wobble": wob}


def glyph_patch(path: Path, index: int, ch: str, px: int, bold: int,
                rng: np.random.Generator) -> Image.Image:
    """Tight 'L' image of one glyph, slightly rotated/sheared."""
    font = load_font(path, index, px)
    l, t, r, b = font.getbbox(ch, stroke_width=bold)
    pad = px // 4 + bold + 4
    im = Image.new("L", (r - l + 2 * pad, b - t + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - l, pad - t), ch, font=font, fill=255,
                            stroke_width=bold, stroke_fill=255)
    ang = rng.normal(0, 3.0)
    sh = rng.normal(0, 0.06)
    w0, h0 = im.size
    cx, cy = w0 / 2, h0 / 2
    a = math.radians(ang)
    ca, sa = math.cos(a), math.sin(a)
    # inverse map output -> input: rotation then shear
    m = np.array([[ca, -sa], [sa, ca]]) @ np.array([[1, sh], [0, 1]])
    mi = np.linalg.inv(m)
    coeffs = (mi[0, 0], mi[0, 1], cx - mi[0, 0] * cx - mi[0, 1] * cy,
              mi[1, 0], mi[1, 1], cy - mi[1, 0] * cx - mi[1, 1] * cy)
    im = im.transform(im.size, Image.Transform.AFFINE, coeffs,
                      resample=Image.Resampling.BICUBIC)
    bb = im.getbbox()
    return im.crop(bb) if bb else im


def font_coverage(fs, ch: str, rng: np.random.Generator, W: int, H: int,
                  box=None):
    spec, path, _ = fs
    m = min(W, H)
    bold = int(rng.choice([0, 0, 0, 1, 2, 3])) * max(1, m // 250)
    patch = glyph_patch(path, spec.index, ch, max(48, int(0.8 * m)), bold, rng)
    aspect = patch.size[0] / patch.size[1]
    if box is None:
        bw, bh, x0, y0, mode = placement(rng, W, H, aspect)
    else:
        bw, bh, x0, y0, mode = box
    k = min(bw / patch.size[0], bh / patch.size[1])
    nw, nh = max(1, int(round(patch.size[0] * k))), max(1, int(round(patch.size[1] * k)))
    patch = patch.resize((nw, nh), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (W, H), 0)
    canvas.paste(patch, (int(round(x0 + (bw - nw) / 2)), int(round(y0 + (bh - nh) / 2))))
    return np.asarray(canvas, dtype=np.float32) / 255.0, {"mode": mode, "bold": bold}


# ---------------------------------------------------------------------------
# Clean (sketchpad) output
# ---------------------------------------------------------------------------
INKS = {
    "blue": (31, 79, 214), "red": (214, 39, 40), "green": (42, 140, 58),
    "purple": (106, 61, 154), "orange": (235, 110, 10), "grey": (60, 60, 60),
}


def encode_clean(cov: np.ndarray, rng: np.random.Generator, aliased: bool):
    """Colour a coverage map like a sketchpad export; return (PNG bytes, tag).

    Pixels are quantised to 4 coverage levels (2 when the pen is aliased) and
    stored as a 2-bit palette PNG: for a single-colour drawing this looks the
    same as the 8-bit antialiased original (checked side by side) at about 70%
    of the file size."""
    levels = 2 if aliased else 4
    q = np.clip(np.floor(cov * (levels - 1) + 0.5), 0, levels - 1).astype(np.uint8)
    a = np.linspace(0.0, 1.0, levels)[:, None]
    r = rng.random()
    trns = None
    if r < 0.55:
        tag, bg, ink = "black-on-white", (255, 255, 255), (0, 0, 0)
    elif r < 0.67:
        tag, bg, ink = "white-on-black", (0, 0, 0), (255, 255, 255)
    elif r < 0.82:
        name = list(INKS)[int(rng.integers(len(INKS)))]
        tag, bg, ink = f"{name}-on-white", (255, 255, 255), INKS[name]
    else:
        # transparent layer, as Gradio's sketchpad layers are: transparent
        # pixels are (0, 0, 0, 0), ink carries its coverage as alpha
        name = "black" if rng.random() < 0.6 else list(INKS)[int(rng.integers(len(INKS)))]
        ink = (0, 0, 0) if name == "black" else INKS[name]
        tag, bg = f"{name}-rgba", (0, 0, 0)
        trns = bytes(int(round(v * 255)) for v in np.linspace(0, 1, levels))
    pal = np.round(np.array(bg)[None] * (1 - a) + np.array(ink)[None] * a).astype(np.uint8)
    if trns is not None:
        pal = np.tile(np.array(ink, np.uint8)[None], (levels, 1))
        pal[0] = (0, 0, 0)
    im = Image.frombytes("P", (q.shape[1], q.shape[0]), q.tobytes())  # indices
    im.putpalette(pal.reshape(-1).tolist())
    buf = io.BytesIO()
    kw = {"optimize": True}
    if trns is not None:
        kw["transparency"] = trns
    im.save(buf, "PNG", **kw)
    return buf.getvalue(), tag


# ---------------------------------------------------------------------------
# Photo-like output
# ---------------------------------------------------------------------------
PAPERS = {
    "white": (236, 234, 228), "beige": (226, 212, 182), "grey": (188, 188, 182),
    "cool": (214, 222, 230), "yellowish": (238, 228, 170),
}
PEN_INKS = {
    "black": (22, 22, 26), "blue-black": (30, 38, 80), "blue": (28, 52, 150),
    "pencil": (75, 75, 80), "marker": (12, 12, 12),
}


def perspective_coeffs(src, dst):
    """Coefficients for Image.transform(PERSPECTIVE) mapping dst -> src."""
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.array(a, float), np.array(b, float)).tolist()


def lowfreq(rng: np.random.Generator, W: int, H: int, cells: int) -> np.ndarray:
    g = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    im = Image.fromarray(((g + 1) * 127.5).astype(np.uint8), "L")
    im = im.resize((W, H), Image.Resampling.BICUBIC)
    return np.asarray(im, np.float32) / 127.5 - 1.0


def render_photo(cov_fn, rng: np.random.Generator):
    """cov_fn(W, H, box) -> coverage.  Returns (JPEG bytes, description)."""
    sizes = [(320, 240), (240, 320), (288, 288), (400, 300), (300, 400),
             (256, 256), (224, 224), (360, 270), (270, 360), (320, 320)]
    W, H = sizes[int(rng.integers(len(sizes)))]
    # draw on a larger sheet so the perspective warp never shows an edge
    m = 1.4
    SW, SH = int(W * m), int(H * m)
    frac = rng.uniform(0.4, 0.78)
    size = frac * min(W, H)
    bx = SW / 2 - size / 2 + rng.normal(0, 0.07) * W
    by = SH / 2 - size / 2 + rng.normal(0, 0.07) * H
    cov = cov_fn(SW, SH, (size, size, bx, by, "photo"))

    paper_name = list(PAPERS)[int(rng.integers(len(PAPERS)))]
    ink_name = list(PEN_INKS)[int(rng.integers(len(PEN_INKS)))]
    paper = np.array(PAPERS[paper_name], np.float32) + rng.normal(0, 2.5, 3)
    ink = np.array(PEN_INKS[ink_name], np.float32)
    img = np.ones((SH, SW, 3), np.float32) * paper
    # faint ruled / squared notebook lines on some sheets
    lines = rng.random()
    if lines < 0.2:
        step = rng.uniform(0.08, 0.14) * SH
        y = np.arange(SH)[:, None]
        ph = rng.uniform(0, step)
        mask = (np.abs(((y + ph) % step) - step / 2) > step / 2 - 1.0).astype(np.float32)
        if lines < 0.08:  # squared paper
            x = np.arange(SW)[None, :]
            mask = np.maximum(mask, (np.abs(((x + ph) % step) - step / 2) > step / 2 - 1.0))
        img = img * (1 - 0.25 * mask[..., None]) + np.array([120, 150, 200], np.float32) * 0.25 * mask[..., None]
    # ink: slightly uneven strength (ballpoint skips, pencil grain)
    strength = rng.uniform(0.75, 0.97) + 0.08 * lowfreq(rng, SW, SH, 12)
    if ink_name == "pencil":
        strength = strength * (0.8 + 0.2 * rng.random((SH, SW)).astype(np.float32))
    a = np.clip(cov * strength, 0, 1)[..., None]
    img = img * (1 - a) + ink * a
    # perspective + rotation (document held at an angle)
    rotation = rng.normal(0, 6.0)
    ca, sa = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    cx, cy = SW / 2, SH / 2
    dst = [(0, 0), (W, 0), (W, H), (0, H)]
    src = []
    for (x, y) in dst:
        dx, dy = x - W / 2, y - H / 2
        dx += rng.normal(0, 0.045) * W
        dy += rng.normal(0, 0.045) * H
        src.append((cx + ca * dx - sa * dy, cy + sa * dx + ca * dy))
    sheet = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    table = tuple(int(v) for v in rng.integers(40, 120) * np.array([1.0, 0.85, 0.7]))
    photo = sheet.transform((W, H), Image.Transform.PERSPECTIVE,
                            perspective_coeffs(src, dst), resample=Image.Resampling.BICUBIC,
                            fillcolor=table)  # a table where the sheet ends
    f = np.asarray(photo, np.float32)
    # lighting: linear gradient + vignette + low-frequency unevenness
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    th = rng.uniform(0, 2 * math.pi)
    g = ((xx / W - 0.5) * math.cos(th) + (yy / H - 0.5) * math.sin(th))
    light = 1.0 + rng.uniform(0.15, 0.45) * g
    r2 = ((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2)
    light *= 1.0 - rng.uniform(0.05, 0.3) * r2 * 2
    light *= 1.0 + 0.05 * lowfreq(rng, W, H, 4)
    light *= rng.uniform(0.8, 1.08)
    # a soft shadow (phone / hand) entering from one side
    shadow_tag = "no-shadow"
    if rng.random() < 0.5:
        shadow_tag = "shadow"
        sm = Image.new("L", (W, H), 0)
        side = int(rng.integers(4))
        depth = rng.uniform(0.15, 0.45)
        pts = []
        n = 3
        for i in range(n + 1):
            t = i / n
            d = depth + rng.normal(0, 0.04)
            pts.append((t, d))
        if side == 0:
            poly = [(0, 0)] + [(t * W, d * H) for t, d in pts] + [(W, 0)]
        elif side == 1:
            poly = [(0, H)] + [(t * W, H - d * H) for t, d in pts] + [(W, H)]
        elif side == 2:
            poly = [(0, 0)] + [(d * W, t * H) for t, d in pts] + [(0, H)]
        else:
            poly = [(W, 0)] + [(W - d * W, t * H) for t, d in pts] + [(W, H)]
        ImageDraw.Draw(sm).polygon(poly, fill=255)
        sm = sm.filter(ImageFilter.GaussianBlur(rng.uniform(10, 30)))
        s = np.asarray(sm, np.float32) / 255.0
        light *= 1.0 - rng.uniform(0.2, 0.45) * s
    # white balance: warm/cool errors, hardly any green-magenta shift
    tint = (1.0 + rng.normal(0, 0.035) * np.array([1.0, 0.15, -1.0])
            + rng.normal(0, 0.006, 3))
    f = f * light[..., None] * tint
    # sensor noise, then the phone's own smoothing
    f = f + rng.normal(0, rng.uniform(0.8, 2.5), f.shape)
    photo = Image.fromarray(np.clip(f + 0.5, 0, 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0.3, 1.4)
    photo = photo.filter(ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    q = int(rng.integers(70, 86))
    photo.save(buf, "JPEG", quality=q, optimize=True)
    desc = f"{paper_name}-paper {ink_name}-ink {shadow_tag} q{q}"
    return buf.getvalue(), desc


# ---------------------------------------------------------------------------
# The set
# ---------------------------------------------------------------------------
def plan(per_class: int, fonts, seed: int):
    """Deterministic list of (class, kind, font name or None)."""
    n_font = round(0.2 * per_class)
    n_photo = round(0.24 * per_class)
    n_sketch = per_class - n_font - n_photo
    n_photo_font = n_photo // 3
    items = []
    rng = np.random.default_rng([seed, 7])
    names = sorted(fonts)
    for c, ch in enumerate(CHARS):
        avail = [n for n in names if ch in fonts[n][2]]
        order = list(rng.permutation(avail))
        fi = 0

        def nextfont():
            nonlocal fi
            f = order[fi % len(order)]
            fi += 1
            return str(f)

        items += [(c, "sketch", None)] * n_sketch
        items += [(c, "font", nextfont()) for _ in range(n_font)]
        items += [(c, "photo-median", None)] * (n_photo - n_photo_font)
        items += [(c, "photo-font", nextfont()) for _ in range(n_photo_font)]
    perm = rng.permutation(len(items))
    return [items[i] for i in perm]


FILE_RE = re.compile(r"^\d{4}-(sketch|font|photo)\.(png|jpg)$")


def make_item(i: int, item, medians, fonts, seed: int):
    c, kind, fname = item
    ch = CHARS[c]
    rng = np.random.default_rng([seed, 1000 + i])
    if kind in ("sketch", "font"):
        W, H = canvas_size(rng)
        aliased = rng.random() < 0.12
        if kind == "sketch":
            cov, _ = median_coverage(medians[c], rng, W, H, antialias=not aliased)
            src = "median-sketch"
        else:
            cov, _ = font_coverage(fonts[fname], ch, rng, W, H)
            if aliased:
                cov = (cov >= 0.5).astype(np.float32)
            src = f"font:{fname}"
        data, _tag = encode_clean(cov, rng, aliased)
        return f"{i:04d}-{'sketch' if kind == 'sketch' else 'font'}.png", data, src
    if kind == "photo-median":
        def cov_fn(W, H, box):
            # pen on paper: thin-to-medium lines relative to the character
            size = box[0]
            lo, hi = 0.025 * size, 0.085 * size
            return median_coverage(medians[c], rng, W, H, (max(lo, 1.5), max(hi, 2.5)), box=box)[0]
        src = "photo:median"
    else:
        def cov_fn(W, H, box):
            return font_coverage(fonts[fname], ch, rng, W, H, box=box)[0]
        src = f"photo:font:{fname}"
    data, _desc = render_photo(cov_fn, rng)
    return f"{i:04d}-photo.jpg", data, src


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (e.g. data/sketchset)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--hanzi-data", help="folder of the hanzi-writer-data package "
                    "(default: tools/.npm/node_modules/hanzi-writer-data)")
    args = ap.parse_args(argv)
    if args.per_class < 5:
        die("--per-class must be at least 5")

    data_dir = find_hanzi_data(args.hanzi_data)
    ver = hanzi_data_version(data_dir)
    if ver != HANZI_DATA_VERSION:
        print(f"warning: hanzi-writer-data {ver} (the committed set used "
              f"{HANZI_DATA_VERSION}); images may differ", file=sys.stderr)
    medians = load_medians(data_dir)
    fonts = resolve_fonts(VALIDATION_FONTS)
    for c in CHARS:
        if not any(c in f[2] for f in fonts.values()):
            die(f"no validation font covers {c}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(out.iterdir()):
        if p.is_file() and FILE_RE.match(p.name):
            p.unlink()

    items = plan(args.per_class, fonts, args.seed)
    rows = []
    counts: dict[str, int] = {}
    for i, item in enumerate(items):
        name, data, src = make_item(i, item, medians, fonts, args.seed)
        (out / name).write_bytes(data)
        rows.append((name, item[0], CHARS[item[0]], src))
        key = src.split(":")[0] if src.startswith("font:") else (
            "photo:font" if src.startswith("photo:font") else src)
        counts[key] = counts.get(key, 0) + 1
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "index", "character", "source"])
        w.writerows(rows)

    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {len(rows)} images + labels.csv to {out} "
          f"({total / 1e6:.2f} MB); hanzi-writer-data {ver}")
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print("  validation fonts: " + ", ".join(
        f"{n} ({len(f[2])} classes)" for n, f in sorted(fonts.items())))
    if total > 2_000_000:
        print("warning: the set is larger than 2 MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
