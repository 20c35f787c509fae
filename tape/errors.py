"""Error classes and the one formatter every message uses to describe a value."""

from __future__ import annotations

import functools
import re
import runpy
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np


class GradcheckError(AssertionError):
    """Raised by ``tape.gradcheck`` when analytic and numeric gradients disagree.

    ``str(error)`` names, for every input that fails, the worst entry (index,
    both values) and in words the mistake when it is a recognisable one.
    ``.analytic`` and ``.numeric`` hold the two gradients, one array per input
    of the check (``None`` for an input that was not checked; both are
    ``None`` when a custom Function's backward failed before any gradient
    existed); ``.rows`` the problems one by one, as dicts. In Jupyter the
    error shows as a table.
    """

    def __init__(
        self,
        message: str,
        analytic: list | None = None,
        numeric: list | None = None,
        rows: list[dict] | None = None,
    ) -> None:
        super().__init__(message)
        self.analytic = analytic
        self.numeric = numeric
        self.rows = rows or []

    def _repr_html_(self) -> str:
        """One table row per problem: input, worst entry, both values, what it looks like."""
        header = ("input", "worst entry", "analytic", "numeric", "what it looks like")
        body = []
        for row in self.rows:
            if "index" in row:
                cells = (
                    _html(row["input"]),
                    f"<code>{row['index']}</code>",
                    f"{row['analytic']:.6g}",
                    f"{row['numeric']:.6g}",
                    _html(row.get("diagnosis") or ""),
                )
            else:  # a custom Function's backward: a shape, not a value, is wrong
                shape = f"returned shape <code>{row['sent']}</code>" if "sent" in row else ""
                cells = (
                    _html(row["input"]),
                    shape,
                    "",
                    "",
                    _html(row.get("diagnosis") or row["message"]),
                )
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in header)
        count = len(self.rows)
        summary = (
            f"{count} problem{'s' if count != 1 else ''} found by gradcheck"
            if count
            else _html(str(self))
        )
        return (
            f'<div class="tape-gradcheck"><p><b>GradcheckError</b>: {summary}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )


def _html(text: str) -> str:
    """Escape for HTML; `code` in backticks becomes <code>."""
    import html

    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


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
            raise np.exceptions.AxisError(int(a), ndim)  # a ValueError and an IndexError
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


def real_gradient(value: Any, what: str, t: Any) -> np.ndarray:
    """A gradient for ``t`` someone handed in, as an array: refused unless it holds real numbers.

    Casting a complex one to ``t``'s dtype would drop its imaginary part with
    only a warning; strings, objects and ragged lists would fail later, in NumPy's words.
    """
    fix = f"pass a float array of shape {tuple(t.shape)}"
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:  # a ragged list
        raise ValueError(f"{what} is not an array for {label(t)} ({e}); {fix}") from e
    if array.dtype.kind not in "fiub":
        raise TypeError(
            f"{what} has dtype {array.dtype}, but tape differentiates real numbers only "
            f"(for {label(t)}); {fix}"
        )
    return array


def label(t: Any) -> str:
    """How an error names a tensor: its name, ``dtype[shape]``, the op that made it."""
    name, node = getattr(t, "name", None), getattr(t, "node", None)
    named = f"'{name}' " if name else ""
    made_by = f" made by {node.op}" if node is not None else ""
    return f"{named}{describe(t)}{made_by}"


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error`` (PEP 678); Python 3.10 keeps it in ``__notes__`` too."""
    if hasattr(error, "add_note"):
        error.add_note(note)
    else:  # 3.10: tracebacks do not print notes, but the note is still there to read
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]


def where_recorded(node: object) -> str:
    """The ``file:line`` of user code that recorded ``node``, for error messages."""
    return code_location(node.where)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=256)  # asked per generated line and per step: paths are few
def from_command_line(path: str) -> bool:
    """Whether code at ``path`` is the ``tape`` command running an expression: an installed
    console script (``.venv/bin/tape``) or ``python -m tape`` (runpy's frames: frozen from
    Python 3.11, the standard library's ``runpy.py`` before)."""
    if path.startswith("<frozen"):
        return True
    try:
        where = Path(path).resolve()
        if where == Path(runpy.__file__).resolve():
            return True
        return where.parent == Path(sysconfig.get_path("scripts")).resolve()
    except (OSError, TypeError, KeyError):
        return False


def code_location(where: tuple) -> str:
    """``file:line`` of a ``(code, bytecode offset)`` pair."""
    code, offset = where
    line = next((n for start, end, n in code.co_lines() if start <= offset < end), None)
    return f"{code.co_filename}:{line or code.co_firstlineno}"
