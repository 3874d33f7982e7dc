"""The trainer: steps, validation, checkpoints, resuming and a progress bar.

A :class:`Job` owns a compiled training step (loss, gradients and the
optimizer's update in one program) and knows how to draw the batch of any
step, so a run resumed from a checkpoint sees exactly the batches it would
have seen without the interruption.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import LightnetError
from .executable import Executable

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"


class TrainingError(LightnetError, RuntimeError):
    """Training cannot go on: a non-finite loss, or a checkpoint that does not fit."""


class Job:
    """A training task: its compiled step, its batches and its evaluation.

    Subclasses set ``name``, ``program`` and ``tokens_per_step`` and
    implement :meth:`batch` and :meth:`evaluate`.
    """

    name = ""
    default_steps = 1000
    program: Executable
    #: Items (characters, samples) per step, for the throughput display.
    tokens_per_step = 1
    throughput_unit = "samples"

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Return the inputs of training step ``step`` (counted from 0)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Return validation metrics of the current parameters."""
        raise NotImplementedError

    def describe(self) -> list[str]:
        """Return lines stating the job's settings, printed at the start."""
        return []

    def metadata(self) -> dict[str, Any]:
        """Settings stored in checkpoints, checked again when resuming."""
        return {}

    def finish(self) -> list[str]:
        """Return lines printed after training, such as sampled text."""
        return []


@dataclass
class History:
    """Losses per step and validation metrics per evaluation."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Runs a job's steps with checkpoints every ``checkpoint_every`` steps."""

    def __init__(
        self,
        job: Job,
        steps: int,
        eval_every: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 0,
        progress: bool = True,
        on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        if steps < 1:
            raise TrainingError(f"--steps {steps} must be at least 1")
        self.job = job
        self.steps = steps
        self.eval_every = eval_every
        self.checkpoint_path = (
            os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME)
            if checkpoint_dir
            else None
        )
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.on_evaluation = on_evaluation
        self.start_step = 0

    def resume(self) -> int:
        """Load the checkpoint in the checkpoint folder; return the next step."""
        if self.checkpoint_path is None:
            raise TrainingError(
                "--resume needs --checkpoint-dir, the folder to resume from"
            )
        metadata = load_checkpoint(self.checkpoint_path, self.job.program)
        saved_job = metadata.get("job")
        if saved_job != self.job.name:
            raise TrainingError(
                f"checkpoint {self.checkpoint_path!r} is from job {saved_job!r}, not "
                f"{self.job.name!r}"
            )
        for key, value in self.job.metadata().items():
            if metadata.get("settings", {}).get(key) != value:
                raise TrainingError(
                    f"checkpoint {self.checkpoint_path!r} was written with {key}="
                    f"{metadata.get('settings', {}).get(key)!r}, but this run has {value!r}"
                )
        self.start_step = int(metadata["step"])
        logger.info(
            "resumed %s from %s at step %d",
            self.job.name,
            self.checkpoint_path,
            self.start_step,
        )
        return self.start_step

    def save(self, next_step: int) -> None:
        if self.checkpoint_path is None:
            return
        save_checkpoint(
            self.checkpoint_path,
            self.job.program,
            {
                "job": self.job.name,
                "step": next_step,
                "settings": self.job.metadata(),
            },
        )
        logger.info("wrote checkpoint %s at step %d", self.checkpoint_path, next_step)

    def run(self) -> History:
        """Train from ``start_step`` to ``steps``; return the history."""
        from tqdm import tqdm

        history = History()
        began = time.perf_counter()
        bar = tqdm(
            total=self.steps,
            initial=self.start_step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
        )
        try:
            if self.eval_every and self.start_step == 0:
                self._evaluate(0, history)
            for step in range(self.start_step, self.steps):
                started = time.perf_counter()
                loss = float(self.job.program.run(self.job.batch(step))["loss"])
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"the loss is {loss} at step {step + 1}; no checkpoint was written "
                        "for it. Lower the learning rate or clip gradients"
                    )
                elapsed = max(time.perf_counter() - started, 1e-9)
                history.steps.append(step + 1)
                history.losses.append(loss)
                rate = self.job.tokens_per_step / elapsed
                bar.set_postfix(
                    loss=f"{loss:.4f}",
                    **{f"{self.job.throughput_unit}/s": f"{rate:,.0f}"},
                )
                bar.update(1)
                done = step + 1
                if self.eval_every and (
                    done % self.eval_every == 0 or done == self.steps
                ):
                    self._evaluate(done, history)
                if self.checkpoint_every and (
                    done % self.checkpoint_every == 0 or done == self.steps
                ):
                    self.save(done)
        finally:
            bar.close()
        history.seconds = time.perf_counter() - began
        return history

    def _evaluate(self, step: int, history: History) -> None:
        metrics = self.job.evaluate()
        history.evaluations.append((step, metrics))
        logger.info("step %d: %s", step, metrics)
        if self.on_evaluation is not None:
            self.on_evaluation(step, metrics)


def plot_history(history: History, path: str | os.PathLike[str], title: str) -> None:
    """Draw the training loss and validation losses to an image with matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TrainingError(
            "--plot needs matplotlib: pip install 'lightnet-graph[plot]'"
        ) from None
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(history.steps, history.losses, label="training loss", linewidth=1)
    if history.evaluations:
        steps = [step for step, _ in history.evaluations]
        key = (
            "loss"
            if "loss" in history.evaluations[0][1]
            else next(iter(history.evaluations[0][1]))
        )
        axes.plot(
            steps,
            [m[key] for _, m in history.evaluations],
            "o-",
            label=f"validation {key}",
        )
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.fspath(path))
    plt.close(figure)
