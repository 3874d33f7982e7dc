"""Train an MLP on scikit-learn's handwritten digits and report test accuracy.

The model is declared op by op, compiled with its Adam update, and the
generated NumPy module is printed so you can read what runs.

    python examples/mlp_digits.py        (needs scikit-learn: the digits extra)
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

import lightnet_graph as lg
from lightnet_graph import optim


def declare(batch: int, hidden: int = 128) -> tuple[lg.Graph, lg.Tensor, lg.Tensor]:
    """Declare x (batch, 64) -> relu -> linear -> cross-entropy; return (graph, loss, logits)."""
    g = lg.Graph("digits", seed=0)
    x = g.input("x", (batch, 64))
    labels = g.input("labels", (batch,), dtype="int64")
    w1 = g.parameter("fc1.weight", (hidden, 64), init=lg.init.he_normal)
    b1 = g.parameter("fc1.bias", (hidden,))
    w2 = g.parameter("fc2.weight", (10, hidden), init=lg.init.xavier_uniform)
    b2 = g.parameter("fc2.bias", (10,))
    logits = lg.linear(lg.relu(lg.linear(x, w1, b1)), w2, b2)
    return g, lg.softmax_cross_entropy(logits, labels), logits


def main() -> None:
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1400], order[1400:]
    batch = 50

    _, loss, _ = declare(batch)
    step = lg.compile(loss=loss, optimizer=optim.Adam(1e-3))
    print(step.source)

    rng = np.random.default_rng(1)
    for epoch in range(10):
        shuffled = rng.permutation(train)
        for start in range(0, len(shuffled) - batch + 1, batch):
            picked = shuffled[start:start + batch]
            value = step.run(x=images[picked], labels=digits.target[picked])["loss"]
        print(f"epoch {epoch + 1}: last batch loss {float(value):.4f}")

    _, _, logits = declare(len(test))
    predict = lg.compile({"logits": logits})
    predict.set_parameters(step.get_parameters())
    scores = predict.run(x=images[test], labels=digits.target[test])["logits"]
    accuracy = np.mean(np.argmax(scores, axis=1) == digits.target[test])
    print(f"test accuracy {accuracy:.1%} on {len(test)} images")


if __name__ == "__main__":
    main()
