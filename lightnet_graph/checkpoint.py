"""Checkpoints: parameters, states and training metadata in one .npz file.

A checkpoint holds a format version, the model's signature (every parameter
and state with its shape and dtype), a SHA-256 digest of the arrays, and a
JSON metadata record. It is written to a temporary file in the same folder
and renamed over the target, so a crash mid-write leaves the previous
checkpoint intact, and it is loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import LightnetError
from .executable import Executable

FORMAT_VERSION = 1
_META_KEY = "__lightnet_meta__"


class CheckpointError(LightnetError, ValueError):
    """A checkpoint is truncated, tampered with, or belongs to another model."""


def signature(program: Executable) -> dict[str, list]:
    """Every parameter and state of ``program``: name -> [kind, shape, dtype]."""
    entries = {}
    for kind, values in (("parameter", program.parameters), ("state", program.states)):
        for name, value in values.items():
            entries[name] = [kind, list(value.shape), value.dtype.name]
    return dict(sorted(entries.items()))


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(name.encode())
        sha.update(array.dtype.str.encode())
        sha.update(str(array.shape).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    program: Executable,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``program``'s parameters and states and ``metadata`` (JSON) to ``path``."""
    path = os.fspath(path)
    arrays = {f"param/{k}": v for k, v in program.get_parameters().items()}
    arrays.update({f"state/{k}": v for k, v in program.get_states().items()})
    header = {
        "format_version": FORMAT_VERSION,
        "signature": signature(program),
        "sha256": _digest(arrays),
        "metadata": dict(metadata or {}),
    }
    arrays[_META_KEY] = np.array(json.dumps(header))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=folder, prefix=".checkpoint-", suffix=".tmp", delete=False
    )
    try:
        # NamedTemporaryFile creates the file 0600; give the checkpoint the
        # mode an ordinary file gets under the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        with handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
        raise


def read_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return (header, arrays) of a checkpoint after checking its integrity."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} not found")
    # np.load (NumPy 2.4) leaves a file it opened itself open when the zip is
    # corrupt, so the file is opened here. A .npy file loads as a plain
    # array, which has no header and so is no checkpoint.
    try:
        with open(path, "rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            arrays = {}
            if isinstance(archive, np.lib.npyio.NpzFile):
                with archive:
                    arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path!r} is truncated or corrupt ({error}); it cannot be loaded"
        ) from None
    if _META_KEY not in arrays:
        raise CheckpointError(
            f"{path!r} is not a lightnet-graph checkpoint (no header)"
        )
    try:
        header = json.loads(str(arrays.pop(_META_KEY)))
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path!r} has an unreadable header") from None
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format version {version}; this lightnet-graph "
            f"reads version {FORMAT_VERSION}"
        )
    if _digest(arrays) != header.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path!r} does not match its SHA-256 digest: its arrays were "
            "changed after it was written"
        )
    return header, arrays


def load_checkpoint(
    path: str | os.PathLike[str], program: Executable
) -> dict[str, Any]:
    """Load parameters and states into ``program``; return the metadata.

    Raises CheckpointError naming what differs when the checkpoint was
    written by another model.
    """
    header, arrays = read_checkpoint(path)
    expected = signature(program)
    found = header.get("signature", {})
    if found != expected:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} belongs to another model: "
            f"{describe_difference(found, expected)}"
        )
    program.set_parameters(
        {k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")}
    )
    program.set_states(
        {k[len("state/") :]: v for k, v in arrays.items() if k.startswith("state/")}
    )
    return header.get("metadata", {})


def describe_difference(found: Mapping[str, list], expected: Mapping[str, list]) -> str:
    """Name the first few values that differ between two signatures."""
    notes = []
    for name in sorted(set(expected) - set(found)):
        notes.append(f"{name!r} is missing")
    for name in sorted(set(found) - set(expected)):
        notes.append(f"{name!r} is not in this model")
    for name in sorted(set(found) & set(expected)):
        if found[name] != expected[name]:
            kind, shape, dtype = found[name]
            _, want_shape, want_dtype = expected[name]
            notes.append(
                f"{name!r} is {dtype}{shape} there but {want_dtype}{want_shape} here"
            )
    shown = "; ".join(notes[:4])
    more = f"; and {len(notes) - 4} more" if len(notes) > 4 else ""
    return shown + more
