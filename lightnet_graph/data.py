"""Text corpora for character language models, and their batches.

The default corpus ships with every CPython install: the Python
documentation topics in the standard-library module ``pydoc_data.topics``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from .errors import LightnetError

logger = logging.getLogger(__name__)


class DataError(LightnetError, ValueError):
    """A data file is missing, empty, binary or not UTF-8 text."""


def default_corpus() -> str:
    """Return the text of pydoc_data.topics, topics joined in sorted key order."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file, raising DataError that names the file and the problem."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"data file {path!r} not found") from None
    except OSError as error:
        raise DataError(
            f"data file {path!r} cannot be read: {error.strerror}"
        ) from None
    if not raw.strip():
        raise DataError(f"data file {path!r} is empty; give a UTF-8 text file")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise DataError(
            f"data file {path!r} looks binary (a NUL byte at offset {offset}); "
            "give a UTF-8 text file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"data file {path!r} is not UTF-8 text: byte 0x{raw[error.start]:02x} at "
            f"offset {error.start} is invalid; convert it with iconv -t UTF-8"
        ) from None


@dataclass(frozen=True)
class Vocabulary:
    """The characters of a training text, sorted; ids index ``chars``."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Map text to ids; characters outside the vocabulary are dropped."""
        index = {c: i for i, c in enumerate(self.chars)}
        ids = [index[c] for c in text if c in index]
        dropped = len(text) - len(ids)
        if dropped:
            logger.info("dropped %d characters that are not in the vocabulary", dropped)
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split_text(text: str, validation_fraction: float = 0.1) -> tuple[str, str]:
    """Split text into (training, validation): the last fraction is validation."""
    cut = int(len(text) * (1.0 - validation_fraction))
    return text[:cut], text[cut:]


class CharBatches:
    """Consecutive (T, batch) windows of ``batch`` parallel streams of a text.

    The text is cut into ``batch`` equal streams, so window i+1 continues
    window i in every stream and a recurrent state can be carried between
    them (truncated back-propagation through time). Inputs are ids at
    positions p, targets the ids at p + 1. The last partial window is
    dropped.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int) -> None:
        usable = len(ids) - 1
        self.stream_length = usable // batch if batch > 0 else 0
        self.windows = self.stream_length // seq_len if seq_len > 0 else 0
        if self.windows < 1:
            need = batch * seq_len + 1
            raise DataError(
                f"the text has {len(ids)} characters, fewer than one batch of "
                f"{batch} x {seq_len} needs ({need}); use a longer text or a smaller "
                "--batch or --seq-len"
            )
        self.ids = ids
        self.batch = batch
        self.seq_len = seq_len
        starts = np.arange(batch) * self.stream_length
        self._offsets = starts[None, :] + np.arange(seq_len)[:, None]

    def __len__(self) -> int:
        return self.windows

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (inputs, targets), each (T, batch), of window ``index`` mod len."""
        base = (index % self.windows) * self.seq_len
        positions = self._offsets + base
        return self.ids[positions], self.ids[positions + 1]
