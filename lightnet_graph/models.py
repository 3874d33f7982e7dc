"""Built-in models, and loading a model from ``path/to/file.py:function``.

A model builder takes ``dtype``, ``batch``, ``hidden``, ``seq_len`` and
``seed`` (``None`` picks the model's default) and returns a :class:`Model`:
its graph, its scalar loss and a function that draws a batch of inputs.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import init, nn, ops
from .errors import ModelNotFoundError
from .graph import Graph, Tensor, mark_user_code

# Error messages and generated code point at the lines below that declare
# each op, as they would for a user's own model file.
mark_user_code(os.path.abspath(__file__))

FeedMaker = Callable[[np.random.Generator], dict[str, np.ndarray]]


@dataclass
class Model:
    """A declared model: its graph, scalar loss and an input generator."""

    graph: Graph
    loss: Tensor
    make_feeds: FeedMaker
    outputs: dict[str, Tensor] = field(default_factory=dict)


ModelBuilder = Callable[..., Model]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name`` for the command line."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        MODELS[name] = builder
        return builder

    return decorate


def load_model(spec: str, **options: Any) -> Model:
    """Build the model named ``spec``, a built-in name or ``file.py:function``.

    ``options`` (dtype, batch, hidden, seq_len, seed) are passed on to the
    builder when its signature accepts them.
    """
    if spec in MODELS:
        builder = MODELS[spec]
    elif ":" in spec:
        builder = _load_function(spec)
    else:
        raise ModelNotFoundError(
            f"unknown model {spec!r}; use a built-in model ({', '.join(sorted(MODELS))}) "
            "or path/to/file.py:function"
        )
    accepted = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    kwargs = {k: v for k, v in options.items() if takes_any or k in accepted}
    model = builder(**kwargs)
    if isinstance(model, Tensor):
        model = Model(model.graph, model, _random_feeds(model.graph))
    if not isinstance(model, Model):
        raise ModelNotFoundError(
            f"{spec!r} returned {type(model).__name__}; return a "
            "lightnet_graph.models.Model or the scalar loss Tensor"
        )
    return model


def _load_function(spec: str) -> ModelBuilder:
    path, _, function = spec.rpartition(":")
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"model file {path!r} not found (from {spec!r})")
    module_spec = importlib.util.spec_from_file_location(
        f"lightnet_user_model_{abs(hash(path))}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ModelNotFoundError(f"{path!r} has no function {function!r}")
    return builder


def _random_feeds(graph: Graph) -> FeedMaker:
    """Feeds for a bare loss: standard normal floats, zeros for integer inputs."""

    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        feeds = {}
        for x in graph.inputs:
            if x.dtype.kind == "f":
                feeds[x.name] = rng.standard_normal(x.shape).astype(x.dtype)
            else:
                feeds[x.name] = np.zeros(x.shape, x.dtype)
        return feeds

    return make


def _classification_feeds(
    features: int, classes: int, batch: int, dtype: Any
) -> FeedMaker:
    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "x": rng.standard_normal((batch, features)).astype(dtype),
            "labels": rng.integers(0, classes, batch),
        }

    return make


@register_model("mlp")
def mlp(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seed: int = 0,
    features: int = 64,
    classes: int = 10,
) -> Model:
    """x -> linear -> relu -> linear -> tanh -> linear -> softmax cross-entropy."""
    batch = 32 if batch is None else batch
    hidden = 64 if hidden is None else hidden
    g = Graph("mlp", dtype=dtype, seed=seed)
    x = g.input("x", (batch, features))
    labels = g.input("labels", (batch,), dtype="int64")
    w1 = g.parameter("fc1.weight", (hidden, features), init=init.he_normal)
    b1 = g.parameter("fc1.bias", (hidden,), init=init.normal(0.1))
    w2 = g.parameter("fc2.weight", (hidden, hidden), init=init.xavier_uniform)
    b2 = g.parameter("fc2.bias", (hidden,), init=init.normal(0.1))
    w3 = g.parameter("fc3.weight", (classes, hidden), init=init.xavier_uniform)
    b3 = g.parameter("fc3.bias", (classes,), init=init.normal(0.1))
    h1 = ops.relu(ops.linear(x, w1, b1))
    h2 = ops.tanh(ops.linear(h1, w2, b2))
    logits = ops.linear(h2, w3, b3)
    loss = ops.softmax_cross_entropy(logits, labels, "mean")
    return Model(
        g,
        loss,
        _classification_feeds(features, classes, batch, g.dtype),
        {"logits": logits},
    )


@register_model("mlp-bn")
def mlp_bn(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seed: int = 0,
    features: int = 64,
    classes: int = 10,
    momentum: float = 0.1,
) -> Model:
    """x -> linear -> batch norm (momentum 0.1) -> relu -> linear -> cross-entropy."""
    batch = 32 if batch is None else batch
    hidden = 64 if hidden is None else hidden
    g = Graph("mlp-bn", dtype=dtype, seed=seed)
    x = g.input("x", (batch, features))
    labels = g.input("labels", (batch,), dtype="int64")
    w1 = g.parameter("fc1.weight", (hidden, features), init=init.he_normal)
    b1 = g.parameter("fc1.bias", (hidden,))
    w2 = g.parameter("fc2.weight", (classes, hidden), init=init.xavier_uniform)
    b2 = g.parameter("fc2.bias", (classes,))
    h = nn.batch_norm(g, ops.linear(x, w1, b1), "bn1", momentum=momentum)
    logits = ops.linear(ops.relu(h), w2, b2)
    loss = ops.softmax_cross_entropy(logits, labels, "mean")
    return Model(
        g,
        loss,
        _classification_feeds(features, classes, batch, g.dtype),
        {"logits": logits},
    )


# The recurrent models register themselves on import.
from . import models_recurrent  # noqa: E402,F401
