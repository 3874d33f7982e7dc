"""The autodiff pass: summed paths, broadcast operands, intermediate values, stages."""

import numpy as np
import pytest
from numeric_checks import (
    FLOAT64_ATOL,
    FLOAT64_RTOL,
    GRADIENT_RTOL,
    assert_close,
    assert_gradients_match,
    central_difference,
    compile_gradients,
    numeric_gradients,
    op_nodes,
    seed_for,
    weighted_sum,
)
from op_cases import CASES

import lightnet_graph as lg
from lightnet_graph.ops import REGISTRY

PATHS = {
    "tanh": lambda h: lg.tanh(h),
    "double": lambda h: h * 2.0,
    "exp": lambda h: lg.exp(h * 0.1),
}


def declare_product(name):
    graph = lg.Graph(name, dtype="float64")
    x = graph.input("x", (4, 3))
    w = graph.input("w", (3, 5))
    rng = np.random.default_rng(seed_for("three-paths"))
    feeds = {"x": rng.uniform(-1.0, 1.0, (4, 3)), "w": rng.uniform(-1.0, 1.0, (3, 5))}
    return x, w, feeds


@pytest.mark.parametrize("shared", [False, True], ids=["three-products", "one-product"])
def test_weight_used_three_times_sums_paths(shared):
    x, w, feeds = declare_product("combined")
    product = x @ w
    terms = [path(product if shared else x @ w) for path in PATHS.values()]
    combined = lg.sum(terms[0] + terms[1] + terms[2])
    gradient = compile_gradients(combined, [w], feeds)["w"]

    separate = np.zeros((3, 5))
    for name, path in PATHS.items():
        x_alone, w_alone, _ = declare_product(name)
        separate += compile_gradients(
            lg.sum(path(x_alone @ w_alone)), [w_alone], feeds
        )["w"]

    assert_close(
        gradient, separate, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL, name="grad/w"
    )
    assert_gradients_match(combined, [x, w], feeds)


BROADCAST_PAIRS = [
    ((3, 1), (1, 4)),
    ((5, 4), (4,)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((1,), (2, 3, 1)),
]


@pytest.mark.parametrize(
    "shape_a, shape_b",
    BROADCAST_PAIRS,
    ids=lambda shape: "x".join(map(str, shape)) or "scalar",
)
def test_broadcast_operand_gradient_has_operand_shape(shape_a, shape_b):
    graph = lg.Graph("broadcast", dtype="float64")
    a = graph.input("a", shape_a)
    b = graph.input("b", shape_b)
    rng = np.random.default_rng(seed_for(f"broadcast-{shape_a}-{shape_b}"))
    feeds = {"a": rng.uniform(-2.0, 2.0, shape_a), "b": rng.uniform(0.5, 2.0, shape_b)}
    y = a * b + a / b - lg.exp(a)
    loss = weighted_sum(y, seed_for("broadcast"))

    gradients = compile_gradients(loss, [a, b], feeds)

    assert gradients["a"].shape == shape_a
    assert gradients["b"].shape == shape_b
    assert_gradients_match(loss, [a, b], feeds)


def declare_chain(graph, rng):
    """Declare w2 and the rest of the chain after h, sum(sigmoid(h @ w2) * c)."""
    w2 = graph.input("w2", (5, 2))
    c = rng.standard_normal((4, 2))
    return w2, lambda h: lg.sum(lg.sigmoid(h @ w2) * c)


def test_intermediate_gradient_matches_finite_differences():
    rng = np.random.default_rng(seed_for("intermediate"))
    feeds = {
        "x": rng.uniform(-1.0, 1.0, (4, 3)),
        "w1": rng.uniform(-1.0, 1.0, (3, 5)),
        "w2": rng.uniform(-1.0, 1.0, (5, 2)),
    }
    chain = lg.Graph("chain", dtype="float64")
    x = chain.input("x", (4, 3))
    w1 = chain.input("w1", (3, 5))
    h = lg.tanh(x @ w1)
    w2, rest = declare_chain(chain, np.random.default_rng(seed_for("rest")))
    loss = rest(h)
    program = lg.compile({"h": h}, loss=loss, wrt=[h, w1])
    values = program.run(**feeds)

    # The second graph computes the same rest of the chain from h as an input,
    # so perturbing that input perturbs h in the middle of the first chain.
    tail = lg.Graph("tail", dtype="float64")
    h_input = tail.input("h", (4, 5))
    _, tail_rest = declare_chain(tail, np.random.default_rng(seed_for("rest")))
    tail_program = lg.compile(loss=tail_rest(h_input), wrt=[])

    def tail_loss(h_value):
        return tail_program.run(h=h_value, w2=feeds["w2"])["loss"]

    numeric = central_difference(tail_loss, values["h"])
    gradient = values[f"grad/{h.name}"]
    assert gradient.shape == (4, 5)
    assert_close(
        gradient, numeric, rtol=GRADIENT_RTOL, atol=FLOAT64_ATOL, name="grad/h"
    )
    # w1 comes before h in the chain, and asking for both keeps its gradient whole.
    numeric_w1 = numeric_gradients(loss, [w1], feeds)["w1"]
    assert_close(
        values["grad/w1"],
        numeric_w1,
        rtol=GRADIENT_RTOL,
        atol=FLOAT64_ATOL,
        name="grad/w1",
    )


def test_stop_gradient_blocks_only_its_path():
    graph = lg.Graph("stop_gradient", dtype="float64")
    x = graph.input("x", (3, 4))
    weights = np.random.default_rng(seed_for("stop")).standard_normal((3, 4))
    loss = lg.sum(x * lg.stop_gradient(x) * weights)
    value = np.random.default_rng(seed_for("stop-x")).uniform(-2.0, 2.0, (3, 4))

    gradient = compile_gradients(loss, [x], {"x": value})["x"]

    assert_close(gradient, value * weights, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def declare_model():
    """Declare a small classifier that uses most ops, with its loss and inputs."""
    graph = lg.Graph("model", dtype="float64")
    tokens = graph.input("tokens", (8,), dtype="int64")
    labels = graph.input("labels", (8,), dtype="int64")
    table = graph.input("table", (6, 4))
    w = graph.input("w", (5, 8))
    b = graph.input("b", (5,))
    gamma = graph.input("gamma", (5,))
    beta = graph.input("beta", (5,))
    mean = graph.input("mean", (5,))
    var = graph.input("var", (5,))

    embedded = lg.gather(table, tokens)
    features = lg.concat([embedded, lg.sqrt(lg.exp(embedded))], axis=1)
    hidden = lg.batch_norm(
        lg.linear(features, w, b), gamma, beta, mean, var, momentum=0.1
    )
    hidden = lg.leaky_relu(hidden) + lg.relu(hidden) * lg.sigmoid(hidden)
    pooled = lg.max(hidden, axis=1, keepdims=True) - lg.mean(hidden, axis=0)
    logits = (hidden - pooled).T.reshape((8, 5))[:, :3]
    probabilities = lg.softmax(logits)
    penalty = lg.sum(probabilities * probabilities) * 0.1
    loss = lg.softmax_cross_entropy(logits, labels, "mean") + penalty
    return loss, [table, w, b, gamma, beta, mean, var]


@pytest.mark.parametrize("stage", ["backward", "optimized"])
def test_backward_graph_uses_registered_ops(stage):
    loss, wrt = declare_model()
    program = lg.compile(loss=loss, wrt=wrt)
    names = {data["op"].name for data in op_nodes(program.stages[stage])}
    assert "batch_norm_grad" in names
    for data in op_nodes(program.stages[stage]):
        op = data["op"]
        assert type(op) is REGISTRY.get(op.name), (
            f"{data['name']}: {op!r} is not registered"
        )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_case_backward_graph_uses_registered_ops(case):
    tensors, _ = case.declare("float64")
    loss = weighted_sum(case.build(*tensors), seed_for(case.id))
    program = lg.compile(loss=loss, wrt=[t for t in tensors if t.dtype.kind == "f"])
    for stage in ("backward", "optimized"):
        for data in op_nodes(program.stages[stage]):
            op = data["op"]
            assert type(op) is REGISTRY.get(op.name), (
                f"{stage}: {op!r} is not registered"
            )
