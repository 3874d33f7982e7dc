"""Declare a recurrent cell that lightnet-graph does not ship, and train it on text.

The cell is the minimal gated unit (Zhou et al., "Minimal Gated Unit for
Recurrent Neural Networks", 2016): a single forget gate f_t decides both
how much of the old state the candidate reads and how much of it is kept,

    f_t = sigmoid(W_fx x_t + W_fh h_{t-1} + b_f)
    n_t = tanh(W_nx x_t + W_nh (f_t * h_{t-1}) + b_n)
    h_t = (1 - f_t) * h_{t-1} + f_t * n_t

It is written once as a step function with the public ops. The compiler
unrolls it over T steps and derives back-propagation through time from the
ops' gradient rules, so the training step below has no hand-written
backward pass. The text is the Python documentation that ships with the
standard library (pydoc_data.topics), read one character at a time.

    python examples/custom_cell.py [--steps 300]
"""

from __future__ import annotations

import argparse
import pydoc_data.topics
import time

import numpy as np

import lightnet_graph as lg
from lightnet_graph import cells, optim
from lightnet_graph.models import Model


def mgu_step(params, state, x_t):
    """One step of the minimal gated unit; returns ((h_t,), h_t)."""
    (h,) = state
    forget = lg.sigmoid(
        lg.linear(x_t, params["w_fx"], params["b_f"]) + lg.linear(h, params["w_fh"])
    )
    candidate = lg.tanh(
        lg.linear(x_t, params["w_nx"], params["b_n"])
        + lg.linear(forget * h, params["w_nh"])
    )
    h_new = (1.0 - forget) * h + forget * candidate
    return (h_new,), h_new


def load_text() -> tuple[np.ndarray, list[str]]:
    """Return the documentation text as character ids, and the characters."""
    text = "".join(pydoc_data.topics.topics.values())
    characters = sorted(set(text))
    index = {c: i for i, c in enumerate(characters)}
    return np.array([index[c] for c in text], dtype=np.int64), characters


def build(dtype="float32", batch=None, hidden=None, seq_len=None, seed=0) -> Model:
    """Declare a character language model on the MGU, fed windows of real text."""
    batch, hidden, seq_len = batch or 32, hidden or 64, seq_len or 32
    ids, characters = load_text()
    vocab = len(characters)

    g = lg.Graph("mgu-text", dtype=dtype, seed=seed)
    tokens = g.input("tokens", (seq_len, batch), dtype="int64")
    targets = g.input("targets", (seq_len, batch), dtype="int64")
    embedding = g.parameter("embedding", (vocab, hidden), init=lg.init.normal(1.0))
    bound = 1.0 / np.sqrt(hidden)
    shapes = {
        "w_fx": (hidden, hidden),
        "w_fh": (hidden, hidden),
        "b_f": (hidden,),
        "w_nx": (hidden, hidden),
        "w_nh": (hidden, hidden),
        "b_n": (hidden,),
    }
    params = {
        key: g.parameter(f"mgu.{key}", shape, init=lg.init.uniform(bound))
        for key, shape in shapes.items()
    }
    h0 = g.constant(np.zeros((batch, hidden)), name="mgu.h_init")

    xs = lg.gather(embedding, tokens)
    outputs, _ = lg.recurrence(mgu_step, xs, h0, params, name="mgu", state_names=["h"])
    w = g.parameter("readout.weight", (vocab, hidden), init=lg.init.xavier_uniform)
    b = g.parameter("readout.bias", (vocab,))
    logits = lg.linear(outputs, w, b)
    # Averaged over steps, the loss reads as nats per character.
    loss = cells.sequence_cross_entropy(logits, targets, "mean")

    def make_feeds(rng: np.random.Generator) -> dict[str, np.ndarray]:
        starts = rng.integers(0, ids.size - seq_len - 1, batch)
        windows = np.stack([ids[s : s + seq_len + 1] for s in starts], axis=1)
        return {"tokens": windows[:-1], "targets": windows[1:]}

    return Model(g, loss, make_feeds, {"logits": logits})


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a minimal gated unit on text.")
    parser.add_argument(
        "--steps", type=int, default=300, help="training steps (default 300)"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    model = build()
    program = lg.compile(loss=model.loss, optimizer=optim.Adam(3e-3, clip_norm=5.0))
    print(
        f"compiled in {time.perf_counter() - start:.1f} s; "
        f"vocabulary {model.graph['embedding'].shape[0]} characters"
    )
    rng = np.random.default_rng(0)
    losses = []
    for step in range(1, args.steps + 1):
        losses.append(float(program.run(model.make_feeds(rng))["loss"]))
        if step % 25 == 0:
            recent = np.mean(losses[-25:])
            print(f"steps {step - 24:4d}-{step:<4d} mean loss {recent:.3f} nats/char")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
