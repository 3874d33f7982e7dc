"""Built-in training jobs for ``lightnet-graph train``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import optim
from .compiler import compile
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

    def __init__(self, backend: str = "numpy", dtype: str = "float32", batch: int | None = None,
                 hidden: int | None = None, lr: float | None = None, seed: int = 0,
                 **_: Any) -> None:
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
        self.batch_size = batch or 64
        self.hidden = hidden or 128
        self.lr = 1e-3 if lr is None else lr
        self.seed = seed
        self.tokens_per_step = self.batch_size
        self.batches_per_epoch = len(self.train_x) // self.batch_size
        if self.batches_per_epoch < 1:
            raise TrainingError(f"--batch {self.batch_size} exceeds the {len(self.train_x)} training images")

        train_model = mlp(dtype, self.batch_size, self.hidden, seed, features=64, classes=10)
        self.program = compile(loss=train_model.loss, optimizer=optim.Adam(self.lr), backend=backend)
        test_model = mlp(dtype, len(self.test_x), self.hidden, seed, features=64, classes=10)
        self.test_program = compile({"logits": test_model.outputs["logits"]}, backend=backend)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_x))
        picked = order[index * self.batch_size:(index + 1) * self.batch_size]
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
        return {"batch": self.batch_size, "hidden": self.hidden, "lr": self.lr, "seed": self.seed}
