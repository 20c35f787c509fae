"""The tape: per-thread records of every operation that needs a gradient.

A ``Node`` is one record: which op ran, which records (or leaves) its inputs
came from, and the few values its vector-Jacobian product reads. The current
thread's ``Tape`` numbers the records in recording order, and that order is
already a topological order of the graph: an op can only consume tensors that
existed before it ran. ``backward`` therefore never needs a topological sort,
only the newest-first order of the records it reaches.

Memory, as in PyTorch's saved variables: a record keeps its *parents* (the
record that made each input, or the leaf itself) and ``saved``, exactly the
arrays its VJP reads (``add`` saves nothing, ``relu`` its output, ``matmul``
its two inputs). An intermediate result nothing reads is freed as soon as the
user drops it; the graph's structure (ops, shapes, dtypes, names, where each
op was recorded) outlives the values. A releasing backward pass frees
``saved``. The tape itself holds only weak references, so a forward pass
whose result is dropped frees its records at once, and a loop that never
calls backward cannot grow the tape.

This module knows nothing of ``Tensor``: a record refers to its output
weakly, and ``tensors.py`` gives records their Tensor views (``inputs``,
``output``).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _UnderPackage:
    """``filename in _OURS`` for a package that cannot be listed (imported from a zip)."""

    def __contains__(self, filename: str) -> bool:
        return os.path.abspath(filename).startswith(_PACKAGE_DIR)


# The package's own files, spelled as their code objects spell them (as ``__file__`` is):
# a set lookup is the cheapest way to skip our frames when finding the user's line.
try:
    _OURS: Any = frozenset(
        os.path.join(os.path.dirname(__file__), name)
        for name in os.listdir(os.path.dirname(__file__))
        if name.endswith(".py")
    )
except OSError:  # a zip (zipapp, pex) or a frozen bundle: no directory to list
    _OURS = _UnderPackage()

# One sequence for every thread: a graph may use tensors another thread made,
# and the walk needs one order that is topological across all of them.
INDEX = itertools.count(1)


# Looked up once: every record calls them
_weak, _getframe, _next_index = weakref.ref, sys._getframe, INDEX.__next__


class ThreadState(threading.local):
    """Everything recording depends on, kept apart for each thread."""

    def __init__(self) -> None:
        self.tape = Tape()
        self._grad_enabled = True
        self._anomaly = False
        # The tape while ops record and no anomaly check runs, else None: ``apply`` reads
        # this one attribute per op instead of three.
        self.recording: Tape | None = self.tape
        self.observers: list[Any] = []  # what trace_backward asked to watch every pass
        self.flowed: list[Any] = []  # the records that keep the latest pass's flows
        self.flows_live: list[bool] = [False]  # the latest pass's flag: [False] once superseded


def _mode(name: str) -> property:
    """A thread-state flag whose setter keeps ``recording`` in step."""

    def get(self: ThreadState) -> bool:
        return getattr(self, name)

    def set(self: ThreadState, value: bool) -> None:
        setattr(self, name, value)
        self.recording = self.tape if self._grad_enabled and not self._anomaly else None

    return property(get, set)


ThreadState.grad_enabled = _mode("_grad_enabled")  # type: ignore[attr-defined]
ThreadState.anomaly = _mode("_anomaly")  # type: ignore[attr-defined]


class Watch:
    """What watches one tensor's gradient: its hooks, and whether it keeps ``.grad``."""

    __slots__ = ("hooks", "retain")

    def __init__(self) -> None:
        self.hooks: dict[int, Any] = {}
        self.retain = False


class Watched:
    """Hooks and ``retain_grad``, per tensor and weakly: a dropped tensor takes its hooks along.

    Keyed by identity (a Tensor's ``==`` is elementwise, so no ``WeakKeyDictionary``).
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, Watch]] = {}
        self._making = threading.Lock()  # two threads' first hooks on one tensor: one entry

    def get(self, t: Any) -> Watch | None:
        entry = self._by_id.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def watch(self, t: Any) -> Watch:
        """``t``'s entry, made on first use."""
        found = self.get(t)
        if found is None:
            with self._making:
                found = self.get(t)
                if found is None:
                    key = id(t)
                    found = Watch()
                    ref = weakref.ref(t, lambda _: self._by_id.pop(key, None))
                    self._by_id[key] = (ref, found)
        return found

    def items(self) -> list[tuple[Any, Watch]]:
        pairs = [(r(), w) for r, w in list(self._by_id.values())]
        return [(t, w) for t, w in pairs if t is not None]

    def __bool__(self) -> bool:
        return bool(self._by_id)


WATCHED = Watched()


_LAYOUTS: dict[tuple, tuple] = {}


def _new_layout(op: Any, layout: tuple) -> tuple:
    """A ``(shape, dtype)`` pair no record had yet: checked once, then shared by all that do.

    A recorded output requires grad, so it must hold real numbers: ``x * 1j``
    would otherwise fail only at backward, naming a VJP. (Booleans and integers
    are recorded: a comparison in a VJP traced by ``tape.compile``.)
    """
    shape, dtype = layout
    if dtype.kind not in "fbiu":
        raise TypeError(
            f"{op.name}: its result would be {dtype}[{', '.join(map(str, shape))}] and require "
            "grad, but tape differentiates real numbers only; compute it from x.detach() "
            "(or under tape.no_grad()) if no gradient should flow through it"
        )
    if len(_LAYOUTS) > 10_000:  # a program of ever-new shapes: start over
        _LAYOUTS.clear()
    return _LAYOUTS.setdefault(layout, layout)


class Node:
    """One tape record: ``op`` applied to inputs coming from ``parents`` gave ``output``.

    ``parents`` has one entry per input: the ``Node`` that made it, the leaf
    ``Tensor`` itself, or the constant it was (a number, an array, a Tensor
    without grad). ``saved`` holds exactly what the op's VJP reads, and is
    ``None`` once a pass released the record (``False`` after ``tape.clear()``);
    ``layout`` is the output's ``(shape, dtype)``; ``code`` and ``offset`` say
    which line of the user's code recorded it. Everything rare (a name, a
    scope, what the last pass sent along each edge) lives in ``notes``.
    """

    __slots__ = (
        "primitive",
        "params",
        "parents",
        "saved",
        "layout",
        "index",
        "code",
        "offset",
        "notes",
        "_output",
    )

    def __init__(
        self, op: Any, parents: tuple, saved: tuple, params: dict, output: Any, tape: Tape
    ) -> None:
        self.primitive = op  # the Op: forward, VJPs and what they read
        self.params = params
        self.parents = parents
        self.saved: tuple | None = saved
        data = output.data
        # (shape, dtype), known after the output is freed: one tuple per distinct pair
        layout = (data.shape, data.dtype)
        self.layout = _LAYOUTS.get(layout) or _new_layout(op, layout)
        self._output = ref = _weak(output)  # the output owns its node, not the reverse
        # Where the user asked for the op, inlined from user_code() because every
        # record pays for it: frame 3 skips this, apply and the op's public function.
        frame = _getframe(3)
        code = frame.f_code
        while code.co_filename in _OURS and frame.f_back is not None:
            frame = frame.f_back
            code = frame.f_code
        self.code, self.offset = code, frame.f_lasti
        self.notes: dict | None = None
        self.index = _next_index()
        refs = tape.refs
        refs.append(ref)
        if len(refs) >= tape.compact_at:
            tape.compact()

    @property
    def op(self) -> str:
        """The op's name, e.g. ``"matmul"``."""
        return self.primitive.name

    @property
    def shape(self) -> tuple:
        """The output's shape."""
        return self.layout[0]

    @property
    def dtype(self) -> np.dtype:
        """The output's dtype."""
        return self.layout[1]

    @property
    def name(self) -> str | None:
        """The output's name, if it was given one (``t.name = "h"``)."""
        return None if self.notes is None else self.notes.get("name")

    @property
    def released(self) -> str | None:
        """Who freed the saved values (``"backward"``, ``"tape.clear()"``), or ``None``."""
        if self.saved.__class__ is tuple:
            return None
        return "backward" if self.saved is None else "tape.clear()"

    @property
    def sent(self) -> Any:
        """What the last backward pass through this record sent: ``(g, {position: (part, shape)})``.

        ``g`` is the gradient the VJP received, each ``part`` what it sent to
        that input; arrays of up to ``FLOW_LIMIT`` entries, shapes beyond.
        """
        sent = None if self.notes is None else self.notes.get("sent")
        return None if sent is None or not sent[2][0] else sent[:2]  # the latest pass's only

    @property
    def where(self) -> tuple:
        """``(code, bytecode offset)`` of the user's line that recorded this node."""
        return (self.code, self.offset)

    def note(self, key: str, value: Any) -> None:
        if self.notes is None:
            self.notes = {}
        self.notes[key] = value

    def release(self, why: str) -> None:
        """Free what the VJP would have read; the structure stays (see ``release``)."""
        release([self], why)

    def __repr__(self) -> str:
        state = f", released by {self.released}" if self.released else ""
        return f"<Node #{self.index} {self.op}{state}>"


def release(nodes: list[Node], why: str) -> None:
    """Free what the records' VJPs would have read; the structure stays.

    A later backward through one of them raises, naming the op and its line.
    Constants given to the ops are freed too (their shapes stay), and so are
    the values a custom Function saved on its context. One loop for a whole
    pass: it runs once per record of every releasing backward.
    """
    mark = False if why == "tape.clear()" else None
    for node in nodes:
        node.saved = mark
        for p in node.parents:
            kind = p.__class__
            if (
                kind is Node
                or kind in _NUMBERS
                or (kind is np.ndarray and p.nbytes <= KEEP_BYTES)
                or getattr(p, "requires_grad", False)
            ):
                continue  # a record, a number, a small array or a leaf: nothing to free
            node.parents = _with_stand_ins(node.parents)
            break
        if node.params:
            params = node.params
            ctx = params.get("ctx")
            if ctx is not None:
                ctx.saved = None
            # arrays among the parameters too: an index, a condition, a clamp bound
            if any(_worth_freeing(v) for v in params.values()):
                node.params = {k: _stand_in(v) for k, v in params.items()}


def _with_stand_ins(parents: tuple) -> tuple:
    """``parents`` with each constant worth freeing replaced by its shape and dtype."""
    kept = []
    for p in parents:
        if p.__class__ is np.ndarray:
            if p.nbytes > KEEP_BYTES:  # freed()'s shared stand-in, looked up inline:
                p = _FREED.get((p.shape, p.dtype)) or freed(p)  # 8% of fan-out's release
        elif not getattr(p, "requires_grad", True) and p.data.nbytes > KEEP_BYTES:
            p = freed(p)  # a Tensor without grad (records, leaves, numbers stay)
        kept.append(p)
    return tuple(kept)


def _worth_freeing(value: Any) -> bool:
    """A parameter holding an array bigger than a stand-in: itself, or in an index's tuple."""
    return any(map(_big, value)) if value.__class__ is tuple else _big(value)


def _big(value: Any) -> bool:
    """What ``_with_stand_ins`` replaces: an array, or a Tensor without grad, past KEEP_BYTES."""
    if value.__class__ is np.ndarray:
        return value.nbytes > KEEP_BYTES
    return not getattr(value, "requires_grad", True) and value.data.nbytes > KEEP_BYTES


def _stand_in(value: Any) -> Any:
    """A parameter with each array worth freeing replaced by its shape and dtype."""
    if value.__class__ is tuple:  # an index
        return _with_stand_ins(value)
    return _with_stand_ins((value,))[0]


_NUMBERS = {float, int, bool, np.float64, np.float32, np.int64}


# A constant this small stays after release: a stand-in for it would cost as much memory.
KEEP_BYTES = 256


_FREED: dict[tuple, Freed] = {}


def freed(value: Any) -> Freed:
    """What a released record keeps of a constant: one shared ``Freed`` per shape for arrays.

    A Tensor keeps its name too, and a weak link while someone else holds it.
    """
    if isinstance(value, np.ndarray):
        key = (value.shape, value.dtype)
        found = _FREED.get(key)
        if found is None:
            if len(_FREED) > 10_000:  # a program of ever-new shapes: start over
                _FREED.clear()
            found = _FREED[key] = Freed(*key)
        return found
    return Freed(value.data.shape, value.data.dtype, value.name, weakref.ref(value))


class Freed:
    """What a released record keeps of a constant input: its shape and dtype.

    ``value`` is the constant while something else still holds it, else ``None``.
    """

    __slots__ = ("shape", "dtype", "name", "_ref")

    def __init__(self, shape: tuple, dtype: Any, name: str | None = None, ref: Any = None) -> None:
        self.shape, self.dtype, self.name, self._ref = shape, dtype, name, ref

    @property
    def value(self) -> Any:
        return None if self._ref is None else self._ref()

    def __repr__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}] (freed)"


def user_code(depth: int) -> tuple:
    """Where the user's code asked for the op: ``(code, bytecode offset)``.

    The first frame outside this package is the user's line. Keeping the code
    object and offset, not the frame, keeps no locals alive and is cheaper than
    ``f_lineno``; ``errors.where_recorded`` looks the line up when needed.
    """
    frame = sys._getframe(depth)
    while frame.f_code.co_filename in _OURS and frame.f_back is not None:
        frame = frame.f_back
    return (frame.f_code, frame.f_lasti)


def reachable(tips: Any) -> list[Node]:
    """Every record the nodes ``tips`` depend on (themselves included), oldest first.

    Iterative, so a graph of a million records is fine.
    """
    found: dict[Node, None] = {}
    stack = [n for n in tips if n is not None]
    while stack:
        node = stack.pop()
        if node not in found:
            found[node] = None
            stack.extend(p for p in node.parents if type(p) is Node and p not in found)
    return sorted(found, key=_index)


def _index(node: Node) -> int:
    return node.index


class Tape:
    """The records of one thread, in recording order.

    ``len(tape)`` counts the live records: not released by a backward pass,
    and still reachable from a tensor someone holds. Iterating yields them
    oldest first.
    """

    __slots__ = ("refs", "compact_at")

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []  # each record's weak reference to its output
        self.compact_at = 1024

    def compact(self) -> None:
        # Called when the list has doubled since the last time: amortised O(1) per record.
        self.refs[:] = [r for r in self.refs if r() is not None]
        self.compact_at = max(1024, 2 * len(self.refs))

    def _nodes(self) -> list[Node]:
        outputs = (r() for r in list(self.refs))
        return reachable([t.node for t in outputs if t is not None and t.node is not None])

    def __iter__(self) -> Iterator[Node]:
        for node in self._nodes():
            if node.saved.__class__ is tuple:
                yield node

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def since(self, index: int) -> list[Node]:
        """The records newer than ``index`` that a tensor made since still reaches.

        Walks back from the newest outputs only, so it costs what was recorded
        since ``index``, not the whole tape.
        """
        tips = []
        for ref in reversed(self.refs):
            t = ref()
            if t is not None and t.node is not None:
                if t.node.index <= index:
                    break
                tips.append(t.node)
        found: dict[Node, None] = {}
        while tips:
            node = tips.pop()
            if node not in found and node.index > index:
                found[node] = None
                tips.extend(p for p in node.parents if type(p) is Node)
        return sorted(found, key=_index)

    def clear(self) -> None:
        """Drop every record; tensors built before can no longer backprop, and say so."""
        for node in list(self):
            node.release("tape.clear()")
        self.refs.clear()
        self.compact_at = 1024

    def __repr__(self) -> str:
        return f"<Tape of {len(self)} live records>"


state = ThreadState()


def get_tape() -> Tape:
    """Return the current thread's tape."""
    return state.tape


def is_grad_enabled() -> bool:
    """Whether ops on Tensors that require grad are recorded in this thread."""
    return state.grad_enabled


class GradMode:
    """Context manager (and decorator) that sets recording on or off for its block."""

    __slots__ = ("_mode", "_saved")

    def __init__(self, mode: bool) -> None:
        self._mode = mode
        self._saved: list[bool] = []

    def __enter__(self) -> None:
        self._saved.append(state.grad_enabled)
        state.grad_enabled = self._mode

    def __exit__(self, *exc: object) -> None:
        state.grad_enabled = self._saved.pop()

    def __call__(self, fn: Any) -> Any:
        import functools

        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with GradMode(mode):
                return fn(*args, **kwargs)

        return wrapper


class detect_anomaly:
    """Raise ``FloatingPointError`` as soon as an op makes NaN or Inf.

    Inside the block every op's forward result, and every gradient a VJP
    produces in ``backward`` or ``tape.grad``, is checked; the error names the
    op and the line of user code that recorded it.
    """

    def __enter__(self) -> detect_anomaly:
        self._saved = state.anomaly
        state.anomaly = True
        return self

    def __exit__(self, *exc: object) -> None:
        state.anomaly = self._saved


def no_grad() -> GradMode:
    """Record nothing inside the block: results have ``requires_grad=False``.

    >>> w = tape.tensor([1.0], requires_grad=True)
    >>> with tape.no_grad():
    ...     (w * 2).requires_grad
    False
    """
    return GradMode(False)


def enable_grad() -> GradMode:
    """Turn recording back on inside a ``no_grad`` block."""
    return GradMode(True)


# ---- in-place changes, tracked per buffer -------------------------------------------------
# A view, a slice, ``detach()`` and the Tensor itself share one base array, so
# a change through any of them is a change of the base. Changes are rare (an
# optimizer step, ``+=`` under no_grad): the registry is small, and a record
# newer than the latest change skips the check entirely.

LAST_CHANGE = [0]
_CHANGED: dict[int, tuple[int, weakref.ref]] = {}


def _base(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


# Threads stepping their optimizers at once; re-entrant, because a collection during the
# pruning may run a __del__ that writes a tensor in place, on this very thread.
_CHANGING = threading.RLock()
_PRUNE_AT = [1024]


def mark_changed(array: np.ndarray) -> None:
    """Note that ``array``'s buffer was written in place, now.

    Under a lock: the registry is pruned while others write to it, and an index
    taken and stored by two threads out of order would move ``LAST_CHANGE``
    back, and the check would skip records older than a change.
    """
    base = _base(array)
    with _CHANGING:
        LAST_CHANGE[0] = index = next(INDEX)
        if len(_CHANGED) > _PRUNE_AT[0]:  # drop buffers that died, when the registry doubled
            for key in list(_CHANGED):  # a list of keys: a re-entrant call may change the dict
                entry = _CHANGED.get(key)
                if entry is not None and entry[1]() is None:
                    _CHANGED.pop(key, None)
            _PRUNE_AT[0] = max(1024, 2 * len(_CHANGED))
        _CHANGED[id(base)] = (index, weakref.ref(base))


def changed_at(array: Any) -> int:
    """The index of the latest in-place change of ``array``'s buffer (0: never changed)."""
    if not isinstance(array, np.ndarray):
        return 0
    base = _base(array)
    entry = _CHANGED.get(id(base))
    return entry[0] if entry is not None and entry[1]() is base else 0
