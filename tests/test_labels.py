"""The 15 classes: order, fields, values."""
import dataclasses

import pytest

import chnmnist_hub as ch
from chnmnist_hub import labels as L

CHARACTERS = "零一二三四五六七八九十百千万亿"
VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000]
PINYIN = ["líng", "yī", "èr", "sān", "sì", "wǔ", "liù", "qī", "bā", "jiǔ", "shí", "bǎi", "qiān", "wàn", "yì"]


def test_fifteen_labels_in_index_order():
    assert ch.NUM_CLASSES == 15
    assert len(ch.LABELS) == 15
    assert [label.index for label in ch.LABELS] == list(range(15))
    assert "".join(label.character for label in ch.LABELS) == CHARACTERS


def test_values():
    assert [label.value for label in ch.LABELS] == VALUES
    assert len({label.value for label in ch.LABELS}) == 15


def test_pinyin():
    assert [label.pinyin for label in ch.LABELS] == PINYIN


def test_code_is_dataset_column():
    # Chinese MNIST's csv numbers the classes 1..15 in the same order
    assert [label.code for label in ch.LABELS] == list(range(1, 16))


def test_lookup_tables_agree():
    for label in ch.LABELS:
        assert L.INDEX_BY_VALUE[label.value] == label.index
        assert L.INDEX_BY_CHARACTER[label.character] == label.index
    assert len(L.INDEX_BY_VALUE) == len(L.INDEX_BY_CHARACTER) == 15


def test_as_dict_and_frozen():
    five = ch.LABELS[5]
    assert five.as_dict() == {"index": 5, "character": "五", "value": 5}
    assert ch.LABELS[14].as_dict() == {"index": 14, "character": "亿", "value": 100000000}
    with pytest.raises(dataclasses.FrozenInstanceError):
        five.value = 6
    assert ch.LABELS[5].value == 5
