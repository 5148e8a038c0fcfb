"""CPU training speed, through train.py itself (each run its own process).

Seconds per epoch of our recipe (batch 256, augmentation) for both models, measured on a subset
for two epochs (the second, warm one counts) and extrapolated to the writer split's 12,750
training images, and from it the release training's length; the report's recipe (--recipe seed:
batch 64, no augmentation) on the same subset as the baseline; torchrun with 1 and 2 gloo
processes on the CNN.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

TRAIN = bl.ROOT / "train.py"


def _images_per_epoch(n: int, bsz: int) -> int:
    return (n // bsz) * bsz if n >= bsz else n  # train.py drops the last partial batch


def _run(name: str, launcher: list[str], args: list[str], out: Path, timeout: float, env: dict) -> dict:
    cmd = launcher + [str(TRAIN)] + args + ["--out", str(out)]
    shown = " ".join(shlex.quote(a) for a in (["python"] if launcher == [sys.executable] else
                                             ["torchrun"] + launcher[3:]) + ["train.py"] + args + ["--out", "OUT"])
    shown = shown.replace(shlex.quote(args[args.index("--data") + 1]), "$CHNMNIST_DATA")
    shown = shown.replace(shlex.quote(args[args.index("--sketchset") + 1]), "TINY_SKETCHSET")
    row: dict = {"name": name, "command": shown}
    t0 = time.perf_counter()
    # Its own session, so that a timeout ends torchrun's workers too (by this group's id).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(bl.ROOT), env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {**row, "error": f"timed out after {timeout:.0f} s"}
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    if proc.returncode != 0:
        return {**row, "error": f"exit status {proc.returncode}: {(stderr or stdout)[-1500:]}"}
    metrics = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    row.update({"images_per_second": metrics["images_per_second"], "train_seconds": metrics["train_seconds"],
                "epochs_run": metrics["epochs_run"], "world_size": metrics["world_size"],
                "epoch_seconds": [h["epoch_seconds"] for h in history]})
    return row


def _mini_zip(src: Path, dst: Path, suites: set[int]) -> bool:
    """A copy of the Kaggle zip with only these writers (suites), same layout: --quick runs load
    and preprocess it in seconds. False when src is not the Kaggle zip."""
    import csv
    import io
    import zipfile

    if not zipfile.is_zipfile(src):
        return False
    with zipfile.ZipFile(src) as zin:
        names = {Path(n).name: n for n in zin.namelist() if not n.endswith("/")}
        if "chinese_mnist.csv" not in names:
            return False
        text = zin.read(names["chinese_mnist.csv"]).decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        keep = [r for r in rows if int(r["suite_id"]) in suites]
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(keep)
            zout.writestr("chinese_mnist.csv", buf.getvalue())
            for r in keep:
                name = f"input_{r['suite_id']}_{r['sample_id']}_{r['code']}.jpg"
                zout.writestr(f"data/data/{name}", zin.read(names[name]))
    return True


def training(ctx) -> dict:
    from chnmnist_hub.training import TrainConfig

    if ctx.data is None:
        return {"skipped": f"dataset absent ({ctx.data_note}): training not measured"}
    q = ctx.quick
    subsets = {"cnn": 256, "resnet18": 256} if q else {"cnn": 2048, "resnet18": 768}
    epochs = 2
    ddp_subset, ddp_epochs = (256, 1) if q else (2000, 1)
    timeout = 300.0 if q else 420.0
    budget = 420.0 if q else 560.0  # the whole area; runs that would start later are skipped, said so
    env = dict(os.environ)
    result: dict = {"writer_train_images": bl.WRITER_TRAIN_IMAGES, "subsets": subsets, "epochs_measured": epochs,
                    "note": (f"measured on a subset of the writer split's training part for {epochs} epochs; the second (warm) "
                             f"epoch's seconds are scaled to {bl.WRITER_TRAIN_IMAGES:,} images; validation and test "
                             "evaluation between epochs are not included"),
                    "runs": {}, "skipped_runs": []}
    area_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chnmnist-bench-train-") as tmpdir:
        tmp = Path(tmpdir)
        # A one-image sketch set: train.py scores its sketch set at the end, which is not what is timed here.
        sketch = tmp / "sketchset"
        sketch.mkdir()
        from PIL import Image

        Image.fromarray(bl.sketch_image()).save(sketch / "wu.png")
        (sketch / "labels.csv").write_text("file,index\nwu.png,5\n")
        data = ctx.data
        if q and _mini_zip(ctx.data, tmp / "mini.zip", {1, 2, 3, 4, 86, 91}):
            # Throughput depends on the subset, not on the dataset's size; the small zip only cuts
            # each run's loading and evaluation (quick runs check the benchmark, they are not quoted).
            data = tmp / "mini.zip"
            env["CHNMNIST_CACHE"] = str(tmp / "cache")
            result["data"] = "a copy of the zip with writers 1-4, 86 and 91 only (--quick)"
        common = ["--data", str(data), "--split", "writer", "--device", "cpu", "--quiet", "--sketchset", str(sketch)]
        plan = []
        for model in ("cnn", "resnet18"):
            for recipe in ("ours", "seed"):
                plan.append((f"{recipe}-{model}", [sys.executable],
                             ["--model", model, "--recipe", recipe, "--subset", str(subsets[model]), "--epochs", str(epochs)] + common,
                             model, recipe, subsets[model]))
        for nproc in (1, 2):
            plan.append((f"torchrun-{nproc}", [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"],
                         ["--model", "cnn", "--subset", str(ddp_subset), "--epochs", str(ddp_epochs)] + common,
                         "cnn", "ours", ddp_subset))
        for name, launcher, args, model, recipe, subset in plan:
            if time.monotonic() - area_start > budget:
                result["skipped_runs"].append(f"{name}: the area's {budget:.0f} s budget was spent")
                continue
            snap = bl.cpu_snapshot()
            row = _run(name, launcher, args, tmp / name, timeout, env)
            row["contention"] = bl.contention(snap, bl.cpu_snapshot())
            cfg = TrainConfig(model=model, recipe=recipe).resolve()
            row.update(model=model, recipe=recipe, subset=subset, batch_size=cfg.batch_size, augment=cfg.augment,
                       release_epochs=cfg.epochs)
            if "error" not in row and row["epoch_seconds"]:
                per_epoch_images = _images_per_epoch(subset, cfg.batch_size)
                warm = row["epoch_seconds"][-1]
                ips = per_epoch_images / warm if warm else None
                row["images_per_epoch"] = per_epoch_images
                row["steady_images_per_second"] = round(ips, 1) if ips else None
                if ips and not name.startswith("torchrun"):
                    row["epoch_s_extrapolated"] = round(bl.WRITER_TRAIN_IMAGES / ips, 1)
                    row["release_training_s_projected"] = round(cfg.epochs * bl.WRITER_TRAIN_IMAGES / ips, 1)
            if name.startswith("torchrun"):
                row["omp_threads"] = os.environ.get("OMP_NUM_THREADS") or ("1 (torchrun sets it for >1 process)" if name.endswith("2") else "unset (torch default)")
            result["runs"][name] = row
    runs = result["runs"]
    get = lambda n, k: runs.get(n, {}).get(k)
    result["ratios"] = {
        **{f"ours_vs_seed_{m}": bl.ratio(get(f"ours-{m}", "steady_images_per_second"), get(f"seed-{m}", "steady_images_per_second"))
           for m in ("cnn", "resnet18")},
        "torchrun2_vs_torchrun1": bl.ratio(get("torchrun-2", "images_per_second"), get("torchrun-1", "images_per_second")),
    }
    return result
