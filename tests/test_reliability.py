"""Reliability and security: every bad input gets one line in plain words, nothing crashes, nothing runs
that should not, no file is left half-written.

Only what the other files do not already cover: test_preprocess (image forms, blanks, non-images in
process), test_hub (model folders), test_data (datasets, hostile pickles), test_cli, test_demo*,
test_training (kill -9, full disk, NaN). Here: the same bad and unusual images through all three doors
(CLI, ``model.predict``, the demo's ``predict_both``), the running demo under concurrent load with its
memory watched, fuzzing ``canonicalize``, and the model-folder and hub cases the others lack.

With the release models in models/ the unusual encodings must also be read *right* (top-1 三 for
all of them, through every door); without them, untrained models only check the plumbing.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
import zlib
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import chnmnist_hub as ch
from chnmnist_hub import ChnmnistModel, DataError, ImageError, ModelError, preprocess
from tests.conftest import STROKES, draw_character
from tests.demo_fixture import APP, ROOT, app_env, demo_models, demo_server, load_app  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # refused in words instead

THREE = 3  # class index of 三: three bars, so a wrong rotation reads as something else
RELEASE_CNN = ROOT / "models" / "chnmnist-cnn"


def one_line(message: str) -> str:
    assert isinstance(message, str) and message.strip(), repr(message)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A complete, valid 1-bit PNG of width x height white pixels: 900 megapixels in ~110 kB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte, then the row's bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 1000) for _ in range(height // 1000)) + z.compress(row * (height % 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def three(size=256, width=10, ink=0, paper=255) -> np.ndarray:
    return draw_character(STROKES[3], size=size, width=width, ink=ink, paper=paper)


# ---------------------------------------------------------------- the images: bad, blank and unusual

BAD_WORDS = {  # file name -> words its error must hold
    "empty.png": "not an image we can read",
    "truncated.png": "not an image we can read",
    "truncated.jpg": "not an image we can read",
    "notes.txt": "not an image we can read",
    "archive.zip": "not an image we can read",
    "bomb-900mp.png": "too large",
    "bomb-49mp.png": "too large",
    "one-pixel.png": "no character found",
    "white.png": "no character found",
    "black.png": "no character found",
    "transparent.png": "no character found",
    "folder": "folder",
    "missing.png": "does not exist",
    "fifo": "not a regular file",
}
GOOD = ["three.png", "three-16bit.png", "three-cmyk.jpg", "three-palette.png", "three-animated.gif",
        "three-exif-rotated.jpg", "three-rgba-strokes.png", "three-6000x4000.jpg", os.fsdecode(b"three-\xff-name.png")]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("doors")
    d3 = three()
    png = encode(Image.fromarray(d3), "PNG")
    jpg = encode(Image.fromarray(d3).convert("RGB"), "JPEG", quality=90)
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) * 6 // 10])
    (d / "notes.txt").write_text("three bars: not an image\n")
    with zipfile.ZipFile(d / "archive.zip", "w") as zf:
        zf.writestr("three.png", png)
    (d / "bomb-900mp.png").write_bytes(bomb_png())
    Image.new("1", (7000, 7000), 1).save(d / "bomb-49mp.png")  # over the 40 MP limit, under PIL's own 80 MP
    Image.new("L", (1, 1), 0).save(d / "one-pixel.png")
    Image.new("RGB", (300, 200), (255, 255, 255)).save(d / "white.png")
    Image.new("RGB", (300, 200), (0, 0, 0)).save(d / "black.png")
    Image.new("RGBA", (300, 200), (0, 0, 0, 0)).save(d / "transparent.png")
    (d / "folder").mkdir()
    os.mkfifo(d / "fifo")  # opening it for reading would block for ever

    (d / "three.png").write_bytes(png)
    Image.fromarray(d3.astype(np.uint16) * 257).save(d / "three-16bit.png")
    with Image.open(d / "three-16bit.png") as im:
        assert im.mode.startswith("I")
    Image.fromarray(d3).convert("CMYK").save(d / "three-cmyk.jpg", quality=92)
    Image.fromarray(d3).convert("P").save(d / "three-palette.png")
    Image.fromarray(d3).save(d / "three-animated.gif", save_all=True, duration=100, loop=0,
                             append_images=[Image.fromarray(draw_character(STROKES[10]))])  # first frame: 三
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; the viewer turns it 90 degrees clockwise
    Image.fromarray(d3).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(
        d / "three-exif-rotated.jpg", quality=92, exif=exif.tobytes())
    rgba = np.zeros((*d3.shape, 4), np.uint8)
    rgba[..., 3] = 255 - d3  # black strokes on fully transparent paper, as a sketchpad exports them
    Image.fromarray(rgba, "RGBA").save(d / "three-rgba-strokes.png")
    big = Image.new("RGB", (6000, 4000), (236, 232, 224))  # a 24 MP photo of a page
    big.paste(Image.fromarray(three(size=3000, width=110, ink=40, paper=236)).convert("RGB"), (1500, 500))
    big.save(d / "three-6000x4000.jpg", quality=85)
    (d / GOOD[-1]).write_bytes(png)  # a file name that is not valid UTF-8
    return d


def release_model_present() -> bool:
    return (RELEASE_CNN / "config.json").is_file() and (RELEASE_CNN / "model.safetensors").is_file()


def check_top(top: list[dict], k: int) -> None:
    assert len(top) == k
    for item in top:
        assert set(item) == {"index", "character", "value", "probability"} and 0 <= item["probability"] <= 1
        assert item["character"] == ch.LABELS[item["index"]].character


def check_good(name: str, top: list[dict], trained: bool) -> None:
    check_top(top, len(top))
    if trained:
        assert top[0]["index"] == THREE, f"{name} read as {top[0]['character']}, not 三"


@pytest.fixture(scope="module")
def models(demo_models):
    """{"cnn": ..., "resnet18": ...}: the release models if present (trained), else untrained ones."""
    return {"cnn": ch.load_model(demo_models[0]), "resnet18": ch.load_model(demo_models[1])}


@pytest.fixture(scope="module")
def trained(demo_models) -> bool:
    return release_model_present() and Path(demo_models[0]) == RELEASE_CNN


def test_bombs_are_refused_before_decoding(files):
    for name in ("bomb-900mp.png", "bomb-49mp.png"):
        for source in (files / name, (files / name).read_bytes()):
            start = time.perf_counter()
            with pytest.raises(ImageError) as e:
                ch.canonicalize(source)
            assert time.perf_counter() - start < 2.0  # decoding 900 MP would take far longer
            assert "too large" in one_line(str(e.value))
    # a PIL image the caller opened lazily is refused before its pixels are decoded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        lazy = Image.open(files / "bomb-49mp.png")
    with pytest.raises(ImageError, match="too large"):
        ch.canonicalize(lazy)


def test_cli_door(files, demo_models, trained):
    """One run, every file: one JSON line per file (per model), exit 1, nothing but JSON."""
    names = list(BAD_WORDS) + GOOD
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}  # strict, as in a UTF-8 locale
    p = subprocess.run([sys.executable, "-m", "chnmnist_hub", "predict", "--model", demo_models[0], "--top-k", "3",
                        *[str(files / n) for n in names]], capture_output=True, cwd=ROOT, env=env, timeout=240)
    out, err = p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "DecompressionBombWarning" not in err, err
    assert p.returncode == 1, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == [str(files / n) for n in names]
    for name, row in zip(names, rows):
        if name in BAD_WORDS:
            assert set(row) == {"file", "error"}, row
            assert BAD_WORDS[name] in one_line(row["error"]), (name, row)
        else:
            assert set(row) == {"file", "model", "top"} and row["model"] == demo_models[0], row
            check_top(row["top"], 3)
            check_good(name, row["top"], trained)


def test_predict_door(files, models, trained):
    model = models["cnn"]
    for name, words in BAD_WORDS.items():
        with pytest.raises(ImageError) as e:
            model.predict([str(files / name)])
        assert words in one_line(str(e.value)), name
    tops = {}
    for name in GOOD:
        [top] = model.predict([files / name], top_k=3)
        check_good(name, top, trained)
        tops[name] = top
    # the same file as bytes: the same answer
    assert model.predict([(files / "three.png").read_bytes()], top_k=3)[0] == tops["three.png"]
    # damaged files the caller opened lazily with PIL: decoding happens in canonicalize, in plain words too
    for name in ("truncated.png", "truncated.jpg"):
        with pytest.raises(ImageError) as e:
            model.predict([Image.open(files / name)])
        assert "truncated or corrupt" in one_line(str(e.value))


def test_demo_door(files, models, trained):
    app = load_app()
    for name, words in BAD_WORDS.items():
        path = str(files / name)
        result = app.predict_both(path, models)
        assert list(result) == ["error"], (name, result)
        assert words in one_line(result["error"]) and path not in result["error"], (name, result)
    for name in GOOD:
        result = app.predict_both(str(files / name), models)
        assert set(result) == {"cnn", "resnet18"}, (name, result)
        for answer in result.values():
            check_top(answer["top"], 5)
            check_good(name, answer["top"], trained)


# ---------------------------------------------------------------- the demo under load

LOAD_CLIENTS = 8
LOAD_REQUESTS = 12  # each, after a warm-up of 2
LOAD_TIME_LIMIT_S = 180
RSS_GROWTH_LIMIT_MB = 100


@pytest.fixture(scope="module")
def load_files(tmp_path_factory) -> list[tuple[str, str | None]]:
    """(path, None) for a good image, (path, words its error holds) for a bad one, interleaved."""
    d = tmp_path_factory.mktemp("load")
    good = []
    for value, strokes in STROKES.items():
        Image.fromarray(draw_character(strokes)).save(d / f"{value}.png")
        good.append((str(d / f"{value}.png"), None))
    Image.new("L", (200, 200), 255).save(d / "blank.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8)))
    Image.new("RGBA", (120, 80), (0, 0, 0, 0)).save(d / "transparent.png")
    (d / "bomb.png").write_bytes(bomb_png())
    bad = [(str(d / "blank.png"), "no character found"), (str(d / "corrupt.png"), "not an image we can read"),
           (str(d / "transparent.png"), "fully transparent"), (str(d / "bomb.png"), "too large")]
    return [x for pair in zip(good, bad) for x in pair]


def server_pid(url: str) -> int:
    """The demo process serving url (the fixture gives only the url): found by its command line."""
    port = url.rstrip("/").rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(APP).encode() in argv and b"--port" in argv and port.encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no demo process serving {url}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_demo_under_load(demo_server, load_files):
    from gradio_client import Client, handle_file

    pid = server_pid(demo_server)
    clients = [Client(demo_server, verbose=False, analytics_enabled=False) for _ in range(LOAD_CLIENTS)]
    deadline = time.monotonic() + LOAD_TIME_LIMIT_S
    failures, lock = [], threading.Lock()

    def user(i: int, n: int) -> int:
        done = 0
        for j in range(n):
            if time.monotonic() > deadline:
                break
            path, words = load_files[(i + j) % len(load_files)]
            try:
                result = clients[i].predict(handle_file(path), api_name="/predict")
                if words is None:
                    assert set(result) == {"cnn", "resnet18"}, result
                    for answer in result.values():
                        check_top(answer["top"], 5)
                else:
                    assert list(result) == ["error"] and words in one_line(result["error"]), result
            except Exception as e:  # collected, so that one run names every failure
                with lock:
                    failures.append(f"client {i}, {Path(path).name}: {type(e).__name__}: {e}")
            done += 1
        return done

    def round_(n: int) -> int:
        pool = ThreadPoolExecutor(LOAD_CLIENTS)
        futures = [pool.submit(user, i, n) for i in range(LOAD_CLIENTS)]
        finished, pending = wait(futures, timeout=max(1.0, deadline - time.monotonic() + 30), return_when=FIRST_EXCEPTION)
        pool.shutdown(wait=False, cancel_futures=True)
        assert not pending, f"{len(pending)} clients still waiting after the time limit"
        return sum(f.result() for f in finished)

    assert round_(2) == 2 * LOAD_CLIENTS  # warm-up: every worker thread started, every code path run once
    before = rss_mb(pid)
    start = time.monotonic()
    done = round_(LOAD_REQUESTS)
    elapsed = time.monotonic() - start
    after = rss_mb(pid)
    print(f"{done} requests from {LOAD_CLIENTS} clients in {elapsed:.1f} s; server RSS {before:.0f} -> {after:.0f} MB")
    assert not failures, "\n".join(failures)
    assert done == LOAD_CLIENTS * LOAD_REQUESTS, f"only {done} requests within {LOAD_TIME_LIMIT_S} s"
    assert after - before < RSS_GROWTH_LIMIT_MB, f"server memory grew {after - before:.0f} MB over {done} requests"


# ---------------------------------------------------------------- fuzzing canonicalize

def check_contract(image) -> None:
    """A float32 (1, 64, 64) tensor in [0, 1], or ImageError in one line: nothing else."""
    try:
        out = ch.canonicalize(image)
    except ImageError as e:
        one_line(str(e))
        return
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and tuple(out.shape) == (1, 64, 64)
    assert torch.isfinite(out).all() and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


DTYPES = [np.bool_, np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64]
FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


@st.composite
def arrays(draw) -> np.ndarray:
    side = st.integers(0, 48)
    shape = draw(st.one_of(st.just(()), st.tuples(side), st.tuples(side, side),
                           st.tuples(side, side, st.integers(1, 5)), st.tuples(st.integers(1, 5), side, side)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()):  # hypothesis' own elements: NaN, inf, negative, extreme values
        return draw(hnp.arrays(dtype, shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 255.0, 65535.0, 1e6, -255.0]))
    a = rng.random(shape) * scale
    if draw(st.booleans()) and len(shape) >= 2 and min(shape[:2]) > 4:  # a bar on plain paper
        a = np.full(shape, scale * draw(st.sampled_from([0.0, 1.0])))
        a[shape[0] // 4 : shape[0] // 2, shape[1] // 5 : shape[1] * 4 // 5] = scale / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflowing casts are part of the point
        return a.astype(dtype)


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "La", "RGBa", "RGBX",
             "I;16", "I;16B", "I;16L", "I;16N"]


@st.composite
def pil_images(draw) -> Image.Image:
    """Any Pillow mode, from raw bytes: random, blank, or a dark bar on light paper (F: NaN, inf too)."""
    mode = draw(st.sampled_from(PIL_MODES))
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    n = len(Image.new(mode, (w, h)).tobytes())
    kind = draw(st.sampled_from(["random", "zeros", "ones", "bar"]))
    if kind == "random":
        data = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, n, np.uint8).tobytes()
    else:
        data = bytearray((b"\x00" if kind == "zeros" else b"\xff") * n)
        if kind == "bar":
            data[n // 3 : n // 2] = bytes(n // 2 - n // 3)
    im = Image.frombytes(mode, (w, h), bytes(data))
    if mode in ("P", "L") and draw(st.booleans()):
        im.info["transparency"] = 0
    return im


FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA"]


ENCODED = {f: encode(Image.fromarray(three(size=48, width=4)).convert("RGB" if f == "JPEG" else "L"), f) for f in FORMATS}


@settings(max_examples=300, **FUZZ)
@given(image=arrays())
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 1e300 as float32: refused as inf
def test_fuzz_numpy_arrays(image):
    check_contract(image)
    if image.ndim >= 2 and image.dtype == np.uint8 and image.size:
        check_contract(torch.from_numpy(image.copy()))


@settings(max_examples=200, **FUZZ)
@given(image=pil_images())
def test_fuzz_pil_modes(image):
    check_contract(image)


@settings(max_examples=200, **FUZZ)
@given(data=st.data())
def test_fuzz_damaged_files(data):
    """Valid files of every common format with bytes overwritten and/or cut short."""
    b = bytearray(ENCODED[data.draw(st.sampled_from(FORMATS))])
    for _ in range(data.draw(st.integers(0, 6))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        b = b[: data.draw(st.integers(0, len(b)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about damaged EXIF; the contract is about what is raised
        check_contract(bytes(b))
        try:  # the same file opened lazily by the caller: its pixels are decoded inside canonicalize
            lazy = Image.open(io.BytesIO(bytes(b)))
        except Exception:
            return
        check_contract(lazy)


def test_leaks_found_by_fuzzing_stay_fixed():
    """The leaks fuzzing found, pinned: each was an uncaught ValueError, OSError or TypeError."""
    for image in (Image.new("La", (20, 20)),  # premultiplied grey + alpha: Pillow cannot convert it to RGBA
                  torch.zeros(20, 20, dtype=torch.bfloat16), torch.rand(20, 20).to_sparse()):
        check_contract(image)
    # and the readable ones are read as what they are
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 1] = 255 - three(size=40, width=4)  # black strokes on transparent paper
    assert torch.equal(ch.canonicalize(Image.fromarray(la, "LA").convert("La")), ch.canonicalize(Image.fromarray(la, "LA")))
    ref = ch.canonicalize(three()) > 0.5
    bf16 = ch.canonicalize(torch.from_numpy(three() / 255.0).bfloat16()) > 0.5  # bf16 rounds the grey edges a little
    assert (bf16 == ref).float().mean() > 0.97


# ---------------------------------------------------------------- model folders and hub repos

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "cnn"
    torch.manual_seed(0)
    ch.create_model("cnn", filters=[4, 8]).save_pretrained(folder)
    return folder


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was opened."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_pickles_beside_safetensors_are_never_opened(tiny_dir, tmp_path, no_unpickling):
    folder = _copy(tiny_dir, tmp_path / "mixed")
    marker = tmp_path / "UNPICKLED"
    for name in ("pytorch_model.bin", "model.ckpt", "weights.pt", "model.pth", "extra.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Payload(marker)))
    x = preprocess.canonicalize(three())[None]
    reference = ch.load_model(tiny_dir)(x)
    for load in (ch.load_model, ChnmnistModel.from_pretrained):
        assert torch.equal(load(folder).eval()(x), reference)  # the safetensors weights, nothing else
    assert not marker.exists()


def _section(**changes):
    return lambda c: {**c, "chnmnist": {**c["chnmnist"], **changes}}


CONFIG_EDITS = {  # (edit, words the error holds); test_hub has a list, broken JSON and wrong values
    "null": (lambda c: None, "not a chnmnist_hub model config"),
    "a string": (lambda c: "chnmnist", "not a chnmnist_hub model config"),
    "a number": (lambda c: 42, "not a chnmnist_hub model config"),
    "chnmnist a list": (lambda c: {**c, "chnmnist": []}, "not a chnmnist_hub model config"),
    "preprocess a number": (_section(preprocess=2), "preprocessing version None"),
    "preprocess a string": (_section(preprocess="v2"), "preprocessing version None"),
    "version a string": (_section(preprocess={"version": str(preprocess.VERSION)}),
                         f"preprocessing version '{preprocess.VERSION}'"),
    "model_args a number": (_section(model_args=5), "model_args are invalid"),
}


@pytest.mark.parametrize("edit", list(CONFIG_EDITS))
def test_config_json_of_the_wrong_shape(tiny_dir, tmp_path, edit):
    folder = _copy(tiny_dir, tmp_path / "cfg")
    change, words = CONFIG_EDITS[edit]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps(change(config)), encoding="utf-8")
    for load in (ch.load_model, ChnmnistModel.from_pretrained):
        with pytest.raises(ModelError) as e:
            load(folder)
        msg = one_line(str(e.value))
        assert words in msg and "Error:" not in msg, msg  # plain words, not an exception's name


def test_empty_weights_file(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path / "empty")
    (folder / "model.safetensors").write_bytes(b"")
    for load in (ch.load_model, ChnmnistModel.from_pretrained):
        with pytest.raises(ModelError) as e:
            load(folder)
        assert "model.safetensors is damaged" in one_line(str(e.value))


def test_hub_repo_with_only_pickle_weights(local_hub, tiny_dir, tmp_path, no_unpickling):
    from huggingface_hub import HfApi

    api = HfApi()
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Payload(marker))
    for repo, with_config in (("alice/bin-only", False), ("alice/bin-and-config", True)):
        api.create_repo(repo)
        api.upload_file(path_or_fileobj=payload, path_in_repo="pytorch_model.bin", repo_id=repo)
        if with_config:
            api.upload_file(path_or_fileobj=str(tiny_dir / "config.json"), path_in_repo="config.json", repo_id=repo)
        for load in (ch.load_model, ChnmnistModel.from_pretrained):
            with pytest.raises(ModelError) as e:
                load(repo)
            msg = one_line(str(e.value))
            assert repo in msg and ("model.safetensors" in msg or "config.json" in msg), msg
    assert not marker.exists()
    got = local_hub.paths("GET")
    assert any(p.endswith("/resolve/main/config.json") for p in got), got
    assert not [p for p in got if p.endswith(".bin")], "a pickle was downloaded"


@pytest.mark.parametrize("fail_with", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_interrupted_save_leaves_the_folder_as_it_was(tiny_dir, tmp_path, monkeypatch, fail_with):
    folder = _copy(tiny_dir, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = ch.create_model("cnn", filters=[6, 12])
    calls = []

    def fsync(fd):  # the second file's write fails, as on a full disk or at Ctrl-C
        calls.append(fd)
        if len(calls) == 2:
            raise fail_with

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(type(fail_with)):
        other.save_pretrained(folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no half file, no temporary left
    ch.load_model(folder)


def test_dataset_zip_with_a_bomb_image(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("chinese_mnist.csv", "suite_id,sample_id,code,value,character\n1,1,1,0,零\n")
        zf.writestr("data/input_1_1_1.jpg", bomb_png())
    start = time.perf_counter()
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    assert time.perf_counter() - start < 5.0
    assert "input_1_1_1.jpg" in one_line(str(e.value))


# ---------------------------------------------------------------- the demo refuses to start on a broken model

@pytest.mark.slow
def test_demo_start_with_broken_model_folders(demo_models, tiny_dir, tmp_path):
    truncated = _copy(Path(demo_models[0]), tmp_path / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(Path(demo_models[1]) / "config.json", pickled / "config.json")
    marker = tmp_path / "UNPICKLED"
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    runs = [([f"--cnn={truncated}", f"--resnet={demo_models[1]}"], "CNN", "damaged"),
            ([f"--cnn={demo_models[0]}", f"--resnet={pickled}"], "ResNet-18", "pickle")]
    procs = [subprocess.Popen([sys.executable, str(APP), *args, "--port", "1"], cwd=ROOT, env=app_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args, _, _ in runs]
    try:
        results = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err), (_, which, words) in zip(procs, results, runs):
        assert proc.returncode == 2, (out, err)
        line = one_line(err.strip())
        assert line.startswith(f"demo: cannot load the {which} model: ") and words in line, line
    assert not marker.exists()
