#!/usr/bin/env python
"""Choose the ResNet-18 release recipe on a lent GPU, without looking at the test writers.

Stage 1 cross-validates a few recipes over writers: each fold holds out ten other suites of 1-90
(`--val-writers`), trains on the rest, and the recipe with the most held-out images right over all
folds wins (ties go to the cheaper, earlier recipe). Stage 2 trains the winner with several seeds
on the writer split (validation 86-90) and each seed's random-split twin. The release candidate is
the seed with the best validation accuracy, then the lowest validation loss. Test figures of every
run are reported, never used to choose. Runs go in parallel on one GPU (each is launch-bound).

    python tools/gpu_recipe.py --data .gpu/chinese-mnist.zip --extra-train .gpu/synth_train.npz \\
        --work /tmp/rc --pack-to "$OUT" --budget 420
    python tools/gpu_recipe.py ... --quick   # a CPU dry run: tiny subsets, one epoch each
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import tar_in_parts  # noqa: E402  (bench/ is not a package)

# name -> train.py flags; the first is the current release recipe.
RECIPES = {
    "base": ["--epochs", "24", "--swa-epochs", "6"],
    "in96": ["--epochs", "24", "--swa-epochs", "6", "--input-size", "96"],
    "long": ["--epochs", "40", "--swa-epochs", "10"],
    "in128": ["--epochs", "24", "--swa-epochs", "6", "--input-size", "128"],
}
FOLDS = ["1-10", "41-50", "71-80", "21-30"]
SEEDS = [0, 1, 2, 3]


def last_row(folder: Path) -> dict:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def result(job: dict) -> dict:
    folder = Path(job["out"])
    row = {k: job[k] for k in ("name", "stage", "recipe", "split", "seed", "val_writers")}
    row.update(returncode=job.get("returncode"), wall_seconds=round(job.get("wall", 0), 1))
    if job.get("returncode") != 0 or not (folder / "metrics.json").exists():
        row["error"] = job.get("stderr", "")[-800:]
        return row
    m, last = json.loads((folder / "metrics.json").read_text()), last_row(folder)
    row.update(val_accuracy=last.get("swa_val_accuracy", last.get("val_accuracy")),
               val_loss=last.get("swa_val_loss", last.get("val_loss")),
               n_val=json.loads((folder / "config.json").read_text())["chnmnist"]["training"]["n_val"],
               test_accuracy=m["test_accuracy"], sketch_accuracy=m.get("sketch_accuracy"),
               train_seconds=m["train_seconds"], device=m["device"])
    return row


def choose_recipe(cv: list[dict], folds: list[str]) -> tuple[str, list[str], dict]:
    """The recipe with the most held-out images right, over the folds every recipe finished; ties
    go to the earlier recipe. With no such fold the current recipe ("base") stays: comparing
    recipes on different writers would not be fair."""
    ok = [r for r in cv if "error" not in r]
    complete = [f for f in folds if all(any(r["recipe"] == name and r["val_writers"] == f for r in ok) for name in RECIPES)]
    score = {name: sum(round(r["val_accuracy"] * r["n_val"]) for r in ok if r["recipe"] == name and r["val_writers"] in complete)
             for name in RECIPES}
    winner = max(RECIPES, key=lambda name: (score[name], -list(RECIPES).index(name))) if complete else "base"
    return winner, complete, score


def choose_seed(final: list[dict]) -> dict | None:
    """Among seeds whose writer run and random twin both finished: best validation accuracy, then
    lowest validation loss. Test accuracy plays no part."""
    ok = {(r["split"], r["seed"]): r for r in final if "error" not in r}
    pairs = sorted(s for split, s in ok if split == "writer" and ("random", s) in ok)
    if not pairs:
        return None
    best = max(pairs, key=lambda s: (ok["writer", s]["val_accuracy"], -ok["writer", s]["val_loss"]))
    return {"seed": best, "writer": ok["writer", best]["name"], "random": ok["random", best]["name"]}


def run_jobs(jobs: list[dict], parallel: int, deadline: float, log) -> list[dict]:
    """Start jobs in order, `parallel` at a time; anything still running at the deadline is stopped."""
    queue, running, done = list(jobs), [], []
    while queue or running:
        while queue and len(running) < parallel and time.time() < deadline:
            job = queue.pop(0)
            job["t0"] = time.time()
            job["proc"] = subprocess.Popen(job["cmd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            running.append(job)
        if time.time() >= deadline:
            queue.clear()
            for job in running:
                job["proc"].kill()
        for job in list(running):
            if job["proc"].poll() is not None:
                job["stderr"] = job["proc"].stderr.read()
                job["returncode"], job["wall"] = job["proc"].returncode, time.time() - job["t0"]
                running.remove(job)
                row = result(job)
                done.append(row)
                log(row)
        time.sleep(0.5)
    return done


def pack(work: Path, summary: dict, dest: Path) -> None:
    """The summary, and the chosen writer run with its twin (no checkpoints) in <=15 MB parts."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "recipe_summary.json").write_text(json.dumps(summary, indent=2))
    chosen = summary.get("chosen") or {}
    members = [(f, f"{name}/{f.name}") for name in (chosen.get("writer"), chosen.get("random")) if name
               for f in sorted((work / name).iterdir())
               if f.is_file() and f.name != "checkpoint.safetensors" and not f.name.startswith(".")]
    tar_in_parts(members, dest, "chosen")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--extra-train")
    ap.add_argument("--work", type=Path, required=True, help="folder for the runs")
    ap.add_argument("--pack-to", type=Path, required=True, help="where the summary and the chosen runs go ($OUT)")
    ap.add_argument("--budget", type=float, default=420, help="seconds for both stages; packing comes after")
    ap.add_argument("--stage1-share", type=float, default=0.5, help="share of the budget for cross-validation")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--winner", choices=list(RECIPES), help="skip stage 1: this recipe was chosen by an earlier stage 1")
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    ap.add_argument("--quick", action="store_true", help="tiny subsets and one epoch (+1 averaged): checks the script on a CPU")
    args = ap.parse_args()
    start = time.time()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    summary: dict = {"recipes": RECIPES, "folds": FOLDS, "runs": []}
    log_path = work / "recipe_log.jsonl"

    def log(row):
        print(json.dumps(row), flush=True)
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def job(stage, recipe, split, seed, val_writers=None):
        name = f"{stage}-{recipe}-{split}-s{seed}" + (f"-v{val_writers}" if val_writers else "")
        flags = list(RECIPES[recipe])
        if args.quick:  # keep the recipe's other flags, shrink its length
            flags = [f if flags[i - 1] not in ("--epochs", "--swa-epochs") else "1" for i, f in enumerate(flags)]
            flags += ["--subset", "300"]
        cmd = [sys.executable, str(ROOT / "train.py"), "--model", "resnet18", "--data", args.data, "--split", split,
               "--seed", str(seed), "--out", str(work / name), "--quiet", *flags]
        if val_writers:
            cmd += ["--val-writers", val_writers]
        if args.extra_train:
            cmd += ["--extra-train", args.extra_train]
        return {"name": name, "stage": stage, "recipe": recipe, "split": split, "seed": seed, "val_writers": val_writers,
                "out": str(work / name), "cmd": cmd}

    folds, seeds = (FOLDS[:1], args.seeds[:2]) if args.quick else (FOLDS, args.seeds)
    try:
        # Stage 1: fold by fold, so that a cut-off leaves every recipe with the same folds.
        jobs = [] if args.winner else [job("cv", r, "writer", 0, fold) for fold in folds for r in RECIPES]
        cv = run_jobs(jobs, args.parallel, start + args.budget * args.stage1_share, log)
        summary["runs"] += cv
        winner, complete, score = choose_recipe(cv, folds)
        winner = args.winner or winner
        summary.update(cv_folds_complete=complete, cv_correct=score, winner=winner)
        log({"winner": winner, "folds": complete, "correct": score})

        # Stage 2: the winner, seed by seed, writer split and random twin.
        jobs = [job("final", winner, split, s) for s in seeds for split in ("writer", "random")]
        final = run_jobs(jobs, args.parallel, start + args.budget, log)
        summary["runs"] += final
        chosen = choose_seed(final)
        if chosen:
            summary["chosen"] = chosen
        log({"chosen": summary.get("chosen")})
    finally:
        summary["seconds"] = round(time.time() - start, 1)
        pack(work, summary, args.pack_to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
