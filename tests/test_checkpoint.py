"""Checkpoints round-trip, and bad ones fail with a message naming the file."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import optim
from lightnet_graph.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lightnet_graph.models import load_model


def _program(hidden: int = 4) -> lg.Executable:
    model = load_model("mlp", dtype="float64", batch=4, hidden=hidden)
    program = lg.compile(loss=model.loss, optimizer=optim.Adam(0.01))
    program.run(model.make_feeds(np.random.default_rng(0)))
    return program


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    saved = _program()
    path = tmp_path / "step.npz"
    save_checkpoint(path, saved, {"step": 1, "note": "first"})
    loaded = _program()
    loaded.set_parameters({k: v * 0 for k, v in loaded.get_parameters().items()})
    metadata = load_checkpoint(path, loaded)
    assert metadata == {"step": 1, "note": "first"}
    for name, value in saved.get_parameters().items():
        assert np.array_equal(loaded.get_parameters()[name], value), name
    for name, value in saved.get_states().items():
        assert np.array_equal(loaded.get_states()[name], value), name
    assert not list(tmp_path.glob(".checkpoint-*"))


def test_truncated_checkpoint_named(tmp_path: Path) -> None:
    path = tmp_path / "step.npz"
    save_checkpoint(path, _program())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"step\.npz' is truncated or corrupt"):
        load_checkpoint(path, _program())


def test_checkpoint_of_other_model_names_difference(tmp_path: Path) -> None:
    path = tmp_path / "step.npz"
    save_checkpoint(path, _program(hidden=4))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, _program(hidden=5))
    message = str(caught.value)
    assert "belongs to another model" in message
    assert "'fc1.weight' is float64[4, 64] there but float64[5, 64] here" in message


def test_tampered_checkpoint_detected(tmp_path: Path) -> None:
    path = tmp_path / "step.npz"
    program = _program()
    save_checkpoint(path, program)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["param/fc1.bias"] = arrays["param/fc1.bias"] + 1.0
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="does not match its SHA-256 digest"):
        load_checkpoint(path, program)


def test_foreign_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(CheckpointError, match="is not a lightnet-graph checkpoint"):
        load_checkpoint(path, _program())


def test_npy_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.npy"
    np.save(path, np.ones(3))
    with pytest.raises(CheckpointError, match="is not a lightnet-graph checkpoint"):
        load_checkpoint(path, _program())


def test_corrupt_checkpoint_file_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "step.npz"
    save_checkpoint(path, _program())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    program = _program()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path, program)
        # A file object left open warns when it is collected.
        gc.collect()
    unclosed = [w.message for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


def test_checkpoint_mode_follows_umask(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "step.npz", _program())
    finally:
        os.umask(previous)
    assert (tmp_path / "step.npz").stat().st_mode & 0o777 == 0o644
