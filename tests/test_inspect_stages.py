"""Every inspection stage of every built-in model, on both backends, in every format."""

from __future__ import annotations

import functools
import json
import re

import networkx as nx
import numpy as np
import pytest
from opencl_support import opencl_backend

from lightnet_graph import LightnetError
from lightnet_graph.compiler import compile
from lightnet_graph.inspect import (
    GRAPH_STAGES,
    STAGES,
    stage_dot,
    stage_json,
    stage_text,
)
from lightnet_graph.models import MODELS, load_model

# T = 1 keeps the DOT files small: networkx reads them through pydot's parser,
# which takes about a second per 20 kB.
SIZES = {"batch": 3, "hidden": 8, "seq_len": 1}
BACKENDS = ["numpy", "opencl"]
RECURRENT = {"char-rnn", "skip-rnn", "char-gru", "char-lstm"}


@functools.cache
def _compiled(model_name: str, backend_name: str, seq_len: int):
    model = load_model(model_name, **{**SIZES, "seq_len": seq_len})
    backend = opencl_backend() if backend_name == "opencl" else backend_name
    program = compile(loss=model.loss, backend=backend)
    return program, model.make_feeds(np.random.default_rng(0))


def compiled(model_name: str, backend_name: str, seq_len: int = SIZES["seq_len"]):
    if backend_name == "opencl":
        opencl_backend()  # skips here, not inside the cache
    return _compiled(model_name, backend_name, seq_len)


# -- the documented JSON structure ----------------------------------------------------


def check_value(value: dict, full: bool) -> None:
    keys = {"id", "name", "kind", "op", "attrs", "shape", "dtype", "inputs", "location"}
    if full:
        keys |= {"section", "step"}
    assert set(value) == keys
    assert isinstance(value["id"], int)
    assert isinstance(value["name"], str)
    assert value["kind"] in ("input", "parameter", "state", "constant", "op")
    assert (value["op"] is None) == (value["kind"] != "op")
    assert isinstance(value["attrs"], dict)
    assert all(isinstance(v, str) for v in value["attrs"].values())
    assert all(isinstance(d, int) for d in value["shape"])
    assert value["dtype"] in ("float32", "float64", "int32", "int64")
    assert all(isinstance(name, str) for name in value["inputs"])
    location = value["location"]
    assert location is None or re.fullmatch(r"[^/\\]+:\d+", location)
    if full:
        assert isinstance(value["section"], str)
        assert value["step"] is None or isinstance(value["step"], int)


def check_graph_document(document: dict, stage: str, recurrent: bool) -> None:
    assert set(document) == {
        "format",
        "version",
        "stage",
        "graph",
        "backend",
        "values",
        "outputs",
        "updates",
        "recurrences",
    }
    names = [value["name"] for value in document["values"]]
    assert len(names) == len(set(names))
    position = {name: index for index, name in enumerate(names)}
    for index, value in enumerate(document["values"]):
        check_value(value, full=True)
        # Topological order: every input comes earlier.
        assert all(position[name] < index for name in value["inputs"])
    assert set(document["outputs"].values()) <= set(names)
    assert set(document["updates"]) <= set(names)
    assert set(document["updates"].values()) <= set(names)
    if stage == "declared" and recurrent:
        assert len(document["recurrences"]) == 1
    else:
        assert document["recurrences"] == []
    for step in document["recurrences"]:
        assert set(step) == {"name", "T", "inputs", "values", "returns"}
        assert step["T"] == SIZES["seq_len"]
        step_names = {value["name"] for value in step["values"]}
        assert set(step["inputs"]) <= step_names
        assert set(step["returns"].values()) <= step_names
        assert "y" in step["returns"]
        for value in step["values"]:
            check_value(value, full=False)


def check_kernels_document(document: dict, backend: str) -> None:
    assert set(document) == {
        "format",
        "version",
        "stage",
        "graph",
        "backend",
        "device",
        "launches_per_run",
        "kernels",
    }
    kernels = document["kernels"]
    names = [kernel["name"] for kernel in kernels]
    assert len(names) == len(set(names))
    assert sum(k["launches"] for k in kernels) == document["launches_per_run"]
    for kernel in kernels:
        assert set(kernel) == {"name", "launches", "launch_sizes", "nodes", "source"}
        assert kernel["launches"] >= 1
        assert kernel["nodes"]
        assert isinstance(kernel["source"], str)
        if backend == "numpy":
            assert kernel["launch_sizes"] == []
            continue
        assert (
            sum(size["launches"] for size in kernel["launch_sizes"])
            == kernel["launches"]
        )
        for size in kernel["launch_sizes"]:
            assert set(size) == {"global", "local", "launches"}
            assert all(isinstance(n, int) for n in size["global"])
            assert size["local"] is None or len(size["local"]) == len(size["global"])


def check_memory_document(document: dict) -> None:
    assert set(document) == {
        "format",
        "version",
        "stage",
        "graph",
        "backend",
        "peak_bytes",
        "peak_bytes_without_reuse",
        "buffers",
    }
    buffers = document["buffers"]
    assert document["peak_bytes"] == sum(b["nbytes"] for b in buffers)
    assert document["peak_bytes"] <= document["peak_bytes_without_reuse"]
    for buffer in buffers:
        assert set(buffer) == {"name", "shape", "dtype", "nbytes", "values"}
        assert buffer["nbytes"] >= 0
        assert all(isinstance(name, str) for name in buffer["values"])


def check_profile_document(document: dict, runs: int) -> None:
    assert set(document) == {
        "format",
        "version",
        "stage",
        "graph",
        "backend",
        "runs",
        "timing",
        "estimates",
        "total_s",
        "rows",
    }
    assert document["runs"] == runs
    assert "estimated" in document["estimates"]
    rows = document["rows"]
    assert rows
    totals = [row["total_s"] for row in rows]
    assert totals == sorted(totals, reverse=True)
    for row in rows:
        assert set(row) == {
            "name",
            "launches",
            "total_s",
            "mean_s",
            "flops",
            "bytes",
            "gflops_per_s",
            "gb_per_s",
        }
        assert row["launches"] >= 1
        assert row["mean_s"] == pytest.approx(row["total_s"] / (row["launches"] * runs))
        assert row["flops"] >= 0
        assert row["bytes"] >= 0
    assert sum(row["flops"] for row in rows) > 0


# -- every stage, model, backend and format ---------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_graph_stages_in_every_format(model: str, backend: str, tmp_path) -> None:
    program, _ = compiled(model, backend)
    for stage in GRAPH_STAGES:
        document = stage_json(program, stage)
        json.dumps(document)
        assert document["format"] == "lightnet-graph-inspect"
        assert document["version"] == 1
        assert document["stage"] == stage
        assert document["backend"] == backend
        check_graph_document(document, stage, model in RECURRENT)

        text = stage_text(program, stage)
        for value in document["values"]:
            assert re.search(rf"^ +{re.escape(value['name'])} ", text, re.M), value

        path = tmp_path / f"{stage}.dot"
        path.write_text(stage_dot(program, stage))
        parsed = nx.nx_pydot.read_dot(path)
        steps = sum(len(step["values"]) for step in document["recurrences"])
        assert parsed.number_of_nodes() == len(document["values"]) + steps
        operand_edges = sum(len(value["inputs"]) for value in document["values"])
        assert parsed.number_of_edges() >= operand_edges


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_program_stages_in_text_and_json(model: str, backend: str) -> None:
    program, feeds = compiled(model, backend)
    kernels = stage_json(program, "kernels")
    check_kernels_document(kernels, backend)
    text = stage_text(program, "kernels")
    for kernel in kernels["kernels"]:
        assert text.count(f" kernel {kernel['name']}: ") == 1

    memory = stage_json(program, "memory")
    check_memory_document(memory)
    assert f"{memory['peak_bytes']:,} bytes" in stage_text(program, "memory")

    profile = stage_json(program, "profile", feeds=feeds, repeat=2)
    check_profile_document(profile, runs=2)
    rows = {row["name"] for row in profile["rows"]}
    if backend == "opencl":
        assert rows == {kernel["name"] for kernel in kernels["kernels"]}
    else:
        # The NumPy backend rewrites its copy of the optimized graph
        # (module.graph), so its statements may use ops the stage lacks.
        lowered = program.module.graph.nx.nodes(data="op")
        ops = {op.name for _, op in lowered if op is not None}
        assert rows <= ops
    assert "estimates" in stage_text(program, "profile", feeds=feeds, repeat=1)


def test_declared_stage_folds_the_recurrence() -> None:
    program, _ = compiled("char-lstm", "numpy", seq_len=2)
    text = stage_text(program, "declared")
    assert text.count("step function 'lstm', traced once and unrolled T = 2 times") == 1
    assert "@1" not in text
    unrolled = stage_text(program, "unrolled")
    assert "  step 1\n" in unrolled
    assert "lstm.h@1" in unrolled


def test_backward_stage_separates_added_values() -> None:
    program, _ = compiled("mlp", "numpy")
    document = stage_json(program, "backward")
    sections = {value["name"]: value["section"] for value in document["values"]}
    gradient = document["outputs"]["grad/fc1.weight"]
    assert sections[gradient].startswith("added after unrolling")
    assert sections["x"] == "inputs, parameters and states"
    assert re.fullmatch(r"models\.py:\d+", sections[document["outputs"]["loss"]])


def test_numpy_kernel_is_the_generated_module() -> None:
    program, _ = compiled("mlp", "numpy")
    (kernel,) = stage_json(program, "kernels")["kernels"]
    assert kernel["source"] == program.source
    assert program.source in stage_text(program, "kernels")


def test_numpy_profile_times_every_statement() -> None:
    program, feeds = compiled("mlp", "numpy")
    document = stage_json(program, "profile", feeds=feeds, repeat=1)
    statements = sum(row["launches"] for row in document["rows"])
    assert statements == len(program.module.line_nodes)
    assert "NumPy statement" in document["timing"]
    matmul = next(row for row in document["rows"] if row["name"] == "linear")
    # fc1, fc2, fc3 on 3 rows: 2*3*64*8 + 2*3*8*8 + 2*3*8*10 plus one add per output.
    assert matmul["flops"] == 2 * 3 * (64 * 8 + 8 * 8 + 8 * 10) + 3 * (8 + 8 + 10)


def test_numpy_profile_leaves_states_unchanged() -> None:
    program, feeds = compiled("mlp-bn", "numpy")
    before = program.get_states()
    stage_json(program, "profile", feeds=feeds, repeat=1)
    after = program.get_states()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: stage_text(p, "lowered"), "stage 'lowered' is invalid"),
        (lambda p: stage_dot(p, "memory"), "graph stages only"),
        (lambda p: stage_text(p, "profile"), "needs feeds"),
    ],
)
def test_invalid_requests_are_rejected(call, message: str) -> None:
    program, _ = compiled("mlp", "numpy")
    with pytest.raises(LightnetError, match=message):
        call(program)


def test_stage_names_follow_the_pipeline() -> None:
    assert STAGES == (
        "declared",
        "unrolled",
        "backward",
        "optimized",
        "kernels",
        "memory",
        "profile",
    )
