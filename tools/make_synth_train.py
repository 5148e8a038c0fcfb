#!/usr/bin/env python3
"""Generate synthetic TRAINING images of the 15 Chinese numerals from fonts.

Only fonts in :data:`TRAINING_FONTS` are used.  None of them belongs to the
validation font set V of ``tools/make_sketchset.py`` (nor to the Arphic
lineage that the hanzi-writer medians were traced from), and hanzi-writer
medians are never read here, so the training images share no source with
``data/sketchset``.

Each class gets ``--per-class`` images spread over the training fonts that
have its glyph, at several weights (regular, faux-bold via ``stroke_width``
or dilation with ``ImageFilter.MaxFilter``, thin via erosion with
``ImageFilter.MinFilter``) with a random affine jitter (rotation, shear,
aspect, scale, offset).  Images are 128x128 uint8 with BRIGHT ink on a dark
background (white ink on black, the polarity of Chinese MNIST).

Usage::

    python tools/make_synth_train.py --out synth_train.npz [--seed N] [--per-class N]

The ``.npz`` holds ``images`` uint8 (N, 128, 128), ``labels`` int64 (N,),
``fonts`` (the font names, str array) and ``font_ids`` int16 (N,) indexing
``fonts``.  The file is byte-for-byte reproducible for the same seed, fonts
and Pillow/FreeType version.
"""
from __future__ import annotations

import argparse
import io
import math
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sketchset import (  # noqa: E402  (tools/ is not a package)
    CHARS,
    VALIDATION_RESERVED_FAMILY_WORDS,
    VALIDATION_RESERVED_FILES,
    VALIDATION_FONTS,
    FontSpec,
    die,
    find_hanzi_data,
    find_font_files,
    font_dirs,
    glyph_present,
    load_font,
    load_medians,
)

SIZE = 128
RENDER_PX = 192  # glyphs are drawn at this size, then transformed and shrunk

#: Fonts used for training.  Disjoint from make_sketchset.VALIDATION_FONTS and
#: from every file in VALIDATION_RESERVED_FILES (checked below).
TRAINING_FONTS: tuple[FontSpec, ...] = (
    FontSpec("noto-sans-sc", "NotoSansCJK-Regular.ttc", 2, "fonts-noto-cjk"),
    FontSpec("noto-sans-sc-bold", "NotoSansCJK-Bold.ttc", 2, "fonts-noto-cjk"),
    FontSpec("noto-serif-sc", "NotoSerifCJK-Regular.ttc", 2, "fonts-noto-cjk"),
    FontSpec("noto-serif-sc-bold", "NotoSerifCJK-Bold.ttc", 2, "fonts-noto-cjk"),
    FontSpec("lxgw-wenkai-light", "LXGWWenKai-Light.ttf", 0, "fonts-lxgw-wenkai"),
    FontSpec("lxgw-wenkai", "LXGWWenKai-Regular.ttf", 0, "fonts-lxgw-wenkai"),
    FontSpec("lxgw-wenkai-bold", "LXGWWenKai-Bold.ttf", 0, "fonts-lxgw-wenkai"),
    FontSpec("klee-one", "KleeOne-Regular.ttf", 0, "fonts-klee"),
    FontSpec("klee-one-semibold", "KleeOne-SemiBold.ttf", 0, "fonts-klee"),
    FontSpec("droid-sans-fallback", "DroidSansFallbackFull.ttf", 0, "fonts-droid-fallback"),
    FontSpec("wqy-microhei", "wqy-microhei.ttc", 0, "fonts-wqy-microhei"),
    FontSpec("tw-kai", "TW-Kai-98_1.ttf", 0, "fonts-cns11643-kai"),
    FontSpec("tw-sung", "TW-Sung-98_1.ttf", 0, "fonts-cns11643-sung"),
    FontSpec("hanamin-a", "HanaMinA.ttf", 0, "fonts-hanazono"),
    FontSpec("cwtex-ming", "cwming.ttf", 0, "fonts-cwtex-ming"),  # no 亿
    FontSpec("cwtex-fangsong", "cwfs.ttf", 0, "fonts-cwtex-fs"),  # no 亿
    FontSpec("cwtex-heibold", "cwheib.ttf", 0, "fonts-cwtex-heib"),  # no 亿
    FontSpec("cwtex-yen", "cwyen.ttf", 0, "fonts-cwtex-yen"),  # no 亿
    FontSpec("smiley-sans", "SmileySans-Oblique.ttf", 0, "fonts-smiley-sans"),
    FontSpec("kiloji", "kiloji.ttf", 0, "fonts-kiloji"),  # no 亿
    FontSpec("yoz-n", "YOzRN_.ttf", 0, "fonts-yozvox-yozfont"),  # no 亿
    FontSpec("yoz-n-bold", "YOzBN_.ttf", 0, "fonts-yozvox-yozfont"),  # no 亿
    FontSpec("ipa-mincho", "ipam.ttf", 0, "fonts-ipafont-mincho"),  # no 亿
    FontSpec("ipaex-gothic", "ipaexg.ttf", 0, "fonts-ipaexfont-gothic"),  # no 亿
    FontSpec("vl-gothic", "VL-Gothic-Regular.ttf", 0, "fonts-vlgothic"),  # no 亿
)

_clash = sorted({f.file for f in TRAINING_FONTS} & VALIDATION_RESERVED_FILES)
assert not _clash, f"training fonts reserved for validation: {_clash}"


def check_not_reserved(spec: FontSpec, path: Path) -> None:
    if spec.file in VALIDATION_RESERVED_FILES or path.name in VALIDATION_RESERVED_FILES:
        die(f"{path} is reserved for validation")
    family = load_font(path, spec.index, 12).getname()[0] or ""
    for w in VALIDATION_RESERVED_FAMILY_WORDS:
        if w.lower() in family.lower():
            die(f"{path} ({family}) belongs to a validation font lineage")


def _signature(im: Image.Image) -> np.ndarray:
    bb = im.getbbox()
    if bb is None:
        return np.zeros(32 * 32)
    a = np.asarray(im.crop(bb).resize((32, 32), Image.Resampling.BOX), np.float64)
    a = a.ravel() - a.mean()
    return a / max(float(np.linalg.norm(a)), 1e-9)


def font_signatures(path: Path, index: int, chars: str) -> dict[str, np.ndarray]:
    font = load_font(path, index, 128)
    out = {}
    for ch in chars:
        l, t, r, b = font.getbbox(ch)
        im = Image.new("L", (r - l + 8, b - t + 8), 0)
        ImageDraw.Draw(im).text((4 - l, 4 - t), ch, font=font, fill=255)
        out[ch] = _signature(im)
    return out


def median_signatures() -> dict[str, np.ndarray]:
    """Signatures of the hanzi-writer medians (empty when not installed)."""
    try:
        data = find_hanzi_data(None)
    except SystemExit:
        return {}
    out = {}
    for c, strokes in load_medians(data).items():
        im = Image.new("L", (1100, 1100), 0)
        d = ImageDraw.Draw(im)
        for s in strokes:
            d.line([(float(x) + 40, float(y) + 40) for x, y in s], fill=255,
                   width=70, joint="curve")
        out[CHARS[c]] = _signature(im)
    return out


def overlap_check(fonts, threshold: float) -> None:
    """Fail when a training font's glyphs look like a validation source.

    Compares bounding-box-normalised glyph images (mean correlation over the
    shared characters) with every installed validation font and with the
    hanzi-writer medians.  Unrelated fonts of the same style score about
    0.6-0.8; a font derived from a validation source scores > 0.9."""
    refs = {}
    files = find_font_files()
    for s in VALIDATION_FONTS:
        if s.file in files:
            refs[f"font:{s.name}"] = font_signatures(files[s.file], s.index, CHARS)
    med = median_signatures()
    if med:
        refs["hanzi-writer medians"] = med
    for spec, path, cov in fonts:
        sig = font_signatures(path, spec.index, cov)
        for rname, ref in refs.items():
            common = [c for c in sig if c in ref]
            if not common:
                continue
            score = float(np.mean([sig[c] @ ref[c] for c in common]))
            if score > threshold:
                die(f"training font {spec.name} ({path}) looks derived from "
                    f"validation source {rname} (glyph correlation {score:.3f} > "
                    f"{threshold}); remove it from TRAINING_FONTS")


def render_glyph(path: Path, index: int, ch: str, weight: str,
                 rng: np.random.Generator) -> Image.Image:
    """White-on-black 'L' image of the glyph at RENDER_PX, cropped tight."""
    font = load_font(path, index, RENDER_PX)
    bold = 0
    if weight == "bold-stroke":
        bold = int(rng.integers(2, 7))
    l, t, r, b = font.getbbox(ch, stroke_width=bold)
    pad = 16 + bold
    im = Image.new("L", (r - l + 2 * pad, b - t + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - l, pad - t), ch, font=font, fill=255,
                            stroke_width=bold, stroke_fill=255)
    if weight == "dilate":
        im = im.filter(ImageFilter.MaxFilter(int(rng.choice([3, 5, 7]))))
    elif weight == "erode":
        ink = np.count_nonzero(np.asarray(im) > 127)
        for k in (int(rng.choice([5, 7])), 3):
            thin = im.filter(ImageFilter.MinFilter(k))
            # keep the thin version only when the strokes survive it
            if np.count_nonzero(np.asarray(thin) > 127) >= 0.45 * ink:
                im = thin
                break
    bb = im.getbbox()
    return im.crop(bb) if bb else im


def jitter(glyph: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Random affine placement of the glyph on a SIZE x SIZE black canvas."""
    gw, gh = glyph.size
    ang = math.radians(float(np.clip(rng.normal(0, 5), -12, 12)))
    shear = float(np.clip(rng.normal(0, 0.1), -0.25, 0.25))
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    # forward linear map: glyph pixels (about its centre) -> output pixels
    ca, sa = math.cos(ang), math.sin(ang)
    m = (np.array([[ca, -sa], [sa, ca]]) @ np.array([[1, shear], [0, 1]])
         @ np.diag([aspect, 1 / aspect]))
    corners = np.array([[0, 0], [gw, 0], [gw, gh], [0, gh]], float) - [gw / 2, gh / 2]
    ext = np.ptp(corners @ m.T, axis=0)
    k = rng.uniform(0.62, 0.92) * SIZE / ext.max()  # longest side: 62-92 %
    m, ext = m * k, ext * k
    cx = SIZE / 2 + rng.uniform(-0.4, 0.4) * (SIZE - ext[0])
    cy = SIZE / 2 + rng.uniform(-0.4, 0.4) * (SIZE - ext[1])
    # shrink with an area filter first so the affine resampling cannot alias
    w2 = max(1, round(gw * k))
    h2 = max(1, round(gh * k))
    glyph = glyph.resize((w2, h2), Image.Resampling.BOX)
    m = m @ np.diag([gw / w2, gh / h2])
    mi = np.linalg.inv(m)
    # inverse map: output (x, y) -> glyph (u, v) = mi @ ((x, y) - (cx, cy)) + centre
    coeffs = (mi[0, 0], mi[0, 1], w2 / 2 - mi[0, 0] * cx - mi[0, 1] * cy,
              mi[1, 0], mi[1, 1], h2 / 2 - mi[1, 0] * cx - mi[1, 1] * cy)
    out = glyph.transform((SIZE, SIZE), Image.Transform.AFFINE, coeffs,
                          resample=Image.Resampling.BICUBIC, fillcolor=0)
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return np.asarray(out, dtype=np.uint8)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed zip timestamps (byte-reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    tmp.replace(path)


WEIGHTS = ("regular", "regular", "bold-stroke", "dilate", "erode")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output .npz file (required)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--fonts", help="comma-separated subset of training font names")
    ap.add_argument("--strict", action="store_true",
                    help="fail when any training font is not installed")
    ap.add_argument("--overlap-threshold", type=float, default=0.9,
                    help="refuse a training font whose glyphs correlate above "
                    "this with a validation font or the medians (default 0.9; "
                    "1 disables the check)")
    ap.add_argument("--list-fonts", action="store_true",
                    help="print the training fonts and exit")
    args = ap.parse_args(argv)

    specs = list(TRAINING_FONTS)
    if args.fonts:
        want = [w.strip() for w in args.fonts.split(",") if w.strip()]
        known = {s.name for s in specs}
        bad = [w for w in want if w not in known]
        if bad:
            die(f"unknown training font(s): {', '.join(bad)} "
                f"(known: {', '.join(sorted(known))})")
        specs = [s for s in specs if s.name in want]
    if args.list_fonts:
        for s in specs:
            print(f"{s.name}\t{s.file}[{s.index}]\t{s.package}")
        return 0
    if not args.out:
        ap.error("the following arguments are required: --out")
    if args.per_class < 1:
        die("--per-class must be at least 1")

    files = find_font_files()
    missing = [s for s in specs if s.file not in files]
    if missing:
        pkgs = " ".join(sorted({s.package for s in missing}))
        msg = (f"training font(s) not found: {', '.join(s.name for s in missing)} "
               f"(looked in {', '.join(map(str, font_dirs()))}); install them with: "
               f"apt-get update && apt-get install -y {pkgs}")
        if args.strict or len(missing) == len(specs):
            die(msg)
        print("warning: " + msg, file=sys.stderr)
    fonts = []  # (spec, path, covered chars)
    for s in specs:
        if s.file in files:
            p = files[s.file]
            check_not_reserved(s, p)
            fonts.append((s, p, "".join(c for c in CHARS if glyph_present(p, s.index, c))))
    if args.overlap_threshold < 1:
        overlap_check(fonts, args.overlap_threshold)
    names = [f[0].name for f in fonts]
    for c in CHARS:
        if not any(c in f[2] for f in fonts):
            die(f"no installed training font covers {c}")

    n = args.per_class * len(CHARS)
    images = np.zeros((n, SIZE, SIZE), np.uint8)
    labels = np.zeros(n, np.int64)
    font_ids = np.zeros(n, np.int16)
    order_rng = np.random.default_rng([args.seed, 1])
    k = 0
    for c, ch in enumerate(CHARS):
        avail = [i for i, f in enumerate(fonts) if ch in f[2]]
        combos = [(i, w) for i in avail for w in range(len(WEIGHTS))]
        combos = [combos[j] for j in order_rng.permutation(len(combos))]
        for j in range(args.per_class):
            fi, wi = combos[j % len(combos)]
            rng = np.random.default_rng([args.seed, 2, c, j])
            spec, path, _ = fonts[fi]
            glyph = render_glyph(path, spec.index, ch, WEIGHTS[wi], rng)
            images[k] = jitter(glyph, rng)
            labels[k] = c
            font_ids[k] = fi
            k += 1
    perm = np.random.default_rng([args.seed, 3]).permutation(n)
    write_npz(Path(args.out), {
        "images": images[perm], "labels": labels[perm],
        "fonts": np.array(names), "font_ids": font_ids[perm],
    })
    per_font = np.bincount(font_ids, minlength=len(names))
    print(f"wrote {n} images ({args.per_class} per class) to {args.out} "
          f"from {len(names)} fonts")
    print("  " + ", ".join(f"{nm}: {int(v)}" for nm, v in zip(names, per_font)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
