"""Parameter initializers: functions ``init(rng, shape, dtype) -> array``.

Fan-in and fan-out follow PyTorch's convention for a weight of shape
(out_features, in_features): fan_in = shape[1], fan_out = shape[0].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def zeros(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    return np.zeros(shape, dtype)


def normal(std: float = 0.01) -> Initializer:
    """Draw from N(0, std^2)."""

    def initialize(
        rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(dtype)

    return initialize


def uniform(bound: float) -> Initializer:
    """Draw from U(-bound, bound)."""

    def initialize(
        rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        return rng.uniform(-bound, bound, shape).astype(dtype)

    return initialize


def xavier_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""
    fan_in, fan_out = _fans(shape)
    return uniform(math.sqrt(6.0 / (fan_in + fan_out)))(rng, shape, dtype)


def he_normal(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """N(0, 2 / fan_in), for layers followed by ReLU (He et al., 2015)."""
    fan_in, _ = _fans(shape)
    return normal(math.sqrt(2.0 / fan_in))(rng, shape, dtype)


def orthogonal(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """A matrix with orthonormal rows or columns, from the QR of a Gaussian matrix."""
    rows = shape[0]
    cols = int(np.prod(shape[1:], dtype=np.int64))
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)
