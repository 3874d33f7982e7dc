"""Optimizers compiled into the training step, step for step against PyTorch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import optim
from lightnet_graph.models import load_model

CASES: dict[str, tuple[Callable[[], optim.Optimizer], Callable, float | None]] = {
    "sgd-momentum": (lambda: optim.SGD(0.1, momentum=0.9, weight_decay=0.01),
                     lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                     None),
    "adam-clipped": (lambda: optim.Adam(0.01, clip_norm=0.05),
                     lambda torch, p: torch.optim.Adam(p, lr=0.01), 0.05),
    "adamw": (lambda: optim.Adam(0.01, weight_decay=0.1, decoupled=True),
              lambda torch, p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1), None),
    "rmsprop": (lambda: optim.RMSProp(0.01, weight_decay=0.01),
                lambda torch, p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.01), None),
    "adagrad": (lambda: optim.Adagrad(0.1, lr_decay=0.01),
                lambda torch, p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01), None),
}


def _torch_mlp_loss(torch, params, x, labels):
    h = torch.relu(x @ params["fc1.weight"].T + params["fc1.bias"])
    h = torch.tanh(h @ params["fc2.weight"].T + params["fc2.bias"])
    logits = h @ params["fc3.weight"].T + params["fc3.bias"]
    return torch.nn.functional.cross_entropy(logits, labels)


@pytest.mark.oracle
@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_torch(case: str) -> None:
    torch = pytest.importorskip("torch")
    make_ours, make_theirs, clip = CASES[case]
    model = load_model("mlp", dtype="float64", batch=8, hidden=6)
    program = lg.compile(loss=model.loss, optimizer=make_ours())
    params = {k: torch.tensor(v, requires_grad=True) for k, v in program.get_parameters().items()}
    theirs = make_theirs(torch, list(params.values()))
    rng = np.random.default_rng(0)
    clipped_steps = 0
    for step in range(8):
        feeds = model.make_feeds(rng)
        ours = float(program.run(feeds)["loss"])
        loss = _torch_mlp_loss(torch, params, torch.tensor(feeds["x"]),
                               torch.tensor(feeds["labels"]))
        theirs.zero_grad()
        loss.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
            clipped_steps += int(norm > clip)
        theirs.step()
        assert ours == pytest.approx(loss.item(), rel=1e-12, abs=0), f"step {step}"
    if clip is not None:
        assert clipped_steps > 0, "the clipping threshold was never reached"
    for name, value in program.get_parameters().items():
        np.testing.assert_allclose(value, params[name].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_optimizer_step_returns_only_loss() -> None:
    model = load_model("mlp", dtype="float64", batch=4, hidden=4)
    program = lg.compile(loss=model.loss, optimizer=optim.SGD(0.1))
    values = program.run(model.make_feeds(np.random.default_rng(0)))
    assert list(values) == ["loss"]
    assert program.get_states()["optim.step"] == 1.0


def test_learning_rate_state_controls_step() -> None:
    model = load_model("mlp", dtype="float64", batch=4, hidden=4)
    program = lg.compile(loss=model.loss, optimizer=optim.SGD(0.1))
    before = program.get_parameters()
    program.set_states({"optim.lr": np.array(0.0)})
    program.run(model.make_feeds(np.random.default_rng(0)))
    after = program.get_parameters()
    for name in before:
        assert np.array_equal(before[name], after[name]), name


def test_clip_by_global_norm_scales_to_max_norm() -> None:
    g = lg.Graph("clip", dtype="float64")
    a = g.input("a", (2,))
    b = g.input("b", (1,))
    clipped = optim.clip_by_global_norm([a, b], 1.0)
    program = lg.compile({"a": clipped[0], "b": clipped[1]})
    values = program.run(a=np.array([3.0, 0.0]), b=np.array([4.0]))
    norm = np.sqrt(np.sum(values["a"] ** 2) + np.sum(values["b"] ** 2))
    assert norm == pytest.approx(5.0 * 1.0 / (5.0 + 1e-6), rel=1e-12)
    small = program.run(a=np.array([0.3, 0.0]), b=np.array([0.4]))
    np.testing.assert_array_equal(small["a"], [0.3, 0.0])
