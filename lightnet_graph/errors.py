"""Exceptions raised for bad models and bad input.

Every error names the value at fault, what was expected and what to do, so
that a user never has to read a traceback from inside the compiler.
"""

from __future__ import annotations


class LightnetError(Exception):
    """Base class of every error that lightnet-graph raises on purpose."""


class ShapeError(LightnetError, ValueError):
    """An op was declared with operands whose shapes break its rule."""


class DTypeError(LightnetError, TypeError):
    """An op was declared with operands of a dtype it does not accept."""


class GraphError(LightnetError, ValueError):
    """A graph is malformed: a cycle, mixed graphs, a duplicate name."""


class UnboundInputError(LightnetError, KeyError):
    """An input of the graph was given no value when the program ran."""

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class UnknownOpError(LightnetError, KeyError):
    """An op name is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownBackendError(LightnetError, ValueError):
    """A backend name matches no installed backend."""


class InputValueError(LightnetError, ValueError):
    """A value passed to a compiled program has the wrong shape or dtype."""


class GradientError(LightnetError, RuntimeError):
    """A gradient rule returned a value of the wrong shape or dtype."""


class ModelNotFoundError(LightnetError, ValueError):
    """A model name or `path.py:function` reference could not be loaded."""


class NumericsError(LightnetError, FloatingPointError):
    """An op produced NaN or Inf while numerics checking was on."""
