#!/usr/bin/env python
"""The CNN variants the report tried (16/32 or 32/64 filters, pooling on or off), with and
without batch norm, trained the same short way on a CPU: which should be the default.

    python bench/cnn_variants.py --data chinese-mnist.zip [--subset 3000 --epochs 8 --lr 0.02]
writes bench/results/cnn_variants_cpu.json (rendered by bench/tables.py).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = [([16, 32], True, False), ([16, 32], True, True), ([32, 64], True, False), ([32, 64], True, True),
            ([32, 64], False, False), ([32, 64], False, True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("CHNMNIST_DATA", str(ROOT.parent / "shared" / "data" / "chinese-mnist.zip")))
    ap.add_argument("--subset", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.02,
                    help="peak learning rate for every variant (the recipe's 0.1 diverges with batch norm in runs this short)")
    ap.add_argument("--out", default="/tmp/cnn-variants")
    args = ap.parse_args()
    rows = []
    for filters, pool, bn in VARIANTS:
        name = f"{filters[0]}-{filters[1]}, {'pool' if pool else 'no pool'}, {'batch norm' if bn else 'no batch norm'}"
        folder = Path(args.out) / name.replace(", ", "_").replace(" ", "-")
        cmd = [sys.executable, str(ROOT / "train.py"), "--model", "cnn", "--data", args.data, "--split", "writer",
               "--subset", str(args.subset), "--epochs", str(args.epochs), "--lr", str(args.lr), "--device", "cpu", "--quiet", "--out", str(folder),
               "--filters", *map(str, filters), "--pool" if pool else "--no-pool", "--batchnorm" if bn else "--no-batchnorm"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        row = {"variant": name, "filters": filters, "pool": pool, "batchnorm": bn, "wall_seconds": round(time.perf_counter() - t0, 1),
               "command": " ".join(["python train.py"] + cmd[2:])}
        if proc.returncode == 0:
            m = json.loads((folder / "metrics.json").read_text())
            hist = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            row.update(test_accuracy=m["test_accuracy"], sketch_accuracy=m.get("sketch_accuracy"), val_accuracy=hist[-1]["val_accuracy"],
                       images_per_second=m["images_per_second"])
        else:
            row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                       "load": os.getloadavg()}, "subset": args.subset, "epochs": args.epochs, "lr": args.lr, "runs": rows}
    (ROOT / "bench" / "results" / "cnn_variants_cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
