"""Reading Chinese MNIST in the forms people have it, and the project's train/val/test splits.

Forms: the public Kaggle zip, that zip unpacked into a folder, and the pickled ``chn_mnist`` dict
the original report used. The pickle is read with an unpickler that admits numpy arrays and
nothing else, so a hostile file cannot run code.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError
from .labels import INDEX_BY_VALUE, NUM_CLASSES

CSV_NAME = "chinese_mnist.csv"
IMAGE_SIZE = 64
SPLITS = ("random", "writer")
WRITER_TEST = range(91, 101)  # suites never seen in training under the writer split
WRITER_VAL = range(86, 91)  # carved from the training suites, for model choice only
RANDOM_TEST_PER_CLASS = 100
RANDOM_VAL_PER_CLASS = 50


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, 64, 64), ink bright on dark
    labels: np.ndarray  # int64 (N,), class index
    writers: np.ndarray  # int64 (N,), suite_id 1..100, -1 where unknown
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """Identifies the exact images and their order, so a model can tell its own training data."""
        h = hashlib.sha1(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def subset(self, idx: np.ndarray) -> "Dataset":
        return Dataset(self.images[idx], self.labels[idx], self.writers[idx], self.source)


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Load Chinese MNIST from the Kaggle zip, its unpacked folder, or the report's pickle."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"dataset not found: {p}")
    if p.is_dir():
        return _load_folder(p)
    if zipfile.is_zipfile(p):
        return _load_zip(p)
    return _load_pickle(p)


# ---------------------------------------------------------------- Kaggle layout (zip or folder)

def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{where} is not a UTF-8 text file") from None


def _parse_csv(text: str, where: str) -> list[tuple[int, int, int, int]]:
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    need = {"suite_id", "sample_id", "code", "value"}
    if not reader.fieldnames or not need <= set(reader.fieldnames):
        raise DataError(f"{where} must have the columns suite_id, sample_id, code, value")
    for n, row in enumerate(reader, start=2):
        try:
            suite, sample, code, value = (int(row[k]) for k in ("suite_id", "sample_id", "code", "value"))
        except (TypeError, ValueError):
            raise DataError(f"{where} line {n}: suite_id, sample_id, code and value must be whole numbers") from None
        if value not in INDEX_BY_VALUE or INDEX_BY_VALUE[value] != code - 1:
            raise DataError(f"{where} line {n}: code {code} with value {value} is not one of the 15 classes")
        rows.append((suite, sample, code, value))
    if not rows:
        raise DataError(f"{where} lists no images")
    rows.sort()
    return rows


def _image_name(suite: int, sample: int, code: int) -> str:
    return f"input_{suite}_{sample}_{code}.jpg"


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L"))
    except Exception:
        raise DataError(f"{name} is not a readable image (corrupt or truncated)") from None
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{name} is {arr.shape[1]}x{arr.shape[0]} pixels; Chinese MNIST images are 64x64")
    return arr


def _assemble(rows, read, source: str) -> Dataset:
    images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, (suite, sample, code, _) in enumerate(rows):
        name = _image_name(suite, sample, code)
        images[i] = _decode(read(name), name)
    labels = np.array([code - 1 for _, _, code, _ in rows], np.int64)
    writers = np.array([suite for suite, _, _, _ in rows], np.int64)
    return Dataset(images, labels, writers, source)


def _load_zip(p: Path) -> Dataset:
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{p} is not a readable zip file ({e})") from None
    with zf:
        members = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        if CSV_NAME not in members:
            raise DataError(f"{p} has no {CSV_NAME}; is it the Chinese MNIST zip from Kaggle?")
        rows = _parse_csv(_text(zf.read(members[CSV_NAME]), f"{CSV_NAME} in {p.name}"), f"{CSV_NAME} in {p.name}")

        def read(name: str) -> bytes:
            if name not in members:
                raise DataError(f"{name} is listed in {CSV_NAME} but missing from {p.name}")
            try:
                return zf.read(members[name])
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataError(f"{name} in {p.name} is corrupt ({e})") from None

        return _assemble(rows, read, str(p))


def _load_folder(p: Path) -> Dataset:
    csvs = [p / CSV_NAME] if (p / CSV_NAME).exists() else list(p.rglob(CSV_NAME))
    if not csvs:
        raise DataError(f"{p} has no {CSV_NAME}; point to the unpacked Chinese MNIST folder")
    rows = _parse_csv(_text(csvs[0].read_bytes(), str(csvs[0])), str(csvs[0]))
    files = {f.name: f for f in p.rglob("input_*.jpg")}

    def read(name: str) -> bytes:
        if name not in files:
            raise DataError(f"{name} is listed in {CSV_NAME} but missing from {p}")
        return files[name].read_bytes()

    return _assemble(rows, read, str(p))


# ---------------------------------------------------------------- the report's pickle

def _latin1_encode(text, encoding="latin1", errors="strict") -> bytes:
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise DataError("refused: the pickle asks for a text encoding other than latin-1")
    return text.encode("latin1", errors="strict")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits the few globals numpy needs to rebuild arrays; refuses everything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes (numpy's array data)
            return _latin1_encode
        raise DataError(f"refused: the pickle asks to load {module}.{name}; only numpy arrays are allowed")


def _load_pickle(p: Path) -> Dataset:
    try:
        with open(p, "rb") as f:
            obj = _ArraysOnlyUnpickler(f).load()
    except DataError as e:
        raise DataError(f"{p.name}: {e}") from None
    except Exception as e:
        raise DataError(f"{p.name} is neither the Chinese MNIST zip, its folder, nor a readable chn_mnist pickle ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "images" not in obj or "targets" not in obj:
        raise DataError(f"{p.name}: expected a dict with 'images' and 'targets'")
    images, targets = np.asarray(obj["images"]), np.asarray(obj["targets"])
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{p.name}: 'images' has shape {images.shape}; expected (N, 64, 64)")
    if targets.shape != (images.shape[0],):
        raise DataError(f"{p.name}: 'targets' has shape {targets.shape}; expected ({images.shape[0]},)")
    if not np.issubdtype(targets.dtype, np.number):
        raise DataError(f"{p.name}: 'targets' must be numbers")
    unknown = sorted(set(np.unique(targets).tolist()) - set(INDEX_BY_VALUE))
    if unknown:
        raise DataError(f"{p.name}: 'targets' holds values that are not Chinese numerals: {unknown[:5]}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
            raise DataError(f"{p.name}: 'images' must be finite numbers")
        hi = float(images.max()) if images.size else 0.0
        images = images * 255.0 if hi <= 1.0 else images
        images = np.clip(images, 0, 255).round().astype(np.uint8)
    labels = np.array([INDEX_BY_VALUE[int(t)] for t in targets], np.int64)
    return Dataset(np.ascontiguousarray(images), labels, np.full(len(labels), -1, np.int64), str(p))


# ---------------------------------------------------------------- splits

@dataclass
class Split:
    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int

    def describe(self, ds: Dataset) -> dict:
        w = ds.writers
        return {
            "split": self.name, "seed": self.seed,
            "train_writers": sorted(set(w[self.train].tolist()) - {-1}),
            "val_writers": sorted(set(w[self.val].tolist()) - {-1}),
            "test_writers": sorted(set(w[self.test].tolist()) - {-1}),
            "n_train": int(len(self.train)), "n_val": int(len(self.val)), "n_test": int(len(self.test)),
        }


def parse_writers(text: str) -> list[int]:
    """'1-10' or '3,7,41-45' -> suite ids; the validation writers of a writer split, which must
    come out of the training suites 1-90."""
    suites: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            suites.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise DataError(f"validation writers {text!r}: write suite numbers like 86-90 or 1,5,41-45") from None
    if not suites or min(suites) < 1 or max(suites) > min(WRITER_TEST) - 1 or len(suites) > 80:
        raise DataError(f"validation writers {text!r}: name 1 to 80 suites within 1-{min(WRITER_TEST) - 1} "
                        f"({min(WRITER_TEST)}-{max(WRITER_TEST)} are the test)")
    return sorted(suites)


def make_split(ds: Dataset, name: str = "random", seed: int = 0, val_writers: str | None = None) -> Split:
    """`random`: seeded, stratified, 100 test images a class; `writer`: suites 91-100 are the test.

    Validation always comes out of the training part: under the writer split suites 86-90, or
    those `val_writers` names (other folds, to cross-validate a recipe over writers).
    """
    if val_writers and name != "writer":
        raise DataError("validation writers can only be chosen for the writer split")
    if name == "random":
        rng = np.random.default_rng(seed)
        train, val, test = [], [], []
        for c in range(NUM_CLASSES):
            idx = np.flatnonzero(ds.labels == c)
            if len(idx) < RANDOM_TEST_PER_CLASS + RANDOM_VAL_PER_CLASS + 1:
                raise DataError(f"class {c} has only {len(idx)} images; the random split needs at least "
                                f"{RANDOM_TEST_PER_CLASS + RANDOM_VAL_PER_CLASS + 1}")
            idx = rng.permutation(idx)
            test.append(idx[:RANDOM_TEST_PER_CLASS])
            val.append(idx[RANDOM_TEST_PER_CLASS:RANDOM_TEST_PER_CLASS + RANDOM_VAL_PER_CLASS])
            train.append(idx[RANDOM_TEST_PER_CLASS + RANDOM_VAL_PER_CLASS:])
        parts = [np.sort(np.concatenate(x)) for x in (train, val, test)]
        return Split(name, *parts, seed=seed)
    if name == "writer":
        if (ds.writers < 0).any():
            raise DataError("the writer split needs writer ids (suite_id); this dataset has none (the pickle form)")
        test = np.isin(ds.writers, list(WRITER_TEST))
        val_suites = parse_writers(val_writers) if val_writers else list(WRITER_VAL)
        val = np.isin(ds.writers, val_suites)
        parts = [np.flatnonzero(m) for m in (~test & ~val, val, test)]
        if any(len(x) == 0 for x in parts):
            raise DataError(f"the writer split needs training suites, validation suites "
                            f"({val_writers or '86-90'}) and suites 91-100 (test) in the data")
        return Split(name, *parts, seed=seed)
    raise DataError(f"unknown split {name!r}; choose one of: {', '.join(SPLITS)}")
