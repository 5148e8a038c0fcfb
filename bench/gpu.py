#!/usr/bin/env python
"""Everything GPU-side in one command: training speed of our recipe against the report's
(`--recipe seed`) on the same GPU, DDP overhead (torchrun with one process against a plain
process), the CNN variants, and the release trainings. Writes JSON under --out; `bench/tables.py`
turns it into BENCHMARKS.md tables.

    python bench/gpu.py --data chinese-mnist.zip --out gpu-results
    python bench/gpu.py --data chinese-mnist.zip --out /tmp/g --quick   # a CPU dry run, minutes
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchlib import tar_in_parts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLDS = {"cnn": [0.99], "resnet18": [0.99, 0.996]}


def time_to(history: list[dict], threshold: float) -> float | None:
    """Training seconds until test accuracy first reached the threshold (None: never)."""
    for row in history:
        if row.get("test_accuracy", 0) >= threshold:
            return row["train_seconds"]
    return None


def read_history(folder: Path) -> list[dict]:
    p = folder / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def summarize(name: str, folder: Path, model: str, wall: float, extra: dict) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    hist = read_history(folder)
    return {
        "name": name, "model": model, **extra, "wall_seconds": round(wall, 2),
        "test_accuracy": metrics["test_accuracy"], "sketch_accuracy": metrics.get("sketch_accuracy"),
        "val_accuracy": hist[-1].get("val_accuracy") if hist else None,
        "train_seconds": metrics["train_seconds"], "images_per_second": metrics["images_per_second"],
        "epochs_run": metrics["epochs_run"], "device": metrics["device"], "world_size": metrics["world_size"],
        "time_to": {f"{t:.3f}": time_to(hist, t) for t in THRESHOLDS[model]} if hist and "test_accuracy" in hist[0] else {},
        "best_test_accuracy": max((r.get("test_accuracy", 0) for r in hist), default=None),
    }


def pack(out: Path, dest: Path) -> None:
    """Results into a tar split in parts small enough to come back from the device machine.
    Weights are kept for the CNN candidates and the two best ResNet candidates (validation
    writers plus sketch set; the test writers play no part in the choice)."""
    runs = json.loads((out / "gpu_bench.json").read_text())["runs"]

    def score(r):
        return (r.get("val_accuracy") or 0) + (r.get("sketch_accuracy") or 0)

    resnets = sorted((r for r in runs if r.get("group") == "release" and r.get("model") == "resnet18" and "error" not in r),
                     key=score, reverse=True)
    keep = {r["name"] for r in runs if r.get("group") == "release" and r.get("model") == "cnn"} | {r["name"] for r in resnets[:2]}
    members = [(out / "gpu_bench.json", "gpu_bench.json")]
    for folder in sorted((out / "runs").glob("*")):
        for f in sorted(folder.iterdir()):
            if f.name == "checkpoint.safetensors" or f.name.startswith("."):
                continue
            if f.name == "model.safetensors" and folder.name not in keep:
                continue
            members.append((f, f"runs/{folder.name}/{f.name}"))
    tar_in_parts(members, dest, "results")
    (dest / "gpu_bench.json").write_bytes((out / "gpu_bench.json").read_bytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny subsets and epochs, to check the script on a CPU")
    ap.add_argument("--only", nargs="*", help="run only these groups: release random seed ddp variants")
    ap.add_argument("--seed-seconds", type=float, default=30.0, help="time limit for each --recipe seed run")
    ap.add_argument("--extra-train", help="synthetic training images for the release candidates (tools/make_synth_train.py)")
    ap.add_argument("--pack-to", help="only pack the results already in --out into <=15 MB parts in this folder (the device tool's $OUT)")
    ap.add_argument("--plan", choices=["sweep", "final"], default="final",
                    help="sweep: the first exploration (recipes, DDP, seed baselines); final: the release runs")
    ap.add_argument("--budget", type=float, default=1e9, help="seconds after which remaining runs are skipped")
    args = ap.parse_args()
    out = Path(args.out)
    if args.pack_to:
        pack(out, Path(args.pack_to))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    from chnmnist_hub.training import TrainConfig, train
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    q = args.quick
    small = {"subset": 600, "epochs": 1} if q else {}
    results = {"plan": args.plan, "preprocess_version": __import__("chnmnist_hub").preprocess.VERSION, "machine": {"gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch": torch.__version__, "python": platform.python_version(),
                           "date": time.strftime("%Y-%m-%d")}, "runs": []}

    def save():
        (out / "gpu_bench.json").write_text(json.dumps(results, indent=2))

    started = time.perf_counter()

    def run(group: str, name: str, model: str, **kw):
        if args.only and group not in args.only:
            return
        if time.perf_counter() - started > args.budget:
            results["runs"].append({"name": name, "group": group, "error": f"skipped: the {args.budget:.0f}s budget was spent"})
            save()
            return
        folder = out / "runs" / name
        kw = {**kw, **small} if q else kw
        if q and kw.get("recipe") == "seed":
            kw["time_limit"] = 5
        t0 = time.perf_counter()
        try:
            cfg = TrainConfig(model=model, data=args.data, out=str(folder), device=device, quiet=True,
                              command=f"python train.py --model {model} --data {args.data} " + " ".join(
                                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in kw.items()
                                  if not isinstance(v, bool) and k != "track_test" and v is not None), **kw)
            train(cfg)
            row = summarize(name, folder, model, time.perf_counter() - t0, {"group": group, "recipe": cfg.recipe, "split": cfg.split,
                                                                              "epochs": cfg.epochs, "batch_size": cfg.batch_size})
        except Exception as e:
            row = {"name": name, "group": group, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
        results["runs"].append(row)
        save()

    extra = {"extra_train": args.extra_train} if args.extra_train else {}
    if args.plan == "final":
        # The release: the candidates chosen from the sweep plan, with preprocessing v2.
        run("release", "release-cnn", "cnn", split="writer", epochs=60, **extra)
        run("release", "release-resnet18-128", "resnet18", split="writer", epochs=40, input_size=128, **extra)
        run("release", "release-resnet18-64", "resnet18", split="writer", epochs=60, **extra)
        run("random", "random-cnn", "cnn", split="random", epochs=60, track_test=True, **extra)
        run("random", "random-resnet18-128", "resnet18", split="random", epochs=40, input_size=128, track_test=True, **extra)
        run("seed", "seed-resnet18", "resnet18", split="random", recipe="seed", epochs=100, track_test=True,
            time_limit=args.seed_seconds)
        run("random", "random-resnet18-64", "resnet18", split="random", epochs=60, track_test=True, **extra)
        for filters, pool, bn in (([16, 32], True, False), ([16, 32], True, True), ([32, 64], True, False),
                                  ([32, 64], False, False), ([32, 64], False, True)):
            run("variants", f"cnn-{filters[0]}-{filters[1]}-{'pool' if pool else 'nopool'}-{'bn' if bn else 'nobn'}", "cnn",
                split="writer", filters=filters, pool=pool, batchnorm=bn)
        return 0
    # The sweep plan. Release candidates: writer split, our recipe, with and without the
    # synthetic font images, and longer. Chosen afterwards by the validation writers and the
    # sketch set, never by the test writers.
    run("release", "release-cnn", "cnn", split="writer")
    run("release", "release-resnet18", "resnet18", split="writer")
    if extra:
        run("release", "release-cnn-synth", "cnn", split="writer", **extra)
        run("release", "release-resnet18-synth", "resnet18", split="writer", **extra)
        run("release", "release-cnn-synth-long", "cnn", split="writer", epochs=60, **extra)
        run("release", "release-resnet18-synth-long", "resnet18", split="writer", epochs=40, **extra)
    # The report's protocol (random split) with our recipe, test logged per epoch.
    run("random", "random-cnn", "cnn", split="random", track_test=True, **extra)
    run("random", "random-resnet18", "resnet18", split="random", track_test=True, **extra)

    # DDP overhead: torchrun with one process against a plain process, same command otherwise.
    if (not args.only or "ddp" in args.only) and time.perf_counter() - started < args.budget:
        base = [str(ROOT / "train.py"), "--model", "resnet18", "--data", args.data, "--split", "random", "--quiet",
                "--epochs", "1" if q else "6", "--device", device]
        if q:
            base += ["--subset", "600"]
        for name, launcher in (("plain", [sys.executable]),
                               ("torchrun-1", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"])):
            folder = out / "runs" / f"ddp-{name}"
            t0 = time.perf_counter()
            proc = subprocess.run(launcher + base + ["--out", str(folder)], capture_output=True, text=True)
            row = {"name": f"ddp-{name}", "group": "ddp", "returncode": proc.returncode, "stderr_tail": proc.stderr[-1500:]}
            if proc.returncode == 0:
                row = summarize(f"ddp-{name}", folder, "resnet18", time.perf_counter() - t0, {"group": "ddp"})
            print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"}), flush=True)
            results["runs"].append(row)
            save()

    # The report's settings on the same GPU: the baseline of the speed table.
    run("seed", "seed-cnn", "cnn", split="random", recipe="seed", epochs=1000, track_test=True, time_limit=args.seed_seconds)
    run("seed", "seed-resnet18", "resnet18", split="random", recipe="seed", epochs=100, track_test=True, time_limit=args.seed_seconds)
    # The CNN variants the report tried, with and without batch norm (writer split, our recipe).
    for filters, pool, bn in (([16, 32], True, False), ([16, 32], True, True), ([32, 64], True, False),
                              ([32, 64], False, False), ([32, 64], False, True)):
        run("variants", f"cnn-{filters[0]}-{filters[1]}-{'pool' if pool else 'nopool'}-{'bn' if bn else 'nobn'}", "cnn",
            split="writer", filters=filters, pool=pool, batchnorm=bn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
