"""The two plots a training run leaves: curves per epoch and the confusion matrix."""
from __future__ import annotations

import io

import numpy as np

from .labels import LABELS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cjk_font():
    """A font that has the 15 characters, if the machine has one; else None."""
    from matplotlib import font_manager

    for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "AR PL UKai CN", "AR PL UMing CN"):
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
            return font_manager.FontProperties(fname=path)
        except ValueError:
            continue
    return None


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def curves_png(history: list[dict]) -> bytes:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [r["epoch"] for r in history]
    a.plot(ep, [r["train_loss"] for r in history], label="train")
    if history and "val_loss" in history[0]:
        a.plot(ep, [r["val_loss"] for r in history], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.set_title("Loss"), a.legend()
    b.plot(ep, [r["train_accuracy"] for r in history], label="train (augmented)")
    if history and "val_accuracy" in history[0]:
        b.plot(ep, [r["val_accuracy"] for r in history], label="validation")
    if history and "test_accuracy" in history[0]:
        b.plot(ep, [r["test_accuracy"] for r in history], label="test")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.set_title("Accuracy"), b.legend()
    return _png(fig)


def confusion_png(cm: np.ndarray, examples: list[np.ndarray] | None = None) -> bytes:
    """Rows: true class, columns: predicted. Axes are labelled with the characters: as text where a
    CJK font is installed, otherwise with a canonical drawing of each character beside its value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 7))
    ax.imshow(np.log1p(cm), cmap="Blues")
    n = len(cm)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 3 else "black")
    font = _cjk_font()
    ticks = [f"{l.character} {l.value}" if font else f"{l.pinyin} {l.value}" for l in LABELS]
    ax.set_xticks(range(n), ticks, rotation=90, fontproperties=font, fontsize=8)
    ax.set_yticks(range(n), ticks, fontproperties=font, fontsize=8)
    pad = 8 if font else 40
    ax.set_xlabel("predicted", labelpad=pad), ax.set_ylabel("true", labelpad=pad)
    if font is None and examples is not None:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        for i, img in enumerate(examples):
            for xy, box in (((-0.5, i), (-4.6, i)), ((i, n - 0.5), (i, n + 3.4))):
                ab = AnnotationBbox(OffsetImage(255 - img, cmap="gray", zoom=0.28), xy, xybox=box, xycoords="data",
                                    frameon=False, annotation_clip=False)
                ax.add_artist(ab)
    ax.set_title("Confusion matrix (test split)")
    return _png(fig)
