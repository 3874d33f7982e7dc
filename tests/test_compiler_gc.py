"""compile() pauses Python's cyclic garbage collector and restores it."""

from __future__ import annotations

import gc

import pytest

import lightnet_graph as lg
import lightnet_graph.compiler as compiler


def _model() -> lg.Tensor:
    g = lg.Graph("gc", dtype="float64")
    x = g.input("x", (2, 3))
    return lg.sum(lg.tanh(x))


@pytest.fixture
def restore_gc():
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_collector_is_off_while_passes_run(monkeypatch, restore_gc):
    seen = []
    simplify = compiler.simplify

    def recording_simplify(graph, nodes):
        seen.append(gc.isenabled())
        return simplify(graph, nodes)

    monkeypatch.setattr(compiler, "simplify", recording_simplify)
    gc.enable()
    lg.compile(_model())
    assert seen == [False]
    assert gc.isenabled()


def test_disabled_collector_stays_disabled(restore_gc):
    gc.disable()
    lg.compile(_model())
    assert not gc.isenabled()


def test_collector_restored_after_compile_error(restore_gc):
    gc.enable()
    with pytest.raises(lg.GraphError):
        lg.compile()
    assert gc.isenabled()
