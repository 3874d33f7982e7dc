"""The NumPy backend: generates one readable Python module per program."""

from .backend import NumpyBackend, NumpyExecutable

__all__ = ["NumpyBackend", "NumpyExecutable"]
