"""Accuracy of a model on data it never trained on.

``evaluate_dataset`` scores Chinese MNIST on the model's own held-out part by default and refuses
any test part that overlaps the images the model trained on. ``evaluate_folder`` scores a folder
of labelled images (``labels.csv`` with ``file,index``), such as the sketch-style set.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from . import preprocess
from .data import SPLITS, Dataset, load_dataset, make_split
from .errors import DataError, ImageError
from .labels import NUM_CLASSES


def _score(model, canon_u8: np.ndarray, labels: np.ndarray, batch: int = 512) -> dict:
    preds = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(canon_u8), batch):
            x = torch.from_numpy(canon_u8[i : i + batch]).float().div_(255)[:, None].to(model.device)
            preds.append(model.probabilities(x).argmax(1).cpu().numpy())
    p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(cm, (labels, p), 1)
    n = int(len(labels))
    return {
        "accuracy": float((p == labels).mean()) if n else 0.0, "n": n,
        "per_class_accuracy": [round(float(x), 6) for x in np.diag(cm) / np.maximum(cm.sum(1), 1)],
        "confusion_matrix": cm.tolist(), "predictions": p,
    }


def trained_indices(model, ds: Dataset) -> np.ndarray | None:
    """Indices of ``ds`` the model trained on, or None when that cannot be told."""
    info = model.config["chnmnist"].get("training") or {}
    if info.get("split") == "writer":
        if (ds.writers < 0).any():
            return None
        return np.flatnonzero(np.isin(ds.writers, info.get("train_writers") or []))
    if info.get("split") == "random":
        if info.get("data_fingerprint") != ds.fingerprint():
            return None
        split = make_split(ds, "random", seed=int(info.get("seed", 0)))
        # A final fit (train.py --no-val) trained on the validation images too.
        return np.concatenate([split.train, split.val]) if info.get("n_val") == 0 else split.train
    return None


def evaluate_dataset(model, data, split: str | None = None) -> dict:
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    info = model.config["chnmnist"].get("training") or {}
    split = split or info.get("split") or "random"
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    test = make_split(ds, split, seed=int(info.get("seed", 0))).test
    trained = trained_indices(model, ds)
    if trained is None:
        raise DataError("refusing to score: cannot tell which of these images the model trained on "
                        f"(it was trained on the {info.get('split', 'unknown')} split of other data)")
    overlap = np.intersect1d(test, trained)
    if len(overlap):
        raise DataError(f"refusing to score: {len(overlap)} of the {len(test)} test images of the {split} split were "
                        f"used to train this model; use --split {info.get('split')}")
    canon = preprocess.canonicalize_dataset(ds.images)
    result = _score(model, canon[test], ds.labels[test])
    result["split"] = split
    return result


def read_labelled_folder(folder) -> tuple[list[Path], np.ndarray]:
    folder = Path(folder)
    index = folder / "labels.csv"
    if not index.exists():
        raise DataError(f"{folder} has no labels.csv (columns: file,index)")
    files, labels = [], []
    with open(index, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                label = int(row["index"])
                files.append(folder / row["file"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{index} line {n}: needs a file name and a class index 0-14") from None
            if not 0 <= label < NUM_CLASSES:
                raise DataError(f"{index} line {n}: class index {label} is not 0-14")
            labels.append(label)
    return files, np.array(labels, np.int64)


_FOLDER_CACHE: dict = {}


def _canonical_or_none(path: Path) -> np.ndarray | None:
    torch.set_num_threads(1)
    try:
        return preprocess.canonicalize_uint8(path)
    except ImageError:
        return None


def _canonical_folder(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray, list[int]]:
    # Several models scored on one folder in one process (training sweeps) canonicalize it once.
    index = folder / "labels.csv"
    key = (str(folder.resolve()), index.stat().st_mtime_ns, preprocess.VERSION)
    if key not in _FOLDER_CACHE:
        files, labels = read_labelled_folder(folder)
        workers = min(os.cpu_count() or 1, 16)
        if len(files) >= 200 and workers > 1:
            with ProcessPoolExecutor(workers) as ex:
                results = list(ex.map(_canonical_or_none, files, chunksize=16))
        else:
            results = [_canonical_or_none(f) for f in files]
        canon = np.zeros((len(files), preprocess.SIZE, preprocess.SIZE), np.uint8)
        failed = [i for i, r in enumerate(results) if r is None]
        for i, r in enumerate(results):
            if r is not None:
                canon[i] = r
        _FOLDER_CACHE.clear()
        _FOLDER_CACHE[key] = (files, labels, canon, failed)
    return _FOLDER_CACHE[key]


def evaluate_folder(model, folder) -> dict:
    """Accuracy on a folder of labelled images; an unreadable or blank image counts as wrong."""
    files, labels, canon, failed = _canonical_folder(Path(folder))
    result = _score(model, canon, labels)
    if failed:
        ok = result["predictions"] == labels
        ok[failed] = False
        result["accuracy"] = float(ok.mean())
    result["unreadable"] = [str(files[i]) for i in failed]
    result["split"] = "external"
    return result


def evaluate(model, data, split: str | None = None) -> dict:
    """Chinese MNIST (zip, folder, pickle) or a labelled folder of other images."""
    p = Path(data)
    if p.is_dir() and (p / "labels.csv").exists():
        if split:
            raise DataError(f"{p} is a labelled image folder; it has no splits, so --split does not apply")
        return evaluate_folder(model, p)
    return evaluate_dataset(model, p, split)
