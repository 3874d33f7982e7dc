"""lightnet-graph inspect: kernels with launch counts, --out folders, formats, errors."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import networkx as nx
import pytest
from opencl_support import import_pyopencl, opencl_backend

from lightnet_graph.cli import main
from lightnet_graph.compiler import compile
from lightnet_graph.inspect import GRAPH_STAGES, stage_json
from lightnet_graph.models import load_model

LSTM = ["--hidden", "8", "--batch", "3", "--seq-len", "4"]
KERNEL_HEADER = re.compile(r"^// kernel (\S+): (\d+) launch(?:es)? per run$", re.M)


def _without_comments(source: str) -> list[str]:
    return [line for line in source.splitlines() if not line.lstrip().startswith("#")]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    status = main(["inspect", *args])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    return captured.out


def test_lstm_kernels_listed_once_with_launch_counts(capsys) -> None:
    backend = opencl_backend()
    output = run(
        capsys, "char-lstm", "--backend", "opencl", "--stage", "kernels", *LSTM
    )
    headers = KERNEL_HEADER.findall(output)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names))

    model = load_model("char-lstm", batch=3, hidden=8, seq_len=4)
    program = compile(loss=model.loss, backend=backend)
    assert sum(int(count) for _, count in headers) == len(program.schedule)
    assert set(names) == {launch.kernel for launch in program.schedule}
    assert f"{len(names)} distinct kernels, {len(program.schedule)} launches" in output
    for kernel in program.kernels:
        assert output.count(kernel.source) == 1, kernel.name


def test_lstm_kernel_headers_show_launch_sizes(capsys) -> None:
    opencl_backend()
    output = run(
        capsys, "char-lstm", "--backend", "opencl", "--stage", "kernels", *LSTM
    )
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if KERNEL_HEADER.match(line)]
    assert starts
    for start in starts:
        assert lines[start + 1].startswith("//   launch sizes: global "), lines[start]
        comments = []
        for line in lines[start + 1 :]:
            if not line.startswith("//"):
                break
            comments.append(line)
        assert any(line.startswith("//   computes ") for line in comments), lines[start]
        assert lines[start + len(comments) + 1].strip(), "the source follows the header"


def test_out_writes_numpy_stages(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mlp"
    output = run(capsys, "mlp", "--hidden", "4", "--batch", "2", "--out", str(out))
    names = {path.name for path in out.iterdir()}
    assert {"program.py", "memory.json", "kernels.txt", "profile.json"} <= names
    for stage in GRAPH_STAGES:
        assert {f"{stage}.txt", f"{stage}.dot", f"{stage}.json"} <= names
    assert f"wrote {out / 'program.py'}" in output

    program = compile(loss=load_model("mlp", batch=2, hidden=4).loss)
    # Gradient ops carry the line that called compile(), which differs here.
    written = (out / "program.py").read_text()
    assert _without_comments(written) == _without_comments(program.source)
    memory = json.loads((out / "memory.json").read_text())
    assert memory == stage_json(program, "memory")


def test_out_dot_files_parse_with_networkx(tmp_path: Path, capsys) -> None:
    run(capsys, "mlp-bn", "--hidden", "4", "--batch", "2", "--out", str(tmp_path))
    for stage in GRAPH_STAGES:
        document = json.loads((tmp_path / f"{stage}.json").read_text())
        graph = nx.nx_pydot.read_dot(tmp_path / f"{stage}.dot")
        values = {f"n{value['id']}" for value in document["values"]}
        assert values <= set(graph.nodes), stage
        labels = {graph.nodes[f"n{v['id']}"]["label"] for v in document["values"]}
        assert any("bn1.running_mean" in label for label in labels)


def test_out_kernels_cl_builds_in_fresh_context(tmp_path: Path, capsys) -> None:
    opencl_backend()
    cl = import_pyopencl()
    from lightnet_graph.backends.opencl import select_device

    run(capsys, "char-lstm", "--backend", "opencl", *LSTM, "--out", str(tmp_path))
    source = (tmp_path / "kernels.cl").read_text()
    schedule = json.loads((tmp_path / "schedule.json").read_text())

    context = cl.Context([select_device()])
    built = cl.Program(context, source).build()
    built_names = {kernel.function_name for kernel in built.all_kernels()}
    assert built_names == {launch["kernel"] for launch in schedule["launches"]}
    assert len(schedule["launches"]) == schedule["launches_per_run"]
    buffers = {buffer["name"] for buffer in schedule["buffers"]}
    for launch in schedule["launches"]:
        used = {arg["buffer"] for arg in launch["args"] if "buffer" in arg}
        assert used <= buffers, launch["kernel"]


def test_missing_dot_program_names_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    output = run(
        capsys, "mlp", "--hidden", "4", "--batch", "2", "--out", str(tmp_path / "o")
    )
    assert "graph.svg not written" in output
    assert "apt-get install graphviz" in output
    assert not (tmp_path / "o" / "graph.svg").exists()


def test_graph_svg_written_when_dot_is_installed(tmp_path: Path, capsys) -> None:
    output = run(capsys, "mlp", "--hidden", "4", "--batch", "2", "--out", str(tmp_path))
    svg = tmp_path / "graph.svg"
    if shutil.which("dot") is None:
        # Without Graphviz, the output explains why graph.svg is missing.
        assert "apt-get install graphviz" in output
        assert not svg.exists()
    else:
        assert f"wrote {svg}" in output
        root = ElementTree.parse(svg).getroot()
        assert root.tag.endswith("svg")
        assert "fc1.weight" in svg.read_text()


def test_json_format_prints_the_document(capsys) -> None:
    output = run(
        capsys,
        "mlp",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--stage",
        "memory",
        "--format",
        "json",
    )
    document = json.loads(output)
    assert document["stage"] == "memory"
    assert document["peak_bytes"] > 0


def test_dot_format_prints_a_graph(tmp_path: Path, capsys) -> None:
    output = run(
        capsys,
        "mlp",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--stage",
        "declared",
        "--format",
        "dot",
    )
    path = tmp_path / "declared.dot"
    path.write_text(output)
    assert nx.nx_pydot.read_dot(path).number_of_nodes() == 14


def test_dot_format_of_memory_is_rejected(capsys) -> None:
    status = main(["inspect", "mlp", "--stage", "memory", "--format", "dot"])
    captured = capsys.readouterr()
    assert status == 2
    assert "graph stages only" in captured.err


def test_profile_stage_prints_estimated_rates(capsys) -> None:
    output = run(
        capsys,
        "mlp",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--stage",
        "profile",
        "--repeat",
        "2",
    )
    assert "2 runs after one warm-up run" in output
    assert "GFLOP/s and GB/s are estimates" in output
    assert re.search(r"^linear\s+3\s", output, re.M), output
