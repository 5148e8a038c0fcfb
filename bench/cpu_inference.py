"""CPU inference and preprocessing, each against a baseline measured in this same process.

inference: one sketchpad drawing through predict() (CNN, ResNet, both the demo's way) against a
bare timm ResNet-18 forward; a batch of 256 through predict_canonical against the bare batch
forward; canonicalize alone; and a cProfile breakdown of canonicalize.
dataset: load_dataset on the zip against a bare JPEG decode of the same files; the preprocessing
of the whole dataset (no cache) against a serial run extrapolated; a cache hit.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import tempfile
import time
import zipfile
from pathlib import Path

import benchlib as bl

TARGETS = {"both_single_vs_bare": 1.6, "batch_vs_bare": 2.0}


def inference(ctx) -> dict:
    import timm
    import torch

    import chnmnist_hub as ch

    q = ctx.quick
    models, info = bl.load_models()
    cnn, resnet = models["cnn"], models["resnet18"]
    sketch = bl.sketch_image()
    scan, scan_source = bl.dataset_image(ctx.data)
    bare = timm.create_model("resnet18", in_chans=1, num_classes=15).eval()
    canon = ch.canonicalize(sketch)  # (1, 64, 64)
    x1 = canon[None]  # (1, 1, 64, 64)
    xb = canon[None].repeat(256, 1, 1, 1).contiguous()
    # The bare model sees the tensor the bundled ResNet's network sees: the canonical image
    # enlarged to its input size. A 64-px forward is timed too, as a reference when they differ.
    size = resnet.input_size
    xin = torch.nn.functional.interpolate(x1, size=(size, size), mode="bilinear", align_corners=False) if size != 64 else x1
    xbin = xin.repeat(256, 1, 1, 1).contiguous()

    def bare_single():
        with torch.inference_mode():
            bare(xin)

    def bare_single_64():
        with torch.inference_mode():
            bare(x1)

    def both():
        x = ch.canonicalize(sketch)[None]
        cnn.predict_canonical(x)
        resnet.predict_canonical(x)

    threads = torch.get_num_threads()

    def one_thread(fn):
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    def both_canon_one_thread():
        x = one_thread(lambda: ch.canonicalize(sketch))[None]
        cnn.predict_canonical(x)
        resnet.predict_canonical(x)

    cases = {
        "bare_resnet_forward": bare_single,
        **({"bare_resnet_forward_64": bare_single_64} if size != 64 else {}),
        "cnn_predict": lambda: cnn.predict([sketch]),
        "resnet_predict": lambda: resnet.predict([sketch]),
        "both_predict_canonical": both,
        "cnn_predict_canonical": lambda: cnn.predict_canonical(x1),
        "resnet_predict_canonical": lambda: resnet.predict_canonical(x1),
        "canonicalize_sketch": lambda: ch.canonicalize(sketch),
        "canonicalize_scan64": lambda: ch.canonicalize(scan),
        # Not the library's behaviour: what canonicalize costs with one torch thread, for comparison.
        "canonicalize_sketch_1_thread": lambda: one_thread(lambda: ch.canonicalize(sketch)),
        "both_canonicalize_1_thread": both_canon_one_thread,
    }
    n, warm, limit = (20, 3, 30.0) if q else (200, 10, 120.0)
    single, single_cut = bl.interleaved(cases, n=n, warmup=warm, max_seconds=limit)

    def bare_batch(x):
        with torch.inference_mode():
            bare(x)

    n, warm, limit = (2, 1, 30.0) if q else (10, 2, 90.0)
    batch_cases = {"bare_resnet_forward_256": lambda: bare_batch(xbin),
                   "resnet_predict_canonical_256": lambda: resnet.predict_canonical(xb)}
    if size != 64:
        batch_cases["bare_resnet_forward_256_64"] = lambda: bare_batch(xb)
    batch, batch_cut = bl.interleaved(batch_cases, n=n, warmup=warm, max_seconds=limit)

    p50 = lambda d, k: d[k].get("p50_ms")
    ratios = {
        "both_single_vs_bare": bl.ratio(p50(single, "both_predict_canonical"), p50(single, "bare_resnet_forward")),
        "resnet_predict_vs_bare": bl.ratio(p50(single, "resnet_predict"), p50(single, "bare_resnet_forward")),
        "resnet_predict_canonical_vs_bare": bl.ratio(p50(single, "resnet_predict_canonical"), p50(single, "bare_resnet_forward")),
        "cnn_predict_vs_bare": bl.ratio(p50(single, "cnn_predict"), p50(single, "bare_resnet_forward")),
        "both_canonicalize_1_thread_vs_bare": bl.ratio(p50(single, "both_canonicalize_1_thread"), p50(single, "bare_resnet_forward")),
        "batch_vs_bare": bl.ratio(p50(batch, "resnet_predict_canonical_256"), p50(batch, "bare_resnet_forward_256")),
    }
    if size != 64:
        ratios["both_single_vs_bare_64"] = bl.ratio(p50(single, "both_predict_canonical"), p50(single, "bare_resnet_forward_64"))
        ratios["batch_vs_bare_64"] = bl.ratio(p50(batch, "resnet_predict_canonical_256"), p50(batch, "bare_resnet_forward_256_64"))
    both_ms = p50(single, "both_predict_canonical")
    breakdown = {k: {"p50_ms": p50(single, k), "share_of_both": bl.ratio(p50(single, k), both_ms)}
                 for k in ("canonicalize_sketch", "cnn_predict_canonical", "resnet_predict_canonical")}
    return {
        "models": info,
        "torch_threads": threads,
        "bare_input_size": size,
        "inputs": {"sketch": f"{sketch.shape[1]}x{sketch.shape[0]} RGBA numpy, black strokes (brush ~10 px) on transparent (bench/benchlib.py sketch_image)",
                   "scan64": scan_source, "batch": "256 copies of the sketch's canonical 1x64x64 tensor",
                   "bare": f"(1, 1, {size}, {size}), the canonical sketch enlarged as the bundled ResNet-18 enlarges it"},
        "single": single, "single_stopped_by_time_limit": single_cut,
        "batch": batch, "batch_stopped_by_time_limit": batch_cut,
        "ratios": ratios, "targets": TARGETS,
        "targets_met": {k: (ratios[k] is not None and ratios[k] <= t) for k, t in TARGETS.items()},
        "both_breakdown": breakdown,
        "canonicalize_profile": profile_canonicalize(sketch, 5 if q else 30),
        "canonicalize_profile_1_thread": one_thread(lambda: profile_canonicalize(sketch, 5 if q else 30)),
    }


STEP_NAMES = {
    "to_grey": "to_grey (decode; transparency laid on paper)",
    "_ink_map": "_ink_map (paper level, lighting, contrast)",
    "_keep_strokes": "_keep_strokes (specks, blobs, border shapes)",
    "_bbox": "_bbox (ink bounds)",
    "_erode": "_erode (stroke width measure)",
    "_grow": "_grow (thicken strokes)",
    "_shrink": "_shrink (thin strokes)",
}


def profile_canonicalize(image, repeats: int) -> dict:
    """cProfile of canonicalize on one image: time by step (each function of preprocess.py that
    canonicalize_uint8 calls, the rest of canonicalize_uint8's own work, the final conversion) and
    the heaviest single operations (own time)."""
    import chnmnist_hub as ch

    for _ in range(2):
        ch.canonicalize(image)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        ch.canonicalize(image)
    prof.disable()
    st = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tottime, cumtime, {caller: (cc, nc, tt, ct)})}
    ours = os.path.join("chnmnist_hub", "preprocess.py")
    find = lambda name: next((k for k in st if k[0].endswith(ours) and k[2] == name), None)
    k_top, k_u8 = find("canonicalize"), find("canonicalize_uint8")
    if k_top is None or k_u8 is None:
        return {"error": "canonicalize / canonicalize_uint8 not found in the profile"}
    total, u8 = st[k_top][3], st[k_u8][3]
    steps: dict[str, float] = {}
    for k, v in st.items():
        if k[0].endswith(ours) and k_u8 in v[4]:
            label = STEP_NAMES.get(k[2], k[2])
            steps[label] = steps.get(label, 0.0) + v[4][k_u8][3]
    steps["canonicalize_uint8's own operations (resize, thresholds, centring)"] = u8 - sum(steps.values())
    steps["uint8 -> float tensor"] = total - u8
    ops = sorted(((_op_name(func) if file == "~" else f"{Path(file).name}:{func}", tt) for (file, _, func), (_, _, tt, _, _) in st.items()),
                 key=lambda t: -t[1])[:8]
    per = lambda s: round(1e3 * s / repeats, 3)
    return {"repeats": repeats, "total_ms": per(total),
            "steps": {k: {"ms": per(v), "share": bl.ratio(v, total)} for k, v in steps.items()},
            "top_ops": [{"op": name, "ms": per(tt), "share": bl.ratio(tt, total)} for name, tt in ops]}


def _op_name(func: str) -> str:
    """cProfile's names of C functions, shortened: "<method 'sum' of 'torch._C.TensorBase' objects>"
    -> "Tensor.sum", "<built-in method torch._C._nn.avg_pool2d>" -> "avg_pool2d"."""
    m = re.fullmatch(r"<method '(\w+)' of '([\w.]+)' objects>", func)
    if m:
        owner = m.group(2).rsplit(".", 1)[-1]
        return f"{'Tensor' if owner == 'TensorBase' else owner}.{m.group(1)}"
    m = re.fullmatch(r"<built-in method ([\w.]+)>", func)
    if m:
        name = m.group(1)
        return name.rsplit(".", 1)[-1] if name.startswith("torch._C") else name
    return func


def dataset(ctx) -> dict:
    import numpy as np
    from PIL import Image

    import chnmnist_hub as ch
    from chnmnist_hub import preprocess

    if ctx.data is None:
        return {"skipped": f"dataset absent ({ctx.data_note}): load_dataset and dataset preprocessing not measured"}
    q = ctx.quick
    t0 = time.perf_counter()
    ds = ch.load_dataset(ctx.data)
    load_s = time.perf_counter() - t0

    # Baseline: the bare decode of the same JPEGs (no CSV, no checks), the floor for load_dataset.
    raw_s, raw_what = None, None
    t0 = time.perf_counter()
    if ctx.data.is_dir():
        files = sorted(ctx.data.rglob("*.jpg"))
        for f in files:
            np.asarray(Image.open(f).convert("L"))
        raw_s, raw_what = time.perf_counter() - t0, f"PIL decode of the {len(files)} JPEGs in the folder"
    elif zipfile.is_zipfile(ctx.data):
        with zipfile.ZipFile(ctx.data) as zf:
            names = [n for n in zf.namelist() if n.endswith(".jpg")]
            for name in names:
                np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L"))
        raw_s, raw_what = time.perf_counter() - t0, f"zipfile read + PIL decode of the {len(names)} JPEGs"

    images = ds.images[:2000] if q else ds.images
    workers = min(os.cpu_count() or 1, 16)
    old = os.environ.get("CHNMNIST_CACHE")
    with tempfile.TemporaryDirectory(prefix="chnmnist-bench-cache-") as tmp:
        os.environ["CHNMNIST_CACHE"] = tmp
        try:
            t0 = time.perf_counter()
            preprocess.canonicalize_dataset(images)
            uncached_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            preprocess.canonicalize_dataset(images)
            cached_s = time.perf_counter() - t0
        finally:
            if old is None:
                os.environ.pop("CHNMNIST_CACHE", None)
            else:
                os.environ["CHNMNIST_CACHE"] = old
    # Baseline: the same work in one process, one image after another, on a sample, extrapolated:
    # with one torch thread, as each worker process runs, and with this process's default threads.
    import torch

    sample = images[: (200 if q else 600)]
    threads = torch.get_num_threads()
    serial = {}
    for n_threads in (1, threads):
        torch.set_num_threads(n_threads)
        part = sample if n_threads == 1 else sample[:200]
        try:
            t0 = time.perf_counter()
            preprocess.canonicalize_many(part)
            serial[n_threads] = (time.perf_counter() - t0) / len(part)
        finally:
            torch.set_num_threads(threads)
    serial_s = serial[1] * len(images)
    return {
        "source": str(ctx.data), "images": int(len(ds)),
        "load_dataset_s": round(load_s, 3), "raw_decode_s": round(raw_s, 3) if raw_s else None, "raw_decode_what": raw_what,
        "load_vs_raw": bl.ratio(load_s, raw_s),
        "canonicalize_dataset": {"images": int(len(images)), "workers": workers, "uncached_s": round(uncached_s, 3),
                                 "cached_s": round(cached_s, 3), "serial_sample": int(len(sample)),
                                 "serial_ms_per_image": round(1e3 * serial[1], 3),
                                 "serial_default_threads": threads,
                                 "serial_ms_per_image_default_threads": round(1e3 * serial[threads], 3),
                                 "serial_extrapolated_s": round(serial_s, 3),
                                 "uncached_vs_serial": bl.ratio(uncached_s, serial_s),
                                 "cached_vs_uncached": bl.ratio(cached_s, uncached_s)},
    }
