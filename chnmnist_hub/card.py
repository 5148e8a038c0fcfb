"""Model cards, rendered from the template in model_cards/ with the figures a run measured."""
from __future__ import annotations

import json
from pathlib import Path
from string import Template

from .labels import LABELS
from .preprocess import SIZE

_REPO_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "model_card.md"


def _template() -> str:
    return _REPO_TEMPLATE.read_text(encoding="utf-8")


def _pct(x) -> str:
    return "not measured" if x is None else f"{100 * x:.2f}%"


def render_card(config: dict, metrics: dict | None = None, repo_id: str | None = None, command: str | None = None,
                notes: str | None = None) -> str:
    """A README.md for a model folder. Every figure in it comes from ``metrics``; none is typed in."""
    ours = config["chnmnist"]
    training = ours.get("training") or {}
    metrics = metrics or {}
    arch = ours["model"]
    name = repo_id or f"chnmnist-{arch}"
    split = training.get("split", "unknown")
    acc = metrics.get("test_accuracy")
    yaml_index = ""
    if acc is not None:
        yaml_index = (
            "model-index:\n"
            f"- name: {name}\n"
            "  results:\n"
            "  - task:\n      type: image-classification\n      name: Image classification\n"
            "    dataset:\n      type: chinese-mnist\n      name: Chinese MNIST (gpreda/chinese-mnist)\n"
            f"      split: {split}-test\n"
            f"    metrics:\n    - type: accuracy\n      value: {acc:.4f}\n"
            f"      name: Test accuracy ({split} split)\n"
        )
        if metrics.get("sketch_accuracy") is not None:
            yaml_index += (
                "  - task:\n      type: image-classification\n      name: Image classification\n"
                "    dataset:\n      type: chnmnist-sketchset\n      name: chnmnist_hub sketch-style validation set\n"
                f"    metrics:\n    - type: accuracy\n      value: {metrics['sketch_accuracy']:.4f}\n"
                "      name: Sketch-set accuracy\n"
            )
    per_class = metrics.get("per_class_accuracy")
    weakest = ""
    if per_class:
        order = sorted(range(len(per_class)), key=lambda i: per_class[i])[:5]
        weakest = "\n".join(f"| {LABELS[i].character} ({LABELS[i].value}) | {_pct(per_class[i])} |" for i in order)
        weakest = "| class | test accuracy |\n|---|---|\n" + weakest
    else:
        weakest = "not measured"
    hub_id = repo_id if repo_id and "/" in repo_id and not repo_id.startswith(("models/", ".", "/")) else f"<user>/{name.split('/')[-1]}"
    load = (f'model = ch.load_model("models/{name.split("/")[-1]}")   # the folder in the project repository\n'
            f'model = ch.load_model("{hub_id}")   # or the hub repo it was pushed to')
    timm_load = ""
    if arch == "resnet18":
        size = (ours.get("model_args") or {}).get("input_size", SIZE)
        enlarge = f", then be enlarged to {size}x{size} with bilinear interpolation" if size != SIZE else ""
        timm_load = (
            "The same folder loads with plain timm (the input must still go through "
            f"`chnmnist_hub.canonicalize`{enlarge}):\n\n```python\nimport timm\n"
            f'net = timm.create_model("hf-hub:{hub_id}", pretrained=True)\n```\n'
        )
    fields = {
        "yaml_index": yaml_index,
        "name": name,
        "arch": {"cnn": "the report's small CNN (two 5x5 convolutions, one linear layer)", "resnet18": "timm ResNet-18 (in_chans=1, num_classes=15)"}[arch],
        "model_args": json.dumps(ours.get("model_args") or {}),
        "split": split,
        "train_writers": _ranges(training.get("train_writers") or []),
        "test_writers": _ranges(training.get("test_writers") or []),
        "test_accuracy": _pct(acc),
        "n_test": str(metrics.get("n_test", "?")),
        "sketch_accuracy": _pct(metrics.get("sketch_accuracy")),
        "random_split_accuracy": _pct(metrics.get("random_split_accuracy")),
        "weakest": weakest,
        "epochs": _epochs(training),
        "train_seconds": f"{metrics['train_seconds']:.1f}" if metrics.get("train_seconds") is not None else "?",
        "device": str(metrics.get("device", "?")),
        "command": training_commands(training, command),
        "load": load,
        "timm_load": timm_load,
        "weights_dtype": ours.get("weights_dtype", "float32"),
        "preprocess_version": str(ours["preprocess"]["version"]),
        "notes": notes or "",
        "tta": (f"Predictions average {1 + len([a for a in ours['tta']['angles'] if a])} views of the canonical image "
                f"(rotations {', '.join(f'{a:g}°' for a in ours['tta']['angles'])}), batched into one forward pass; "
                "set `chnmnist.tta` in config.json to `{}` for a single view.")
               if (ours.get("tta") or {}).get("angles") else "One forward pass per image (no test-time views).",
        "random_note": metrics.get("random_split_note", ""),
        "trained_with": (f" It was trained when the library's preprocessing was version {ours['preprocess']['trained_with_version']}; "
                         f"version {ours['preprocess']['version']} gives bit-for-bit the same canonical images for every training "
                         "image (SHA-1 of them in config.json), and differs only on photos with uneven light.")
                        if ours["preprocess"].get("trained_with_version") not in (None, ours["preprocess"]["version"]) else "",
        "library_version": ours.get("library_version", "?"),
    }
    return Template(_template()).safe_substitute(fields)


def _epochs(training: dict) -> str:
    # "24 + 6": the schedule, then the epochs at a constant rate whose ends are averaged; a run that
    # continued other weights (--init) adds its own epochs after theirs.
    runs = [training["init"], training] if training.get("init") else [training]
    return " + ".join(str(n) for r in runs for n in (r.get("epochs", "?"), r.get("swa_epochs")) if n)


def training_commands(training: dict, command: str | None) -> str:
    ours = command or training.get("command", "(not recorded)")
    init = training.get("init")
    if not init:
        return ours
    return f"{init.get('command') or '(not recorded)'}\n# then, from those weights ({init.get('from')}):\n{ours}"


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none recorded"
    ids = sorted(ids)
    out, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
        if i is not None:
            start = prev = i
    return ", ".join(out)
