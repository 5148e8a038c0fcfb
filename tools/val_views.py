#!/usr/bin/env python
"""Score sets of test-time views of a model on its VALIDATION images (never the test): errors and
mean loss of the probabilities averaged over each set. A set is worth shipping only if it beats
one view there; of these, rotations are what config.json's `chnmnist.tta.angles` can hold.

It also scores the same images written smaller (shrunk before canonicalisation, as small or
distant writing reaches the model), per validation writer: how well a model reads small writing.

    python tools/val_views.py models/chnmnist-resnet18 --data ../shared/data/chinese-mnist.zip
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chnmnist_hub as ch  # noqa: E402
from chnmnist_hub import augment, preprocess  # noqa: E402
from chnmnist_hub.hub import _rotate  # noqa: E402


def _affine(x: torch.Tensor, zoom: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """The character zoom times larger, moved right by shift (a fraction of half the image side)."""
    theta = torch.tensor([[1 / zoom, 0.0, -shift], [0.0, 1 / zoom, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


VIEWS = {
    "rotate -3": lambda x: _rotate(x, -3), "rotate +3": lambda x: _rotate(x, 3),
    "rotate -6": lambda x: _rotate(x, -6), "rotate +6": lambda x: _rotate(x, 6),
    "zoom 0.92": lambda x: _affine(x, 0.92), "zoom 1.08": lambda x: _affine(x, 1.08),
    "thinner": augment.thinner, "thicker": augment.thicker,
    "left 2 px": lambda x: _affine(x, shift=-2 / 32), "right 2 px": lambda x: _affine(x, shift=2 / 32),
}
# Each set is one view plus these.
SETS = {
    "one view": [], "rotations ±3°": ["rotate -3", "rotate +3"], "rotations ±6°": ["rotate -6", "rotate +6"],
    "zoom 0.92, 1.08": ["zoom 0.92", "zoom 1.08"], "pen thinner, thicker": ["thinner", "thicker"],
    "shifts ±2 px": ["left 2 px", "right 2 px"],
}


def _probs(model: ch.ChnmnistModel, images_u8, view=lambda t: t, batch: int = 250) -> torch.Tensor:
    """Class probabilities of one view of canonical uint8 images (N, 64, 64), in batches."""
    x = torch.from_numpy(images_u8)[:, None].float() / 255
    model.eval()
    with torch.inference_mode():
        return torch.cat([F.softmax(model(view(x[i : i + batch])).float(), 1) for i in range(0, len(x), batch)])


def score_sets(model: ch.ChnmnistModel, images_u8, labels, batch: int = 250) -> dict[str, dict]:
    """{set name: {"errors", "n", "loss"}} over canonical uint8 images (N, 64, 64) and their labels."""
    y = torch.from_numpy(labels)
    probs = {name: _probs(model, images_u8, view, batch) for name, view in {"one view": lambda t: t, **VIEWS}.items()}
    out = {}
    for name, extra in SETS.items():
        p = torch.stack([probs[k] for k in ["one view", *extra]]).mean(0)
        out[name] = {"errors": int((p.argmax(1) != y).sum()), "n": len(y),
                     "loss": round(float(F.nll_loss(p.clamp_min(1e-12).log(), y)), 4)}
    return out


SMALLER = (0.7, 0.55, 0.45)


def score_smaller(model: ch.ChnmnistModel, raw_u8, labels, writers, factors=SMALLER) -> dict[str, dict]:
    """{"70%": {"errors", "blank", "n", "by_writer"}, ...}: the raw images shrunk to each factor, then
    canonicalised and read with one view. A character shrunk to nothing counts as blank and an error."""
    out = {}
    for f in factors:
        canon = preprocess.canonicalize_dataset(augment.written_smaller(raw_u8, [f] * len(raw_u8)))
        blank = ~canon.reshape(len(canon), -1).any(1)
        pred = _probs(model, canon).argmax(1).numpy()
        wrong = (pred != labels) | blank
        out[f"{round(f * 100)}%"] = {"errors": int(wrong.sum()), "blank": int(blank.sum()), "n": len(labels),
                                     "by_writer": {str(w): int(wrong[writers == w].sum()) for w in sorted(set(writers.tolist()))}}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model folder or hub repo id")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "chinese-mnist.zip"))
    ap.add_argument("--limit", type=int, help="only the first N validation images (a smoke run)")
    ap.add_argument("--out", type=Path, help="also write the scores here as JSON")
    args = ap.parse_args()
    try:
        model = ch.load_model(args.model)
        ds = ch.load_dataset(args.data)
        t = model.config["chnmnist"].get("training") or {}
        # The validation part of the split the model was trained on: the same rule train.py used.
        split = ch.make_split(ds, t.get("split", "writer"), seed=t.get("seed", 0),
                              val_writers=",".join(map(str, t["val_writers"])) if t.get("split") == "writer" and t.get("val_writers") else None)
    except ch.ChnmnistError as e:
        sys.exit(f"error: {e}")
    if t.get("n_val") == 0:  # its validation suites trained too
        sys.exit(f"error: {args.model} was trained without validation images (--no-val): nothing to score views on")
    idx = split.val[: args.limit] if args.limit else split.val
    # The whole dataset's canonical images are cached once computed; a subset would be computed again.
    scores = score_sets(model, preprocess.canonicalize_dataset(ds.images)[idx], ds.labels[idx])
    smaller = score_smaller(model, ds.images[idx], ds.labels[idx], ds.writers[idx])
    result = {"model": args.model, "split": split.name, "val_writers": split.describe(ds)["val_writers"], "sets": scores,
              "written_smaller": smaller}
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
