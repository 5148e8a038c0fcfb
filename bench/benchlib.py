"""What every CPU benchmark shares: the machine's description, bounded timing loops, the test
images, the models (bundled or, in a fresh clone without them, untrained) and the dataset path."""
from __future__ import annotations

import os
import platform
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BUNDLED = {"cnn": ROOT / "models" / "chnmnist-cnn", "resnet18": ROOT / "models" / "chnmnist-resnet18"}
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chinese-mnist.zip"
WRITER_TRAIN_IMAGES = 85 * 150  # writer split: suites 1-85 train (86-90 validation, 91-100 test)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def offline_env() -> None:
    """Nothing in a benchmark talks to the internet; child processes inherit this."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


# ---------------------------------------------------------------- the machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(), "os": platform.platform()}


def code_version() -> dict:
    """The commit measured, whether the working tree differed from it, and the preprocessing version."""
    import subprocess

    out: dict = {}
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout
        out["uncommitted_changes"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from chnmnist_hub import __version__, preprocess

        out["chnmnist_hub"] = __version__
        out["preprocess_version"] = preprocess.VERSION
    except Exception:
        pass
    return out


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_snapshot() -> dict:
    """For contention(): the machine's busy CPU time (/proc/stat) and this process tree's own."""
    snap = {"wall": time.monotonic(), "own": sum(os.times()[:4])}
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        snap["busy"] = (user + nice + system + irq + softirq) / hz
        snap["steal"] = steal / hz
    except (OSError, ValueError):
        pass
    return snap


def contention(before: dict, after: dict) -> dict:
    """How many cores other processes kept busy, on average, between two snapshots: all busy CPU
    time on the machine minus this benchmark's own (its reaped children included), and the time
    the hypervisor gave to other guests (steal). Needs /proc/stat (Linux)."""
    wall = after["wall"] - before["wall"]
    if "busy" not in before or "busy" not in after or wall <= 0:
        return {}
    own = after["own"] - before["own"]
    others = (after["busy"] - before["busy"]) - own
    return {"seconds": round(wall, 1), "own_cores": round(own / wall, 2), "other_cores": round(max(0.0, others) / wall, 2),
            "steal_cores": round((after["steal"] - before["steal"]) / wall, 2)}


# ---------------------------------------------------------------- timing

def summarize(seconds: list[float]) -> dict:
    import numpy as np

    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "min_ms": round(float(ms.min()), 3)}


def interleaved(cases: dict, n: int, warmup: int, max_seconds: float) -> tuple[dict, bool]:
    """Time every case n times, round-robin (each round in a rotated order), so that a change
    of background load hits the case and its baseline alike. Stops early at max_seconds.
    Returns ({name: summary}, stopped_by_time)."""
    names = list(cases)
    for _ in range(warmup):
        for k in names:
            cases[k]()
    times: dict[str, list[float]] = {k: [] for k in names}
    deadline = time.perf_counter() + max_seconds
    stopped = False
    for i in range(n):
        r = i % len(names)
        for k in names[r:] + names[:r]:
            t0 = time.perf_counter()
            cases[k]()
            times[k].append(time.perf_counter() - t0)
        if time.perf_counter() > deadline and i < n - 1:
            stopped = True
            break
    return {k: summarize(v) for k, v in times.items()}, stopped


def ratio(a, b) -> float | None:
    return round(a / b, 4) if a is not None and b else None


# ---------------------------------------------------------------- inputs

def sketch_image(size: int = 400):
    """A sketchpad-like drawing of 五: black antialiased strokes (brush ~10 px) on a transparent
    size x size canvas, RGBA uint8, as the demo's gr.Sketchpad(type="numpy") hands it over."""
    import numpy as np
    from PIL import Image, ImageDraw

    k = 2  # drawn at twice the size, then reduced: antialiased edges like a browser canvas
    im = Image.new("RGBA", (size * k, size * k), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    s = size * k / 400
    strokes = [[(110, 95), (205, 90), (290, 92)],  # top bar
               [(195, 95), (182, 180), (168, 282)],  # the left downward stroke
               [(140, 185), (225, 180), (262, 182), (258, 230), (250, 290)],  # middle bar turning down
               [(80, 295), (200, 292), (330, 298)]]  # bottom bar
    for stroke in strokes:
        pts = [(x * s, y * s) for x, y in stroke]
        d.line(pts, fill=(0, 0, 0, 255), width=round(10 * s), joint="curve")
        r = 5 * s
        for x, y in (pts[0], pts[-1]):
            d.ellipse((x - r, y - r, x + r, y + r), fill=(0, 0, 0, 255))
    return np.asarray(im.resize((size, size), Image.LANCZOS))


def dataset_image(data: Path | None):
    """(one 64x64 image of Chinese MNIST, where it came from), read straight from the zip or
    folder; without the dataset, the demo's synthetic scan-like example, said so."""
    import numpy as np
    from PIL import Image

    if data is not None:
        try:
            if data.is_dir():
                first = next(iter(sorted(data.rglob("input_*.jpg"))), None)
                if first is not None:
                    return np.asarray(Image.open(first).convert("L")), f"dataset image {first.name}"
            else:
                import io
                import zipfile

                with zipfile.ZipFile(data) as zf:
                    name = next(n for n in sorted(zf.namelist()) if n.endswith(".jpg"))
                    return np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L")), f"dataset image {Path(name).name}"
        except Exception:  # the pickle form, or an unreadable file: fall through
            pass
    example = ROOT / "demo" / "examples" / "scan_liu.png"
    if example.exists():
        return np.asarray(Image.open(example).convert("L")), "demo/examples/scan_liu.png (synthetic; dataset absent)"
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 30).astype(np.uint8)
    img[20:44, 16:48] = 230
    return img, "a synthetic 64x64 block (dataset absent)"


def find_data(arg: str | None) -> tuple[Path | None, str]:
    """The dataset: --data, then $CHNMNIST_DATA, then ../shared/data/chinese-mnist.zip."""
    for source, p in (("--data", arg), ("$CHNMNIST_DATA", os.environ.get("CHNMNIST_DATA")), ("default", str(DEFAULT_DATA))):
        if p:
            if Path(p).exists():
                return Path(p).resolve(), source
            if source != "default":
                return None, f"{source} {p} does not exist"
    return None, f"no dataset: give --data, set $CHNMNIST_DATA or put it at {DEFAULT_DATA}"


# ---------------------------------------------------------------- models

def load_models() -> tuple[dict, dict]:
    """({"cnn": model, "resnet18": model}, {key: description}); untrained when not bundled."""
    import chnmnist_hub as ch

    models, info = {}, {}
    for key, folder in BUNDLED.items():
        if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
            models[key] = ch.load_model(folder)
            info[key] = {"source": str(folder.relative_to(ROOT)), "trained": True}
        else:
            models[key] = ch.create_model(key).eval()
            info[key] = {"source": f"untrained chnmnist_hub.create_model({key!r}) ({folder.relative_to(ROOT)} is missing)",
                         "trained": False}
        info[key]["parameters"] = models[key].num_parameters
    return models, info


def model_folders(tmp: Path) -> tuple[dict, dict]:
    """Model folders for a subprocess (the demo): the bundled ones, or untrained ones saved in tmp."""
    folders, info = {}, {}
    missing = [k for k, f in BUNDLED.items() if not (f / "config.json").exists()]
    if missing:
        import chnmnist_hub as ch
    for key, folder in BUNDLED.items():
        if key in missing:
            out = tmp / f"untrained-{key}"
            ch.create_model(key).eval().save_pretrained(out)
            folders[key] = out
            info[key] = {"source": f"untrained chnmnist_hub.create_model({key!r}) ({folder.relative_to(ROOT)} is missing)",
                         "trained": False}
        else:
            folders[key] = folder
            info[key] = {"source": str(folder.relative_to(ROOT)), "trained": True}
    return folders, info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_memory(pid: int) -> dict:
    """VmHWM (peak resident) and VmRSS of a process, in MiB, from /proc/PID/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = round(int(rest.split()[0]) / 1024, 1)  # kB -> MiB
    except (OSError, ValueError, IndexError):
        pass
    return out


# A device machine sends back files of at most 16 MiB: results travel as a tar cut in parts.
PART_BYTES = 15 * 1024 * 1024


def tar_in_parts(members: list[tuple[Path, str]], dest: Path, stem: str, part_bytes: int = PART_BYTES) -> list[Path]:
    """(file, name in the tar) pairs into dest/STEM.tar.part0, part1, ...; `cat` of the parts is the tar."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, arcname in members:
            tar.add(path, arcname=arcname)
    data = buf.getvalue()
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(data), part_bytes):
        parts.append(dest / f"{stem}.tar.part{i // part_bytes}")
        parts[-1].write_bytes(data[i : i + part_bytes])
    return parts
