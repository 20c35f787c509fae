"""Error classes and the one formatter every message uses to describe a value."""

from __future__ import annotations

import numpy as np


class GradcheckError(AssertionError):
    """Raised by ``tape.gradcheck`` when analytic and numeric gradients disagree."""


class TraceError(RuntimeError):
    """Raised by ``tape.compile`` when ``f`` turns a traced Tensor into a Python value.

    A trace records ops, not values: ``if t > 0:`` or ``float(t)`` would freeze
    the value seen on the first call into every later one, so the trace refuses.
    """


def normalize_axis_tuple(axis: object, ndim: int, allow_duplicate: bool = False) -> tuple:
    """``axis`` (an int, or a sequence of them, negatives counted from the end) as a tuple.

    NumPy's own helper moved between 1.x and 2.x (``numpy.lib.array_utils``); this
    is the same rule in one place, with NumPy's ``AxisError`` (a ``ValueError``).
    """
    axes = tuple(axis) if isinstance(axis, tuple | list) else (axis,)
    result = []
    for a in axes:
        if not -ndim <= int(a) < ndim:
            raise (
                np.exceptions.AxisError(int(a), ndim)
                if hasattr(np, "exceptions")
                else (
                    np.AxisError(int(a), ndim)  # type: ignore[attr-defined]
                )
            )
        result.append(int(a) % ndim if ndim else 0)
    if not allow_duplicate and len(set(result)) != len(result):
        raise ValueError(f"repeated axis in {axes}")
    return tuple(result)


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


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error`` (PEP 678); Python 3.10 keeps it in ``__notes__`` too."""
    if hasattr(error, "add_note"):
        error.add_note(note)
    else:  # 3.10: tracebacks do not print notes, but the note is still there to read
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]


def where_recorded(node: object) -> str:
    """The ``file:line`` of user code that recorded ``node``, for error messages."""
    return code_location(node.where)  # type: ignore[attr-defined]


def code_location(where: tuple) -> str:
    """``file:line`` of a ``(code, bytecode offset)`` pair."""
    code, offset = where
    line = next((n for start, end, n in code.co_lines() if start <= offset < end), None)
    return f"{code.co_filename}:{line or code.co_firstlineno}"
