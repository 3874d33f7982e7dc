"""Built-in models give the same losses, gradients and states on OpenCL as on NumPy.

Each model runs two training-step evaluations, so that states written by
the first (batch-norm statistics) feed the second, in float32 to rtol 1e-4
and in float64 to rtol 1e-10, per tensor. Optimizer steps, which update the
parameters on the device, must track NumPy's step for step.
"""

from __future__ import annotations

import numpy as np
import pytest
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph.gradcheck import compare
from lightnet_graph.models import load_model
from lightnet_graph.optim import SGD, Adam

import_pyopencl()

TOLERANCES = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-9)}
MODELS = ["mlp", "mlp-bn", "char-rnn", "skip-rnn", "char-gru", "char-lstm"]
SIZES = {"batch": 5, "hidden": 7, "seq_len": 6}


def _assert_match(actual: dict, expected: dict, dtype: str, what: str) -> None:
    rtol, atol = TOLERANCES[dtype]
    assert actual.keys() == expected.keys(), what
    for name, reference in expected.items():
        error, passed = compare(actual[name], reference, rtol, atol)
        assert passed, f"{what} {name}: relative error {error:.3g}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", MODELS)
def test_model_matches_numpy(name: str, dtype: str):
    model = load_model(name, dtype=dtype, **SIZES)
    reference = lg.compile(loss=model.loss)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    rng = np.random.default_rng(4)
    for step in range(2):
        feeds = model.make_feeds(rng)
        _assert_match(
            program.run(feeds), reference.run(feeds), dtype, f"{name} step {step}"
        )
        _assert_match(
            program.get_states(), reference.get_states(), dtype, f"{name} states"
        )


@pytest.mark.parametrize(
    ("name", "optimizer"),
    [("mlp-bn", lambda: SGD(0.1, momentum=0.9)), ("char-lstm", lambda: Adam(0.01))],
    ids=["mlp-bn-sgd", "char-lstm-adam"],
)
def test_optimizer_steps_match_numpy(name: str, optimizer):
    model = load_model(name, dtype="float64", **SIZES)
    reference = lg.compile(loss=model.loss, optimizer=optimizer())
    program = lg.compile(
        loss=model.loss, optimizer=optimizer(), backend=opencl_backend()
    )
    rng = np.random.default_rng(5)
    for step in range(3):
        feeds = model.make_feeds(rng)
        _assert_match(
            program.run(feeds), reference.run(feeds), "float64", f"step {step}"
        )
    _assert_match(
        program.get_parameters(), reference.get_parameters(), "float64", "params"
    )
    _assert_match(program.get_states(), reference.get_states(), "float64", "states")


def test_set_parameters_uploads_before_next_run():
    model = load_model("mlp", dtype="float64", batch=4, hidden=6)
    reference = lg.compile(loss=model.loss)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    changed = {k: v * 0.5 + 0.01 for k, v in reference.get_parameters().items()}
    reference.set_parameters(changed)
    program.set_parameters(changed)
    feeds = model.make_feeds(np.random.default_rng(6))
    _assert_match(
        program.run(feeds), reference.run(feeds), "float64", "after set_parameters"
    )


def test_parameter_changed_in_place_is_uploaded():
    model = load_model("mlp", dtype="float64", batch=4, hidden=6)
    reference = lg.compile(loss=model.loss)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    feeds = model.make_feeds(np.random.default_rng(7))
    program.run(feeds)
    for executable in (reference, program):
        executable.parameters["fc1.weight"][...] = 0.25
    _assert_match(
        program.run(feeds), reference.run(feeds), "float64", "after in-place change"
    )
