"""NumPy kernels against their plain-NumPy definitions, edge cases included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lightnet_graph.ops import kernels


@pytest.mark.parametrize("shape", [(7,), (3, 5), (0,), (2, 0)])
def test_scatter_add_matches_add_at(shape):
    rng = np.random.default_rng(0)
    indices = rng.integers(-4, 4, shape)
    values = rng.standard_normal(shape + (3,))
    expected = np.zeros((4, 3))
    np.add.at(expected, indices, values)
    np.testing.assert_allclose(kernels.scatter_add(indices, values, 4), expected)


def test_scatter_add_joins_negative_and_positive_rows():
    out = kernels.scatter_add(np.array([3, -1]), np.ones((2, 2)), 4)
    np.testing.assert_array_equal(out[3], [2.0, 2.0])


def test_scatter_add_rejects_out_of_range_rows():
    with pytest.raises(IndexError):
        kernels.scatter_add(np.array([4]), np.ones((1, 2)), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_matches_two_branch_formula(dtype):
    x = np.array([-80.0, -30.0, -3.0, -0.0, 0.0, 1e-3, 2.5, 30.0], dtype)
    e = np.exp(-np.abs(x))
    expected = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(dtype)
    result = kernels.sigmoid(x)
    assert result.dtype == dtype
    np.testing.assert_array_max_ulp(result, expected, maxulp=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_exactly(dtype):
    x = np.array([-np.inf, -1e30, -1e4, 1e4, 1e30, np.inf], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = kernels.sigmoid(x)
    np.testing.assert_array_equal(result, np.array([0, 0, 0, 1, 1, 1], dtype))


def test_sigmoid_flushes_only_past_exp_overflow():
    x = np.array([-88.0, -89.0], np.float32)
    result = kernels.sigmoid(x)
    assert 0 < result[0] < np.finfo(np.float32).tiny
    assert result[1] == 0


def test_sigmoid_propagates_nan():
    assert np.isnan(kernels.sigmoid(np.array([np.nan], np.float32))[0])


def test_sigmoid_of_zero_dimensional_value():
    assert float(kernels.sigmoid(np.array(0.0))) == 0.5


@pytest.mark.parametrize("low", [0.0, 0.01])
def test_step_into_buffer(low):
    x = np.array([-2.0, 0.0, 3.0, np.nan], np.float32)
    out = kernels.step(x, low, out=np.empty(4, np.float32))
    np.testing.assert_array_equal(out, np.where(x > 0, 1.0, low).astype(np.float32))
