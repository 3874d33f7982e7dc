"""Golden files: the generated source of a small MLP and one LSTM step stays put.

tests/golden_programs.py documents how to regenerate them after an intended change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import golden_programs
import pytest
from lightnet_graph.backends.opencl.device import profile_of
from lightnet_graph.backends.opencl.kernels import pointwise
from lightnet_graph.backends.opencl.listing import kernel_infos, plan_listing
from opencl_support import import_pyopencl, opencl_backend

from lightnet_graph.inspect import kernels_cl, schedule_json, source_files
from lightnet_graph.ops.elementwise import Tanh

OPENCL_FILES = {
    f"lstm-step/{backend}/{name}"
    for backend in ("opencl-gpu", "opencl-cpu")
    for name in ("kernels.cl", "schedule.json")
}


def test_generated_source_matches_golden_files() -> None:
    assert golden_programs.differences(golden_programs.generate()) == []


def test_golden_files_cover_both_backends() -> None:
    names = set(golden_programs.generate())
    assert "mlp/numpy/program.py" in names
    assert "lstm-step/numpy/program.py" in names
    assert OPENCL_FILES <= names


def test_changed_numpy_template_fails_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def changed(self, args, out):
        return f"np.tanh({args[0]}, out={out}) * 1"

    monkeypatch.setattr(Tanh, "numpy", changed)
    found = golden_programs.differences(golden_programs.generate())
    assert found == ["lstm-step/numpy/program.py: differs from the generated text"]


def test_changed_opencl_template_fails_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(pointwise._FUNCTIONS, "tanh", "1.001f * tanh")
    found = golden_programs.differences(golden_programs.generate())
    assert {line.split(":")[0] for line in found} == OPENCL_FILES


def test_missing_and_extra_golden_files_are_reported(tmp_path: Path) -> None:
    files = {"a/program.py": "x = 1\n", "b/kernels.cl": "// b\n"}
    golden_programs.write({"a/program.py": "x = 1\n", "c/old.cl": "// c\n"}, tmp_path)
    assert golden_programs.differences(files, tmp_path) == [
        "b/kernels.cl: missing",
        "c/old.cl: no longer generated",
    ]


def test_check_command_passes_on_checked_in_files() -> None:
    script = Path(golden_programs.__file__)
    result = subprocess.run(
        [sys.executable, str(script), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(golden_programs.PROGRAMS))
def test_planned_listing_matches_compiled_opencl_program(name: str) -> None:
    """The golden files' way of planning equals what a device compiles."""
    backend = opencl_backend()
    build = golden_programs.PROGRAMS[name]
    compiled = build(backend)
    reference = build("numpy")
    planned = plan_listing(
        reference.graph, reference.outputs, profile_of(compiled.device)
    )
    assert source_files(compiled) == {
        "kernels.cl": kernels_cl(planned),
        "schedule.json": schedule_json(planned),
    }
    assert list(planned.kernels) == compiled.kernels
    assert kernel_infos(compiled._schedule) == compiled.kernels


def test_golden_kernels_build_on_the_device() -> None:
    opencl_backend()
    cl = import_pyopencl()
    from lightnet_graph.backends.opencl import select_device

    context = cl.Context([select_device()])
    paths = sorted(golden_programs.GOLDEN.rglob("kernels.cl"))
    assert len(paths) == 4
    for path in paths:
        text = path.read_text()
        built = cl.Program(context, text).build()
        assert len(built.all_kernels()) == text.count("\n__kernel "), path
