"""Error classes and the one formatter every message uses to describe a value."""

from __future__ import annotations

import numpy as np


class GradcheckError(AssertionError):
    """Raised by ``tape.gradcheck`` when analytic and numeric gradients disagree."""


def describe(value: object) -> str:
    """Describe an array-like as ``dtype[shape]``, e.g. ``float64[4, 3]``.

    Python scalars read as what NumPy would make of them (``int[]``, ``float[]``)
    so a message about ``x * 2`` still says what the ``2`` was.
    """
    data = value if isinstance(value, np.ndarray | np.generic) else getattr(value, "data", value)
    if isinstance(data, np.ndarray | np.generic):
        return f"{data.dtype}[{', '.join(map(str, data.shape))}]"
    if isinstance(data, bool | int | float | complex):
        return f"{type(data).__name__}[]"
    return type(value).__name__


def where_recorded(node: object) -> str:
    """The ``file:line`` of user code that recorded ``node``, for error messages."""
    return code_location(node.where)  # type: ignore[attr-defined]


def code_location(where: tuple) -> str:
    """``file:line`` of a ``(code, bytecode offset)`` pair."""
    code, offset = where
    line = next((n for start, end, n in code.co_lines() if start <= offset < end), None)
    return f"{code.co_filename}:{line or code.co_firstlineno}"
