"""Installation layout and backend discovery through entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lightnet_graph as lg
import lightnet_graph.backends.numpy as numpy_backend
from lightnet_graph.compiler import load_backend

ROOT = Path(__file__).resolve().parent.parent


def test_backends_import_as_subpackage() -> None:
    assert numpy_backend.NumpyBackend.name == "numpy"
    assert "lightnet_graph.backends" in numpy_backend.__name__


def test_numpy_backend_found_by_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="lightnet_graph.backends")}
    assert "numpy" in names


def test_wheel_maps_backends_into_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("lightnet_graph-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert not any(name.startswith("backends/") for name in names)
    assert "lightnet_graph/backends/numpy/codegen.py" in names
    # Every module of the source tree ships, so no subpackage is forgotten.
    sources = {
        "lightnet_graph/" + str(p.relative_to(ROOT / "lightnet_graph"))
        for p in (ROOT / "lightnet_graph").rglob("*.py")
    } | {
        "lightnet_graph/backends/" + str(p.relative_to(ROOT / "backends"))
        for p in (ROOT / "backends").rglob("*.py")
    }
    assert sources <= set(names), sorted(sources - set(names))
    assert top_level == {"lightnet_graph", "lightnet_graph-0.1.0.dist-info"}


def test_third_party_backend_found_by_entry_point(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A minimal installed distribution: a module and a dist-info folder
    # declaring it in the lightnet_graph.backends group.
    (tmp_path / "echo_backend.py").write_text(
        "from lightnet_graph.backends.numpy import NumpyBackend\n"
        "class EchoBackend(NumpyBackend):\n"
        "    name = 'echo'\n"
    )
    info = tmp_path / "echo_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lightnet_graph.backends]\necho = echo_backend:EchoBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = load_backend("echo")
    assert type(backend).__name__ == "EchoBackend"

    g = lg.Graph("model")
    x = g.input("x", (3,))
    program = lg.compile(lg.sum(x * 2.0), backend="echo")
    assert program.run(x=np.arange(3.0))["sum"] == pytest.approx(6.0)
