"""Built-in training jobs for ``lightnet-graph train``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import cells, init, ops, optim
from .compiler import compile
from .data import CharBatches, Vocabulary, default_corpus, read_text, split_text
from .graph import Graph, Tensor
from .models import mlp
from .train import Job, TrainingError

JOBS: dict[str, type[Job]] = {}


def register_job(cls: type[Job]) -> type[Job]:
    JOBS[cls.name] = cls
    return cls


@register_job
class DigitsJob(Job):
    """An MLP on scikit-learn's 8x8 handwritten digits, scored by test accuracy.

    The 1797 images are split 80/20 by a seeded permutation; features are
    scaled to [0, 1]. Each epoch visits the training images in a fresh
    seeded order and drops the last partial batch.
    """

    name = "mlp-digits"
    throughput_unit = "samples"
    default_steps = 600

    def __init__(
        self,
        backend: str = "numpy",
        dtype: str = "float32",
        batch: int | None = None,
        hidden: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        **_: Any,
    ) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise TrainingError(
                "mlp-digits needs scikit-learn: pip install 'lightnet-graph[digits]'"
            ) from None
        digits = load_digits()
        features = (digits.data / 16.0).astype(dtype)
        order = np.random.default_rng(seed).permutation(len(features))
        cut = int(0.8 * len(order))
        self.train_x, self.train_y = features[order[:cut]], digits.target[order[:cut]]
        self.test_x, self.test_y = features[order[cut:]], digits.target[order[cut:]]
        self.batch_size = 64 if batch is None else batch
        self.hidden = 128 if hidden is None else hidden
        self.lr = 1e-3 if lr is None else lr
        self.seed = seed
        self.tokens_per_step = self.batch_size
        self.batches_per_epoch = len(self.train_x) // self.batch_size
        if self.batches_per_epoch < 1:
            raise TrainingError(
                f"--batch {self.batch_size} exceeds the {len(self.train_x)} training images"
            )

        train_model = mlp(
            dtype, self.batch_size, self.hidden, seed, features=64, classes=10
        )
        self.program = compile(
            loss=train_model.loss, optimizer=optim.Adam(self.lr), backend=backend
        )
        test_model = mlp(
            dtype, len(self.test_x), self.hidden, seed, features=64, classes=10
        )
        self.test_program = compile(
            {"logits": test_model.outputs["logits"]}, backend=backend
        )

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_x))
        picked = order[index * self.batch_size : (index + 1) * self.batch_size]
        return {"x": self.train_x[picked], "labels": self.train_y[picked]}

    def evaluate(self) -> dict[str, float]:
        self.test_program.set_parameters(self.program.get_parameters())
        logits = self.test_program.run(x=self.test_x, labels=self.test_y)["logits"]
        accuracy = float(np.mean(np.argmax(logits, axis=1) == self.test_y))
        return {"accuracy": accuracy}

    def describe(self) -> list[str]:
        return [
            f"mlp-digits: {len(self.train_x)} training and {len(self.test_x)} test images, "
            f"hidden {self.hidden}, batch {self.batch_size}, Adam at {self.lr:g}"
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "batch": self.batch_size,
            "hidden": self.hidden,
            "lr": self.lr,
            "seed": self.seed,
        }


def _char_cell(kind: str, input_size: int, hidden: int) -> cells.Cell:
    if kind == "lstm":
        return cells.LSTM(input_size, hidden)
    if kind == "gru":
        return cells.GRU(input_size, hidden)
    return cells.RNN(input_size, hidden, 1.0 if kind == "skip-rnn" else 0.0)


def declare_char_model(
    kind: str, vocab: int, hidden: int, batch: int, seq_len: int, dtype: str, seed: int
) -> tuple[Graph, Tensor, Tensor]:
    """Declare a character model whose recurrent state carries across runs.

    The initial states are graph states that each run replaces with its
    final states (without a gradient), which is truncated back-propagation
    through time when consecutive runs read consecutive windows. Returns
    the graph, the loss (mean nats per character) and the logits.
    """
    g = Graph(f"char-{kind}", dtype=dtype, seed=seed)
    tokens = g.input("tokens", (seq_len, batch), dtype="int64")
    targets = g.input("targets", (seq_len, batch), dtype="int64")
    embedding = g.parameter("embedding", (vocab, hidden), init=init.normal(1.0))
    cell = _char_cell(kind, hidden, hidden)
    carried = tuple(
        g.state(f"carry.{name}", (batch, hidden)) for name in cell.state_names
    )
    outputs, finals = cells.stack(
        [cell], ops.gather(embedding, tokens), name=kind, initial_states=[carried]
    )
    for state, final in zip(carried, finals[0], strict=True):
        g.assign(state, ops.stop_gradient(final))
    w = g.parameter("readout.weight", (vocab, hidden), init=init.xavier_uniform)
    b = g.parameter("readout.bias", (vocab,))
    logits = ops.linear(outputs, w, b)
    loss = cells.sequence_cross_entropy(logits, targets, "mean")
    return g, loss, logits


class CharJob(Job):
    """A character language model on a text, reporting validation loss.

    The text (the Python documentation in pydoc_data.topics unless a file
    is given) is split 90/10 into training and validation text; the
    vocabulary is the training text's characters. Training reads ``batch``
    parallel streams in consecutive windows of T characters, carrying the
    recurrent state from window to window, and drops the last partial
    window of each pass over the text.
    """

    kind = ""
    default_steps = 300
    throughput_unit = "chars"

    def __init__(
        self,
        backend: str = "numpy",
        dtype: str = "float32",
        batch: int | None = None,
        hidden: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        seq_len: int | None = None,
        data: str | None = None,
        clip_norm: float = 5.0,
        **_: Any,
    ) -> None:
        text = read_text(data) if data else default_corpus()
        train_text, valid_text = split_text(text, 0.1)
        self.vocab = Vocabulary.from_text(train_text)
        self.data = data
        self.batch_size = 32 if batch is None else batch
        self.hidden = 256 if hidden is None else hidden
        self.seq_len = 64 if seq_len is None else seq_len
        self.lr = 2e-3 if lr is None else lr
        self.clip_norm = clip_norm
        self.seed = seed
        self.dtype = dtype
        self.backend = backend
        self.tokens_per_step = self.batch_size * self.seq_len
        self.train_batches = CharBatches(
            self.vocab.encode(train_text), self.batch_size, self.seq_len
        )
        self.valid_batches = CharBatches(
            self.vocab.encode(valid_text), self.batch_size, self.seq_len
        )
        graph, loss, _ = self._declare(self.batch_size, self.seq_len)
        self.program = compile(
            loss=loss,
            backend=backend,
            optimizer=optim.Adam(self.lr, clip_norm=clip_norm),
        )
        graph, loss, _ = self._declare(self.batch_size, self.seq_len)
        self.valid_program = compile({"loss": loss}, backend=backend)

    def _declare(self, batch: int, seq_len: int) -> tuple[Graph, Tensor, Tensor]:
        return declare_char_model(
            self.kind,
            len(self.vocab),
            self.hidden,
            batch,
            seq_len,
            self.dtype,
            self.seed,
        )

    def batch(self, step: int) -> dict[str, np.ndarray]:
        tokens, targets = self.train_batches.window(step)
        return {"tokens": tokens, "targets": targets}

    def evaluate(self) -> dict[str, float]:
        """Mean loss over every validation window, state carried from zeros."""
        self.valid_program.set_parameters(self.program.get_parameters())
        self.valid_program.set_states(
            {
                name: np.zeros_like(value)
                for name, value in self.valid_program.get_states().items()
            }
        )
        total = 0.0
        for index in range(len(self.valid_batches)):
            tokens, targets = self.valid_batches.window(index)
            total += float(
                self.valid_program.run(tokens=tokens, targets=targets)["loss"]
            )
        nats = total / len(self.valid_batches)
        return {"loss": nats, "bits_per_char": nats / math.log(2)}

    def describe(self) -> list[str]:
        source = self.data or "pydoc_data.topics (the Python documentation)"
        return [
            f"{self.name}: {source}, {len(self.train_batches.ids):,} training and "
            f"{len(self.valid_batches.ids):,} validation characters, vocabulary "
            f"{len(self.vocab)} (ln {len(self.vocab)} = {math.log(len(self.vocab)):.2f} nats)",
            f"hidden {self.hidden}, batch {self.batch_size}, T = {self.seq_len}, Adam at "
            f"{self.lr:g}, clipping at global norm {self.clip_norm:g}, {self.dtype}, "
            f"backend {self.backend}",
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocab": self.vocab.chars,
            "hidden": self.hidden,
            "batch": self.batch_size,
            "seq_len": self.seq_len,
            "lr": self.lr,
            "seed": self.seed,
            "dtype": self.dtype,
        }

    def finish(self) -> list[str]:
        sampler = Sampler(self.kind, self.vocab, self.hidden, self.dtype, self.backend)
        sampler.load(self.program.get_parameters())
        text = sampler.sample(300, temperature=0.8, prime="The ", seed=self.seed)
        return ["sample (temperature 0.8):", text]


class Sampler:
    """Generates text one character at a time with a step compiled for T = 1."""

    def __init__(
        self,
        kind: str,
        vocab: Vocabulary,
        hidden: int,
        dtype: str = "float32",
        backend: str = "numpy",
    ) -> None:
        self.vocab = vocab
        _, _, logits = declare_char_model(kind, len(vocab), hidden, 1, 1, dtype, 0)
        self.program = compile({"logits": logits}, backend=backend)

    def load(self, parameters: dict[str, np.ndarray]) -> None:
        self.program.set_parameters(parameters)

    def sample(
        self, length: int, temperature: float = 1.0, prime: str = "\n", seed: int = 0
    ) -> str:
        """Feed ``prime``, then draw ``length`` characters at ``temperature``."""
        if temperature <= 0:
            raise TrainingError(f"--temperature {temperature} must be positive")
        ids = self.vocab.encode(prime)
        if len(ids) == 0:
            raise TrainingError(
                f"--prime {prime!r} has no character of the model's vocabulary"
            )
        self.program.set_states(
            {
                name: np.zeros_like(value)
                for name, value in self.program.get_states().items()
            }
        )
        rng = np.random.default_rng(seed)
        generated = []
        zero = np.zeros((1, 1), np.int64)
        logits = None
        for token in ids:
            logits = self.program.run(tokens=np.full((1, 1), token), targets=zero)[
                "logits"
            ]
        for _ in range(length):
            scaled = logits.reshape(-1).astype(np.float64) / temperature
            probabilities = np.exp(scaled - scaled.max())
            probabilities /= probabilities.sum()
            token = int(rng.choice(len(probabilities), p=probabilities))
            generated.append(token)
            logits = self.program.run(tokens=np.full((1, 1), token), targets=zero)[
                "logits"
            ]
        return prime + self.vocab.decode(np.array(generated))


@register_job
class CharLSTMJob(CharJob):
    name = "char-lstm"
    kind = "lstm"


@register_job
class CharGRUJob(CharJob):
    name = "char-gru"
    kind = "gru"


@register_job
class CharRNNJob(CharJob):
    name = "char-rnn"
    kind = "rnn"


@register_job
class SkipRNNJob(CharJob):
    name = "skip-rnn"
    kind = "skip-rnn"
