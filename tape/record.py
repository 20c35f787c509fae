"""The tape: per-thread records of every operation that needs a gradient.

A ``Node`` is one record: which op ran, on which inputs, producing which
output. The current thread's ``Tape`` numbers the records in recording
order, and that order is already a topological order of the graph: an op can
only consume tensors that existed before it ran. ``backward`` therefore never
needs a topological sort, only the newest-first order of the records it reaches.

Memory: a node is owned by its output tensor (``t.node``), and a node owns its
inputs. The tape itself holds only weak references, so a forward pass whose
result is dropped frees its records at once, and a loop that never calls
backward cannot grow the tape.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# One sequence for every thread: a graph may use tensors another thread made,
# and the walk needs one order that is topological across all of them.
_INDEX = itertools.count(1)
# The index at the latest in-place change of any tensor: records newer than it
# cannot have seen a changed input, so backward checks only older ones.
LAST_CHANGE = [0]


class _ThreadState(threading.local):
    """Everything recording depends on, kept apart for each thread."""

    def __init__(self) -> None:
        self.tape = Tape()
        self.grad_enabled = True
        self.anomaly = False
        self.tracer: Any = None


class Node:
    """One tape record: ``op`` applied to ``inputs`` gave ``output``.

    ``args`` holds what the op was called with (Tensors, or the constants they
    were combined with); ``arrays`` the NumPy values the forward saw, which the
    vector-Jacobian product reuses. A releasing backward drops ``arrays`` (and
    what a ``Function`` saved) but keeps ``args``, so diagrams can still replay
    the pass: the values live as long as the graph's output is referenced.
    """

    __slots__ = (
        "op",
        "primitive",
        "args",
        "arrays",
        "params",
        "_output",
        "index",
        "code",
        "offset",
        "released",
    )

    def __init__(self, op: Any, args: tuple, arrays: tuple, params: dict, output: Any) -> None:
        self.op: str = op.name
        self.primitive = op  # the Op: forward and VJP
        self.args = args
        self.arrays = arrays
        self.params = params
        self._output = weakref.ref(output)  # the output owns its node, not the reverse
        # Where the user asked for the op, inlined from user_code() because every
        # record pays for it: frame 3 skips this, apply and the op's public function.
        frame = sys._getframe(3)
        while frame.f_code.co_filename.startswith(_PACKAGE_DIR) and frame.f_back is not None:
            frame = frame.f_back
        self.code, self.offset = frame.f_code, frame.f_lasti
        self.released: str | None = None
        tape = _state.tape
        self.index = next(_INDEX)
        refs = tape._refs
        refs.append(self._output)  # a record lives exactly as long as its output tensor
        if len(refs) >= tape._compact_at:
            tape._compact()

    @property
    def inputs(self) -> tuple:
        """The op's inputs as Tensors, constants wrapped as Tensors without grad."""
        from .tensor import Tensor

        return tuple(a if isinstance(a, Tensor) else Tensor(a) for a in self.args)

    @property
    def output(self) -> Any:
        """The Tensor this record produced (``None`` once nothing refers to it)."""
        return self._output()

    @property
    def where(self) -> tuple:
        """``(code, bytecode offset)`` of the user's line that recorded this node."""
        return (self.code, self.offset)

    def release(self, why: str) -> None:
        """Mark the record used up: drop ``arrays`` and a Function's saved values.

        A later backward through it raises, naming the op and its line.
        """
        self.released = why
        self.arrays = None
        ctx = self.params.get("ctx")
        if ctx is not None:
            ctx.saved = None

    def __repr__(self) -> str:
        state = f", released by {self.released}" if self.released else ""
        return f"<Node #{self.index} {self.op}{state}>"


def user_code(depth: int) -> tuple:
    """Where the user's code asked for the op: ``(code, bytecode offset)``.

    The first frame outside this package is the user's line. Keeping the code
    object and offset, not the frame, keeps no locals alive and is cheaper than
    ``f_lineno``; ``errors.where_recorded`` looks the line up when needed.
    """
    frame = sys._getframe(depth)
    while frame.f_code.co_filename.startswith(_PACKAGE_DIR) and frame.f_back is not None:
        frame = frame.f_back
    return (frame.f_code, frame.f_lasti)


class Tape:
    """The records of one thread, in recording order.

    ``len(tape)`` counts the live records (not released by a backward pass, not
    dropped because nothing can reach them); iterating yields them oldest first.
    """

    __slots__ = ("_refs", "_compact_at")

    def __init__(self) -> None:
        self._refs: list[weakref.ref] = []
        self._compact_at = 1024

    def _compact(self) -> None:
        # Called when the list has doubled since the last time: amortised O(1) per record.
        self._refs[:] = [r for r in self._refs if r() is not None]
        self._compact_at = max(1024, 2 * len(self._refs))

    def __iter__(self) -> Iterator[Node]:
        for ref in list(self._refs):
            t = ref()
            if t is not None and t.node is not None and t.node.released is None:
                yield t.node

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def clear(self) -> None:
        """Drop every record; tensors built before can no longer backprop, and say so."""
        for node in list(self):
            node.release("tape.clear()")
        self._refs.clear()
        self._compact_at = 1024

    def __repr__(self) -> str:
        return f"<Tape of {len(self)} live records>"


_state = _ThreadState()


def get_tape() -> Tape:
    """Return the current thread's tape."""
    return _state.tape


def is_grad_enabled() -> bool:
    """Whether ops on Tensors that require grad are recorded in this thread."""
    return _state.grad_enabled


class _GradMode:
    """Context manager (and decorator) that sets recording on or off for its block."""

    __slots__ = ("_mode", "_saved")

    def __init__(self, mode: bool) -> None:
        self._mode = mode
        self._saved: list[bool] = []

    def __enter__(self) -> None:
        self._saved.append(_state.grad_enabled)
        _state.grad_enabled = self._mode

    def __exit__(self, *exc: object) -> None:
        _state.grad_enabled = self._saved.pop()

    def __call__(self, fn: Any) -> Any:
        import functools

        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(mode):
                return fn(*args, **kwargs)

        return wrapper


class detect_anomaly:
    """Raise ``FloatingPointError`` as soon as an op makes NaN or Inf.

    Inside the block every op's forward result, and every gradient a VJP
    produces in ``backward`` or ``tape.grad``, is checked; the error names the
    op and the line of user code that recorded it.
    """

    def __enter__(self) -> detect_anomaly:
        self._saved = _state.anomaly
        _state.anomaly = True
        return self

    def __exit__(self, *exc: object) -> None:
        _state.anomaly = self._saved


def no_grad() -> _GradMode:
    """Record nothing inside the block: results have ``requires_grad=False``.

    >>> w = tape.tensor([1.0], requires_grad=True)
    >>> with tape.no_grad():
    ...     (w * 2).requires_grad
    False
    """
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Turn recording back on inside a ``no_grad`` block."""
    return _GradMode(True)
