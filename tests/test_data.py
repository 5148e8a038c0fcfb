"""load_dataset (zip, unpacked folder, the report's pickle) and make_split (random, writer)."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

import chnmnist_hub as ch
from chnmnist_hub import DataError
from chnmnist_hub.labels import LABELS

VALUES = [label.value for label in LABELS]


def one_line(err) -> str:
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg and "\n" not in msg, f"expected a one-line message, got {msg!r}"
    return msg


# ---------------------------------------------------------------- the real dataset: zip and folder

def test_zip_arrays(dataset):
    assert isinstance(dataset, ch.Dataset)
    assert len(dataset) == 15000
    assert dataset.images.dtype == np.uint8 and dataset.images.shape == (15000, 64, 64)
    assert dataset.labels.dtype == np.int64 and dataset.labels.shape == (15000,)
    assert dataset.writers.dtype == np.int64 and dataset.writers.shape == (15000,)
    assert np.array_equal(np.bincount(dataset.labels, minlength=15), np.full(15, 1000))
    assert dataset.labels.min() == 0 and dataset.labels.max() == 14
    writers, counts = np.unique(dataset.writers, return_counts=True)
    assert writers.tolist() == list(range(1, 101))
    assert (counts == 150).all()  # every writer wrote 15 characters 10 times


def test_zip_ink_bright_on_dark(dataset):
    imgs = dataset.images[::50]
    border = np.concatenate([imgs[:, :3, :].ravel(), imgs[:, -3:, :].ravel(), imgs[:, :, :3].ravel(), imgs[:, :, -3:].ravel()])
    assert np.median(border) < 30  # dark paper
    assert imgs.mean() < 60
    assert (imgs.reshape(len(imgs), -1).max(1) > 100).all()  # every image has bright ink


def test_zip_labels_match_file_codes(data_zip, dataset):
    # the first rows after sorting by (suite, sample, code): suite 1, sample 1, codes 1..15
    assert dataset.writers[:15].tolist() == [1] * 15
    assert dataset.labels[:15].tolist() == list(range(15))
    with zipfile.ZipFile(data_zip) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/input_1_1_5.jpg"))
        raw = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L"))
    assert np.array_equal(dataset.images[4], raw)


@pytest.fixture(scope="module")
def unpacked(data_zip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(data_zip) as zf:
        zf.extractall(folder)
    return folder


def test_unpacked_folder_same_arrays(unpacked, dataset):
    ds = ch.load_dataset(unpacked)
    assert np.array_equal(ds.images, dataset.images)
    assert np.array_equal(ds.labels, dataset.labels)
    assert np.array_equal(ds.writers, dataset.writers)
    assert ds.fingerprint() == dataset.fingerprint()


def test_missing_path():
    with pytest.raises(DataError) as e:
        ch.load_dataset("/nonexistent/chinese-mnist.zip")
    assert "not found" in one_line(e)


# ---------------------------------------------------------------- the report's pickle

def _stratified(dataset, per_class=20):
    idx = np.concatenate([np.flatnonzero(dataset.labels == c)[:per_class] for c in range(15)])
    return dataset.images[idx], dataset.labels[idx]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_loads(dataset, tmp_path, protocol):
    images, labels = _stratified(dataset)
    targets = np.array([VALUES[i] for i in labels], np.int64)
    path = tmp_path / "chn_mnist"
    with open(path, "wb") as f:
        pickle.dump({"images": images, "targets": targets}, f, protocol=protocol)
    ds = ch.load_dataset(path)
    assert ds.images.dtype == np.uint8 and ds.images.shape == images.shape
    assert np.array_equal(ds.images, images)
    assert np.array_equal(ds.labels, labels) and ds.labels.dtype == np.int64
    assert (ds.writers == -1).all() and ds.writers.shape == labels.shape


def test_pickle_written_by_numpy_1(tmp_path):
    """numpy 1.x names its reconstructor numpy.core.multiarray (numpy 2: numpy._core); both must load."""
    images = np.arange(15 * 64 * 64, dtype=np.uint32).reshape(15, 64, 64).astype(np.uint8)
    raw = pickle.dumps({"images": images, "targets": np.array(VALUES)}, protocol=2)
    assert b"numpy._core.multiarray\n" in raw or b"numpy.core.multiarray\n" in raw
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    ds = ch.load_dataset(path)
    assert np.array_equal(ds.images, images) and ds.labels.tolist() == list(range(15))


def test_pickle_float_images_in_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (15, 64, 64)).astype(np.uint8)
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps({"images": images / 255.0, "targets": np.array(VALUES)}, protocol=4))
    ds = ch.load_dataset(path)
    assert ds.images.dtype == np.uint8
    assert np.abs(ds.images.astype(int) - images).max() <= 1
    assert ds.labels.tolist() == list(range(15))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilExec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("evil", [_Evil, _EvilExec])
@pytest.mark.parametrize("where", ["top", "images", "nested"])
def test_hostile_pickle_refused(tmp_path, evil, where):
    marker = tmp_path / "PWNED"
    payload = evil(marker)
    images = np.zeros((15, 64, 64), np.uint8)
    obj = {"top": payload,
           "images": {"images": payload, "targets": np.array(VALUES)},
           "nested": {"images": images, "targets": np.array(VALUES), "extra": [1, {"x": payload}]}}[where]
    path = tmp_path / "chn_mnist"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    msg = one_line(e)
    assert "refused" in msg
    assert not marker.exists()


def _dump(tmp_path, obj, name="bad.pkl", protocol=4) -> str:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("obj, words", [
    ({"images": np.zeros((15, 32, 32), np.uint8), "targets": np.array(VALUES)}, "(N, 64, 64)"),
    ({"images": np.zeros((15, 64), np.uint8), "targets": np.array(VALUES)}, "(N, 64, 64)"),
    ({"images": np.zeros((15, 64, 64), np.uint8), "targets": np.array(VALUES[:14])}, "targets"),
    ({"images": np.zeros((15, 64, 64), np.uint8), "targets": np.array(VALUES[:14] + [11])}, "11"),
    ({"images": np.zeros((15, 64, 64), np.uint8), "targets": np.array(VALUES[:14] + [-1])}, "not Chinese numerals"),
    ({"images": np.full((15, 64, 64), np.nan), "targets": np.array(VALUES)}, "finite"),
    ({"images": np.zeros((15, 64, 64), np.uint8)}, "'targets'"),
    ({"pixels": np.zeros((15, 64, 64), np.uint8), "targets": np.array(VALUES)}, "'images'"),
    ([np.zeros((15, 64, 64), np.uint8), np.array(VALUES)], "dict"),
    (np.zeros((15, 64, 64), np.uint8), "dict"),
])
def test_malformed_pickle(tmp_path, obj, words):
    with pytest.raises(DataError) as e:
        ch.load_dataset(_dump(tmp_path, obj))
    msg = one_line(e)
    assert words in msg and "bad.pkl" in msg


@pytest.mark.parametrize("content", [bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
                                     b"", b"hello, this is not a pickle\n", pickle.dumps({"images": 1})[:-5]])
def test_not_a_pickle(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    assert "junk.bin" in one_line(e)


# ---------------------------------------------------------------- small synthetic Kaggle zips for error cases

def _jpg(side=64, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    a = np.zeros((side, side), np.uint8)
    y, x = rng.integers(10, side - 20, 2)
    a[y : y + 10, x : x + 10] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG")
    return buf.getvalue()


ROWS = [(1, 1, 1, 0), (1, 1, 2, 1), (2, 3, 15, 100000000)]
NAMES = [f"input_{s}_{n}_{c}.jpg" for s, n, c, _ in ROWS]


def _csv(rows=ROWS) -> bytes:
    lines = ["suite_id,sample_id,code,value,character"]
    lines += [f"{s},{n},{c},{v},{LABELS[c - 1].character if isinstance(c, int) and 1 <= c <= 15 else '?'}"
              for s, n, c, v in rows]
    return ("\n".join(lines) + "\n").encode()


def make_zip(path, files: dict) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def kaggle_files(**override) -> dict:
    files = {"chinese_mnist.csv": _csv()}
    files.update({f"data/data/{n}": _jpg(seed=i) for i, n in enumerate(NAMES)})
    for name, data in override.items():
        key = name if name == "chinese_mnist.csv" else f"data/data/{name}"
        if data is None:
            files.pop(key)
        else:
            files[key] = data
    return files


def test_synthetic_zip_loads(tmp_path):
    ds = ch.load_dataset(make_zip(tmp_path / "ok.zip", kaggle_files()))
    assert ds.images.shape == (3, 64, 64)
    assert ds.labels.tolist() == [0, 1, 14]
    assert ds.writers.tolist() == [1, 1, 2]


@pytest.mark.parametrize("override, names", [
    ({NAMES[1]: None}, [NAMES[1], "missing"]),
    ({NAMES[2]: b"\xff\xd8\xff\xe0 this is not really a jpeg"}, [NAMES[2]]),
    ({NAMES[0]: _jpg()[:120]}, [NAMES[0]]),
    ({NAMES[0]: _jpg(side=48)}, [NAMES[0], "64x64"]),
    ({"chinese_mnist.csv": None}, ["chinese_mnist.csv"]),
    ({"chinese_mnist.csv": b"a,b,c\n1,2,3\n"}, ["chinese_mnist.csv", "columns"]),
    ({"chinese_mnist.csv": _csv([(1, 1, 3, 7)])}, ["chinese_mnist.csv", "line 2"]),
    ({"chinese_mnist.csv": _csv([(1, 1, "x", 0)])}, ["chinese_mnist.csv", "whole numbers"]),
    ({"chinese_mnist.csv": b"suite_id,sample_id,code,value\n"}, ["chinese_mnist.csv", "no images"]),
])
@pytest.mark.parametrize("form", ["zip", "folder"])
def test_broken_kaggle_layout(tmp_path, override, names, form):
    files = kaggle_files(**override)
    if form == "zip":
        path = make_zip(tmp_path / "broken.zip", files)
    else:
        path = tmp_path / "broken"
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    msg = one_line(e)
    for word in names:
        assert word in msg


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_csv_not_text(tmp_path, form):
    files = kaggle_files(**{"chinese_mnist.csv": b"\xff\xfe\x00\x81garbage\x90\n" * 10})
    if form == "zip":
        path = make_zip(tmp_path / "bin.zip", files)
    else:
        path = tmp_path / "binfolder"
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    assert "chinese_mnist.csv" in one_line(e)


def test_corrupt_zip_member(tmp_path):
    """A member whose bytes were damaged inside the archive (CRC mismatch)."""
    path = make_zip(tmp_path / "crc.zip", kaggle_files())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"data/data/{NAMES[1]}")
    raw = bytearray(path.read_bytes())
    # stored uncompressed: the data follows the 30-byte local header, the name and the extra field
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    raw[at : at + 8] = bytes(x ^ 0xFF for x in raw[at : at + 8])
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        ch.load_dataset(path)
    assert NAMES[1] in one_line(e)


# ---------------------------------------------------------------- splits

def test_random_split_stratified(dataset):
    s = ch.make_split(dataset, "random", seed=0)
    assert s.name == "random"
    for part in (s.train, s.val, s.test):
        assert part.dtype.kind == "i"
        assert len(np.unique(part)) == len(part)
    assert len(np.intersect1d(s.train, s.val)) == 0
    assert len(np.intersect1d(s.train, s.test)) == 0
    assert len(np.intersect1d(s.val, s.test)) == 0
    assert len(s.train) + len(s.val) + len(s.test) == 15000
    assert np.array_equal(np.sort(np.concatenate([s.train, s.val, s.test])), np.arange(15000))
    test_counts = np.bincount(dataset.labels[s.test], minlength=15)
    trainval_counts = np.bincount(dataset.labels[np.concatenate([s.train, s.val])], minlength=15)
    assert (test_counts == 100).all()
    assert (trainval_counts == 900).all()
    assert len(s.val) > 0 and len(s.train) > len(s.val)
    # the test part mixes writers (it is the seed's protocol, not held-out writers)
    assert len(np.unique(dataset.writers[s.test])) > 50


def test_random_split_reproducible(dataset):
    a, b, c = (ch.make_split(dataset, "random", seed=k) for k in (7, 7, 8))
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.test, c.test)
    assert not np.array_equal(a.val, c.val)


def test_writer_split(dataset):
    s = ch.make_split(dataset, "writer", seed=0)
    w = dataset.writers
    assert set(w[s.test].tolist()) == set(range(91, 101))
    assert set(w[s.val].tolist()) == set(range(86, 91))
    assert set(w[s.train].tolist()) == set(range(1, 86))
    assert (len(s.train), len(s.val), len(s.test)) == (85 * 150, 5 * 150, 10 * 150)
    assert len(np.intersect1d(s.train, s.test)) == 0 and len(np.intersect1d(s.val, s.test)) == 0
    assert len(np.intersect1d(s.train, s.val)) == 0
    d = s.describe(dataset)
    assert d["test_writers"] == list(range(91, 101)) and d["train_writers"] == list(range(1, 86))
    assert d["n_test"] == 1500


def test_writer_split_other_validation_writers(dataset):
    # Cross-validating a recipe: another fold of suites 1-90 validates, 86-90 train, 91-100 stay the test.
    s = ch.make_split(dataset, "writer", seed=0, val_writers="1-10,41")
    w = dataset.writers
    assert set(w[s.val].tolist()) == set(range(1, 11)) | {41}
    assert set(w[s.train].tolist()) == set(range(11, 91)) - {41}
    assert set(w[s.test].tolist()) == set(range(91, 101))
    assert np.array_equal(s.test, ch.make_split(dataset, "writer").test)


@pytest.mark.parametrize("text, words", [("85-95", "91-100"), ("ten", "86-90"), ("0", "1-90"), ("1-90", "80 suites")])
def test_bad_validation_writers(dataset, text, words):
    with pytest.raises(DataError) as e:
        ch.make_split(dataset, "writer", val_writers=text)
    assert words in one_line(e)
    with pytest.raises(DataError) as e:
        ch.make_split(dataset, "random", val_writers="1-10")
    assert "writer split" in one_line(e)


def test_writer_split_on_pickle_refused(dataset, tmp_path):
    images, labels = _stratified(dataset, per_class=160)
    path = _dump(tmp_path, {"images": images, "targets": np.array([VALUES[i] for i in labels])}, "chn_mnist")
    ds = ch.load_dataset(path)
    with pytest.raises(DataError) as e:
        ch.make_split(ds, "writer")
    assert "writer" in one_line(e)
    s = ch.make_split(ds, "random", seed=0)  # the random split still works without writers
    assert (np.bincount(ds.labels[s.test], minlength=15) == 100).all()


def test_unknown_split(dataset):
    with pytest.raises(DataError) as e:
        ch.make_split(dataset, "by-phase-of-moon")
    assert "random" in one_line(e) and "writer" in str(e.value)
