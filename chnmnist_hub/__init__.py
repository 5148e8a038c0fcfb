"""Recognise handwritten Chinese numerals (零 一 二 三 四 五 六 七 八 九 十 百 千 万 亿).

    import chnmnist_hub as ch
    model = ch.load_model("models/chnmnist-resnet18")
    model.predict(["drawing.png"], top_k=5)
"""
from .data import Dataset, Split, load_dataset, make_split
from .errors import ChnmnistError, DataError, ImageError, ModelError, NoCharacterError
from .hub import ChnmnistModel, __version__, create_model, load_model
from .labels import LABELS, NUM_CLASSES
from .preprocess import canonicalize

__all__ = [
    "LABELS", "NUM_CLASSES", "Dataset", "Split", "load_dataset", "make_split", "canonicalize",
    "ChnmnistModel", "create_model", "load_model", "ChnmnistError", "DataError", "ImageError",
    "ModelError", "NoCharacterError", "__version__",
]
