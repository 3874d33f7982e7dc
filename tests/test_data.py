"""Text corpora, vocabularies and character batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightnet_graph.data import (
    CharBatches,
    DataError,
    Vocabulary,
    default_corpus,
    read_text,
    split_text,
)


def test_default_corpus_is_python_docs() -> None:
    text = default_corpus()
    assert len(text) > 100_000
    assert "lambda" in text


def test_vocabulary_round_trip() -> None:
    vocab = Vocabulary.from_text("hello world")
    assert vocab.chars == " dehlorw"
    assert vocab.decode(vocab.encode("world")) == "world"
    assert vocab.decode(vocab.encode("wxyz")) == "w"


def test_batches_continue_streams() -> None:
    ids = np.arange(41)
    batches = CharBatches(ids, batch=2, seq_len=4)
    assert batches.stream_length == 20
    assert len(batches) == 5
    first_inputs, first_targets = batches.window(0)
    second_inputs, _ = batches.window(1)
    assert first_inputs[:, 0].tolist() == [0, 1, 2, 3]
    assert first_inputs[:, 1].tolist() == [20, 21, 22, 23]
    assert first_targets[:, 0].tolist() == [1, 2, 3, 4]
    assert second_inputs[:, 0].tolist() == [4, 5, 6, 7]


def test_split_keeps_every_character() -> None:
    train, valid = split_text("abcdefghij", 0.2)
    assert (train, valid) == ("abcdefgh", "ij")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"text\x00\x01\x02", "looks binary (a NUL byte at offset 4)"),
        (b"caf\xe9 au lait", "is not UTF-8 text: byte 0xe9 at offset 3"),
    ],
    ids=["empty", "blank", "binary", "latin-1"],
)
def test_bad_data_file_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_text(path)
    assert "corpus.txt" in str(caught.value)
    assert expected in str(caught.value)


def test_missing_data_file_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "absent.txt")


def test_text_shorter_than_one_batch_rejected() -> None:
    with pytest.raises(DataError, match="fewer than one batch of 4 x 8"):
        CharBatches(np.arange(10), batch=4, seq_len=8)
