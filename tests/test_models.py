"""Built-in models compile, train and hold only registered ops."""

from __future__ import annotations

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph.graph import OP
from lightnet_graph.models import MODELS, load_model
from lightnet_graph.ops import REGISTRY

SMALL = {"batch": 3, "hidden": 8, "seq_len": 4}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_graph_holds_only_registered_ops(name: str) -> None:
    model = load_model(name, dtype="float64", **SMALL)
    program = lg.compile(loss=model.loss)
    for stage in ("unrolled", "backward", "optimized"):
        graph = program.stages[stage]
        for node, data in graph.nx.nodes(data=True):
            if data["kind"] != OP:
                continue
            op = data["op"]
            assert REGISTRY.get(op.name) is type(op), f"{stage}: {data['name']} uses {op!r}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_runs_are_bit_identical(name: str) -> None:
    first = load_model(name, dtype="float32", **SMALL)
    second = load_model(name, dtype="float32", **SMALL)
    feeds = first.make_feeds(np.random.default_rng(3))
    a = lg.compile(loss=first.loss).run(feeds)
    b = lg.compile(loss=second.loss).run(feeds)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_mlp_trains_with_sgd() -> None:
    model = load_model("mlp", dtype="float64", batch=16, hidden=16)
    program = lg.compile(loss=model.loss)
    feeds = model.make_feeds(np.random.default_rng(0))
    losses = []
    for _ in range(50):
        values = program.run(feeds)
        losses.append(float(values["loss"]))
        params = program.get_parameters()
        program.set_parameters({k: v - 0.1 * values[f"grad/{k}"] for k, v in params.items()})
    assert losses[-1] < 0.5 * losses[0], losses


def test_batch_norm_model_updates_running_statistics() -> None:
    model = load_model("mlp-bn", dtype="float64", batch=8, hidden=4)
    program = lg.compile(loss=model.loss)
    feeds = model.make_feeds(np.random.default_rng(0))
    before = program.get_states()
    program.run(feeds)
    after = program.get_states()
    assert set(after) == {"bn1.running_mean", "bn1.running_var", "bn1.blend_mean",
                          "bn1.blend_var"}
    for name in after:
        assert not np.array_equal(before[name], after[name]), name
