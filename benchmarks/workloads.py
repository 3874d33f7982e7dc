"""The sizes of every benchmark and the lightnet-graph models that run them.

Each training-step workload exists at two sizes: the full one that
BENCHMARKS.md reports and a small one for ``--quick``, which only checks
that every peer runs. All peers of a workload share its sizes, its data
(drawn from one seed) and its loss: for the recurrent models the softmax
cross-entropy of the next token, the mean over the batch at each step
summed over the T steps; for the MLP the mean over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEARNING_RATE = 0.01
DATA_SEED = 0


@dataclass(frozen=True)
class Recurrent:
    """A character model: embedding, one LSTM or GRU layer, readout to the vocabulary."""

    cell: str  # "lstm" or "gru"
    vocab: int
    hidden: int
    batch: int
    steps: int

    def feeds(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(DATA_SEED)
        text = rng.integers(0, self.vocab, (self.steps + 1, self.batch))
        return {"tokens": text[:-1], "targets": text[1:]}

    def describe(self) -> str:
        return (
            f"char-{self.cell}: vocabulary {self.vocab}, hidden {self.hidden}, "
            f"batch {self.batch}, T = {self.steps}"
        )


@dataclass(frozen=True)
class Perceptron:
    """An MLP with ReLU after every hidden layer: sizes[0] inputs, sizes[-1] classes."""

    sizes: tuple[int, ...]
    batch: int

    def feeds(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(DATA_SEED)
        x = rng.standard_normal((self.batch, self.sizes[0])).astype(np.float32)
        labels = rng.integers(0, self.sizes[-1], self.batch)
        return {"x": x, "labels": labels}

    def describe(self) -> str:
        return f"mlp {'-'.join(map(str, self.sizes))}, ReLU, batch {self.batch}"


FULL = {
    "lstm": Recurrent("lstm", vocab=65, hidden=256, batch=32, steps=64),
    "gru": Recurrent("gru", vocab=65, hidden=256, batch=32, steps=64),
    "mlp": Perceptron((784, 1024, 1024, 10), batch=128),
}
QUICK = {
    "lstm": Recurrent("lstm", vocab=65, hidden=32, batch=4, steps=8),
    "gru": Recurrent("gru", vocab=65, hidden=32, batch=4, steps=8),
    "mlp": Perceptron((64, 128, 128, 10), batch=16),
}

# Compile time of the LSTM's forward and backward graphs, by T.
COMPILE_LENGTHS = {"full": (16, 64, 256, 1024), "quick": (4, 16)}
# Square float32 matrix products, by side.
GEMM_SIZES = {"full": (512, 1024, 2048), "quick": (64, 128)}


def workloads(quick: bool) -> dict[str, Recurrent | Perceptron]:
    return QUICK if quick else FULL


def lightnet_model(workload: Recurrent | Perceptron):
    """Declare ``workload`` in lightnet-graph; return (graph, loss)."""
    import lightnet_graph as lg
    from lightnet_graph import cells
    from lightnet_graph.models_recurrent import char_model

    if isinstance(workload, Recurrent):
        if workload.cell == "lstm":

            def layer(xs, size):
                return cells.lstm(xs, size, name="lstm")

        else:
            # PyTorch's form (reset gate after the recurrent product), so
            # that nn.GRU computes the same function.
            def layer(xs, size):
                return cells.gru(xs, size, name="gru", reset_after=True)

        model = char_model(
            f"char-{workload.cell}",
            layer,
            batch=workload.batch,
            hidden=workload.hidden,
            seq_len=workload.steps,
            vocab=workload.vocab,
        )
        return model.graph, model.loss

    g = lg.Graph("mlp", dtype="float32", seed=DATA_SEED)
    h = g.input("x", (workload.batch, workload.sizes[0]))
    labels = g.input("labels", (workload.batch,), dtype="int64")
    layers = len(workload.sizes) - 1
    for k, (fan_in, fan_out) in enumerate(
        zip(workload.sizes, workload.sizes[1:], strict=False)
    ):
        w = g.parameter(f"fc{k}.weight", (fan_out, fan_in), init=lg.init.he_normal)
        b = g.parameter(f"fc{k}.bias", (fan_out,))
        h = lg.linear(h, w, b)
        if k < layers - 1:
            h = lg.relu(h)
    return g, lg.softmax_cross_entropy(h, labels, "mean")
