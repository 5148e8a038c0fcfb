#!/usr/bin/env python
"""Turn a training run into a released model folder under models/ (exactly what a hub repo holds).

Every figure in the released card is measured here, through the same code paths `evaluate` uses,
with the released config (test-time views included): the held-out writers, the validation
writers, the sketch-style set. The random-split figure comes from a second run of the same recipe.

    python tools/release.py runs/.../release-resnet18-synth --random-run runs/.../random-resnet18 \
        --name chnmnist-resnet18 --tta-angles 0 -6 6
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chnmnist_hub as ch  # noqa: E402
from chnmnist_hub import preprocess  # noqa: E402
from chnmnist_hub.card import render_card, training_commands  # noqa: E402
from chnmnist_hub.evaluate import evaluate_dataset, evaluate_folder  # noqa: E402
from chnmnist_hub.hub import ChnmnistModel, _read_config  # noqa: E402
from chnmnist_hub.plots import confusion_png  # noqa: E402
from chnmnist_hub.training import canonical_examples, without_resume  # noqa: E402


def canonical_sha1(images: np.ndarray) -> str:
    return hashlib.sha1(preprocess.canonicalize_dataset(images).tobytes()).hexdigest()


def retyped(command: str) -> str:
    # Runs recorded before training.command_line named the launcher start with the script, and
    # kept --resume.
    command = " ".join(without_resume(command.split(" ")))
    return "python " + command if command.startswith("train.py") else command


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--random-run", type=Path, required=True, help="the same recipe trained on the random split")
    ap.add_argument("--name", required=True, help="folder name under models/")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "chinese-mnist.zip"))
    ap.add_argument("--extra-train", help="the synthetic images the run trained on, to fingerprint their canonical form")
    ap.add_argument("--training-canonical", nargs="*", default=[],
                    help=".npy files of the canonical images the run was trained on: the current preprocessing must reproduce them")
    ap.add_argument("--tta-angles", type=float, nargs="*", default=[], help="test-time rotations, e.g. 0 -6 6")
    ap.add_argument("--gpu-data", default=".gpu/chinese-mnist.zip", help="the data path the run used, for the card's command")
    ap.add_argument("--notes", default="", help="markdown for the card's limits section")
    args = ap.parse_args()

    config = _read_config(args.run / "config.json", str(args.run))
    ours = config["chnmnist"]
    trained_version = ours["preprocess"]["version"]
    ds = ch.load_dataset(args.data)
    sources = [ds.images] + ([np.load(args.extra_train)["images"]] if args.extra_train else [])
    hashes = [canonical_sha1(images) for images in sources]
    if trained_version != preprocess.VERSION:
        # A model trained under an older version is released under the current one only if the
        # current function gives bit-for-bit the inputs it was trained on.
        expected = [hashlib.sha1(np.load(f).tobytes()).hexdigest() for f in args.training_canonical]
        if sorted(expected) != sorted(hashes):
            sys.exit(f"refusing: preprocessing v{preprocess.VERSION} does not reproduce the v{trained_version} training inputs")
    ours["preprocess"] = {"version": preprocess.VERSION, "size": preprocess.SIZE, "box": preprocess.BOX,
                          "stroke": preprocess.STROKE, "trained_with_version": trained_version}
    ours["training"]["canonical_sha1"] = hashes
    ours["tta"] = {"angles": args.tta_angles} if args.tta_angles else {}
    ours["training"]["command"] = retyped(ours["training"].get("command", ""))
    if "--data" not in ours["training"].get("command", ""):  # bench/gpu.py passed the data path itself
        ours["training"]["command"] += f" --data {args.gpu_data}"
    ours["library_version"] = ch.__version__
    tmp = ChnmnistModel(config)
    from safetensors.torch import load_file

    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(args.run / "model.safetensors").items()}
    tmp.net.load_state_dict(state)
    model = tmp.eval()

    test = evaluate_dataset(model, ds)
    sketch = evaluate_folder(model, ROOT / "data" / "sketchset")
    sketch_one_view = sketch["accuracy"]
    if ours["tta"]:  # a one-view model has just been scored that way
        one_view = ChnmnistModel({**config, "chnmnist": {**ours, "tta": {}}})
        one_view.net.load_state_dict(model.net.state_dict())
        sketch_one_view = evaluate_folder(one_view.eval(), ROOT / "data" / "sketchset")["accuracy"]
    run_metrics = json.loads((args.run / "metrics.json").read_text())
    twin = json.loads((args.random_run / "metrics.json").read_text())
    twin_ours = _read_config(args.random_run / "config.json", str(args.random_run))["chnmnist"]
    twin_cfg = twin_ours["training"]
    metrics = {
        "test_accuracy": test["accuracy"], "n_test": test["n"], "split": test["split"],
        "per_class_accuracy": test["per_class_accuracy"], "confusion_matrix": test["confusion_matrix"],
        "sketch_accuracy": sketch["accuracy"], "sketch_n": sketch["n"], "sketch_per_class_accuracy": sketch["per_class_accuracy"],
        "sketch_accuracy_one_view": sketch_one_view,
        "random_split_accuracy": twin["test_accuracy"], "random_split_command": training_commands(twin_cfg, retyped(twin_cfg["command"])),
        "random_split_preprocess_version": twin_ours["preprocess"].get("trained_with_version", twin_ours["preprocess"]["version"]),
        "random_split_note": "measured on the twin run's own test part, without test-time views",
        "tta": ours["tta"],
        **{k: run_metrics[k] for k in ("train_seconds", "images_per_second", "epochs_run", "device", "world_size", "recipe")},
        "test_accuracy_at_training": run_metrics["test_accuracy"],
    }
    cm = np.array(test["confusion_matrix"])
    files = {
        "metrics.json": (json.dumps(metrics, indent=2) + "\n").encode(),
        "training_curves.png": (args.run / "training_curves.png").read_bytes(),
        "confusion_matrix.png": confusion_png(cm, canonical_examples(ds)),
        "README.md": render_card(config, metrics=metrics, repo_id=args.name, notes=args.notes).encode(),
    }
    dest = ROOT / "models" / args.name
    model.save_pretrained(dest, config=config, extra_files=files)
    size = sum(p.stat().st_size for p in dest.iterdir()) / 1e6
    print(json.dumps({"model": args.name, "test_accuracy": test["accuracy"], "split": test["split"],
                      "sketch_accuracy": sketch["accuracy"], "random_split_accuracy": twin["test_accuracy"],
                      "weakest": sorted(range(15), key=lambda i: test["per_class_accuracy"][i])[:3], "size_mb": round(size, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
