"""The 15 classes, in the index order every model of this project uses."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    index: int
    value: int
    character: str
    pinyin: str
    code: int  # the column on the Chinese MNIST sheet (1-15)

    def as_dict(self) -> dict:
        return {"index": self.index, "character": self.character, "value": self.value}


_TABLE = [
    (0, "零", "líng"), (1, "一", "yī"), (2, "二", "èr"), (3, "三", "sān"), (4, "四", "sì"),
    (5, "五", "wǔ"), (6, "六", "liù"), (7, "七", "qī"), (8, "八", "bā"), (9, "九", "jiǔ"),
    (10, "十", "shí"), (100, "百", "bǎi"), (1000, "千", "qiān"), (10000, "万", "wàn"),
    (100000000, "亿", "yì"),
]

LABELS: tuple[Label, ...] = tuple(
    Label(index=i, value=v, character=c, pinyin=p, code=i + 1) for i, (v, c, p) in enumerate(_TABLE)
)
NUM_CLASSES = len(LABELS)
INDEX_BY_VALUE = {label.value: label.index for label in LABELS}
INDEX_BY_CHARACTER = {label.character: label.index for label in LABELS}
