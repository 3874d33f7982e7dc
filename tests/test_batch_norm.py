"""Gradients and values of batch_norm for momentum 0 and 0.1 at batch sizes 1, 2 and 64."""

import numpy as np
import pytest
from numeric_checks import (
    assert_close,
    assert_gradients_match,
    seed_for,
    tolerances,
    weighted_sum,
)

import lightnet_graph as lg

OPERANDS = ("x", "gamma", "beta", "mean", "var")
# (N, C) with N = 1, 2 and 64, and one sample with a spatial axis, where
# each feature still has 4 values to normalize.
SHAPES = [(1, 3), (2, 3), (64, 3), (1, 3, 4)]
# With N = 1 and m = 0 each value is its own batch mean, so the batch
# variance is 0 and s = sqrt(eps). eps = 1e-3 keeps 1 / s near 32 there, so
# a gradient rule that left a term in 1 / s, such as gamma * dy / s, would
# be far from the zero that finite differences give.
EPS = 1e-3


def declare(shape, dtype="float64", **settings):
    """Declare batch_norm over new inputs, draw their values, and return (inputs, feeds, y)."""
    graph = lg.Graph("batch_norm", dtype=dtype)
    features = (shape[1],)
    rng = np.random.default_rng(seed_for(f"batch_norm-{shape}-{settings}"))
    feeds = {
        "x": rng.normal(0.5, 1.5, shape),
        "gamma": rng.choice([-1.0, 1.0], features) * rng.uniform(0.5, 2.0, features),
        "beta": rng.uniform(-1.0, 1.0, features),
        "mean": rng.uniform(-1.0, 1.0, features),
        "var": rng.uniform(0.5, 2.0, features),
    }
    feeds = {name: value.astype(dtype) for name, value in feeds.items()}
    inputs = [graph.input(name, feeds[name].shape) for name in OPERANDS]
    return inputs, feeds, lg.batch_norm(*inputs, **settings)


def feature_view(per_feature, ndim):
    """Reshape a (C,) array to broadcast along axis 1 of an ndim-axis value."""
    return per_feature.reshape((1, -1) + (1,) * (ndim - 2))


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("momentum", [0.0, 0.1])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_batch_norm_gradient_matches_finite_differences(shape, momentum, training):
    inputs, feeds, y = declare(shape, momentum=momentum, eps=EPS, training=training)
    loss = weighted_sum(y, seed_for(f"{shape}-{momentum}-{training}"))
    assert_gradients_match(loss, inputs, feeds)


def test_batch_norm_single_sample_outputs_beta():
    # Each value is its own batch mean, so d = x - mu = 0, y = beta, and only
    # beta has a nonzero gradient.
    inputs, feeds, y = declare((1, 3), momentum=0.0, eps=EPS, training=True)
    weights = np.array([[0.5, -2.0, 1.5]])
    program = lg.compile({"y": y}, loss=lg.sum(y * weights), wrt=inputs)
    values = program.run(**feeds)

    assert values["y"].tolist() == [feeds["beta"].tolist()]
    for name in ("x", "gamma", "mean", "var"):
        assert np.all(values[f"grad/{name}"] == 0), (
            f"grad/{name} = {values[f'grad/{name}']}"
        )
    assert values["grad/beta"].tolist() == weights[0].tolist()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "shape", [(2, 3), (64, 3), (5, 3, 4)], ids=["2x3", "64x3", "5x3x4"]
)
def test_batch_norm_m0_uses_batch_statistics(shape, dtype):
    _, feeds, y = declare(shape, dtype, momentum=0.0, eps=EPS, training=True)
    values = lg.compile({"y": y}).run(**feeds)

    x = feeds["x"].astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean = x.mean(axis=axes, keepdims=True)
    biased_var = ((x - batch_mean) ** 2).mean(axis=axes, keepdims=True)
    gamma = feature_view(feeds["gamma"].astype(np.float64), x.ndim)
    beta = feature_view(feeds["beta"].astype(np.float64), x.ndim)
    expected = (x - batch_mean) / np.sqrt(biased_var + EPS) * gamma + beta

    rtol, atol = tolerances(dtype)
    assert_close(values["y"], expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.0, 0.1])
@pytest.mark.parametrize(
    "shape", [(1, 3), (64, 3), (5, 3, 4)], ids=["1x3", "64x3", "5x3x4"]
)
def test_batch_norm_inference_uses_running_statistics(shape, momentum, dtype):
    _, feeds, y = declare(shape, dtype, momentum=momentum, eps=EPS, training=False)
    values = lg.compile({"y": y}).run(**feeds)

    x = feeds["x"].astype(np.float64)
    per_feature = {
        name: feature_view(feeds[name].astype(np.float64), x.ndim)
        for name in ("gamma", "beta", "mean", "var")
    }
    normalized = (x - per_feature["mean"]) / np.sqrt(per_feature["var"] + EPS)
    expected = normalized * per_feature["gamma"] + per_feature["beta"]

    rtol, atol = tolerances(dtype)
    assert_close(values["y"], expected, rtol=rtol, atol=atol)


def test_batch_norm_inference_normalizes_samples_independently():
    _, feeds, y = declare((4, 3), momentum=0.0, eps=EPS, training=False)
    program = lg.compile({"y": y})
    before = program.run(**feeds)["y"]

    changed = dict(feeds, x=feeds["x"].copy())
    changed["x"][1:] *= 10.0
    after = program.run(**changed)["y"]

    assert after[0].tolist() == before[0].tolist()


@pytest.mark.parametrize("momentum", [0.0, 0.1])
def test_second_derivative_with_x_dependent_dy(momentum):
    # The gradient flowing into batch_norm, tanh(x) * w, depends on x itself,
    # so the second derivative must not count that path twice.
    inputs, feeds, y = declare((4, 3), momentum=momentum, eps=EPS, training=True)
    x, gamma, beta, mean, var = inputs
    rng = np.random.default_rng(seed_for(f"second-derivative-{momentum}"))
    first_loss = lg.sum(y * lg.tanh(x) * rng.standard_normal((4, 3)))
    gradients = lg.grad(first_loss, [x, gamma, mean, var])
    second_loss = lg.add(
        weighted_sum(gradients[0], seed_for("x")),
        weighted_sum(gradients[1], seed_for("gamma")),
    )
    second_loss = lg.add(second_loss, weighted_sum(gradients[2], seed_for("mean")))
    second_loss = lg.add(second_loss, weighted_sum(gradients[3], seed_for("var")))
    assert_gradients_match(second_loss, inputs, feeds)
