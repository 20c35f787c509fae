"""Tensor: a NumPy array that remembers the op that made it.

This module holds the data model only. The math lives in ``ops.py``, whose
registration attaches each op to ``Tensor`` as a method and operator, and
``autodiff.py`` attaches ``backward``; so this file never imports them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .errors import describe, label, real_gradient
from .record import WATCHED, Freed, Node, mark_changed, state

# Filled by ops.py: how NumPy's ufuncs and functions map onto recorded ops.
UFUNC_OPS: dict[Any, Callable[..., Any]] = {}
FUNCTION_OPS: dict[Any, Callable[..., Any]] = {}
# NumPy functions whose result carries no gradient, so running them on the data is safe.
NONDIFF_FUNCTIONS: set[Any] = set()


class _Tracing(threading.local):
    """``tape.compile``'s hook while it traces in this thread (``None`` otherwise).

    It sees values about to leave the tape: a Tensor turned into a Python value
    (``to_python``, which raises ``TraceError``) and results of NumPy functions and
    comparisons the tape does not record (``untracked``, which records them).
    """

    hook: Any = None


TRACING = _Tracing()


class Tensor:
    """An ``np.ndarray`` plus what autodiff needs: ``requires_grad``, ``grad``, ``node``.

    >>> x = tape.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4.])
    """

    __slots__ = ("data", "requires_grad", "node", "_grad", "_name", "__weakref__")
    __array_priority__ = 1000

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        name: str | None = None,
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        try:
            array = np.array(data, dtype=dtype)
        except (ValueError, TypeError) as e:  # a ragged list, a dtype NumPy does not know
            raise type(e)(
                f"tensor: NumPy cannot make an array of this data ({e}); pass a rectangular "
                "nested list or an array of numbers, and a NumPy dtype"
            ) from e
        if requires_grad and not np.issubdtype(array.dtype, np.floating):
            raise TypeError(
                f"tensor: requires_grad=True needs floating-point data, got {describe(array)}; "
                "pass dtype=np.float64 (or np.float32), or write the data as floats (1.0, not 1)"
            )
        self.data = array
        self.requires_grad = bool(requires_grad)
        self.node: Node | None = None
        self._grad: np.ndarray | None = None
        self._name = name

    # ---- attributes ---------------------------------------------------------
    @property
    def grad(self) -> np.ndarray | None:
        """The accumulated gradient: an array of this tensor's shape and dtype, or ``None``."""
        if self.node is not None and not _retains(self):
            warnings.warn(
                f"the .grad of a non-leaf tensor ({label(self)}) is not kept; "
                "call .retain_grad() on it before backward, or read the gradient "
                "with tape.grad(loss, [t]); if it was a parameter, an update "
                "`w = w - lr * w.grad` made it an op's result: update in place with "
                "`w -= lr * w.grad` inside `with tape.no_grad():`",
                UserWarning,
                stacklevel=2,
            )
            return None
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is None:
            self._grad = None
            return
        value = real_gradient(value.data if isinstance(value, Tensor) else value, "grad", self)
        if value.shape != self.data.shape:
            raise ValueError(
                f"grad: cannot set a gradient of shape {value.shape} on a tensor of "
                f"{describe(self)}; a gradient has its tensor's shape"
            )
        self._grad = value.astype(self.data.dtype, copy=False)

    @property
    def name(self) -> str | None:
        """Optional label used in diagrams and error messages."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value
        if self.node is not None:  # the record keeps it: diagrams name a freed output too
            self.node.note("name", value)

    @property
    def is_leaf(self) -> bool:
        """True for tensors no recorded op produced (the ones that get ``.grad``)."""
        return self.node is None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    # ---- conversions ---------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as an ``np.ndarray`` (shared, not copied)."""
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "t.numpy()")
        return self.data

    def item(self) -> Any:
        """The single element as a Python number."""
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "t.item()")
        if self.data.size != 1:
            raise ValueError(
                f"item: only a tensor with one element converts to a Python number, "
                f"this one is {describe(self)}; index it first, or use .tolist()"
            )
        return self.data.item()

    def tolist(self) -> Any:
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "t.tolist()")
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this data, cut from the graph (``requires_grad=False``).

        It shares the buffer, so an in-place change through it is a change of
        this tensor too, and backward refuses a VJP that would read the old value.
        """
        if TRACING.hook is not None:  # tape.compile: the value is traced, its gradient stops
            traced = TRACING.hook.untracked(np.asarray, (self,), {})
            if traced is not None:
                return traced
        return wrap(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``.grad = None``)."""
        self._grad = None

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if TRACING.hook is not None:  # a traced value read as an array would be frozen
            TRACING.hook.to_python(self, "np.asarray(t)")
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor; use .item() to read its value")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]  # type: ignore[index]

    def __bool__(self) -> bool:
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "bool(t) (an `if` or `while` on a Tensor)")
        return bool(self.data)

    def __float__(self) -> float:
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "float(t)")
        return float(self.item())

    def __int__(self) -> int:
        if TRACING.hook is not None:
            TRACING.hook.to_python(self, "int(t)")
        return int(self.item())

    __hash__ = object.__hash__  # comparisons return Tensors; identity stays the hash

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extras = [f"dtype={self.data.dtype}"] if self.data.dtype != np.float64 else []
        if self.requires_grad:
            extras.append("requires_grad=True")
        if self.node is not None:
            extras.append(f"op={self.node.op}")
        if self.name:
            extras.append(f"name={self.name!r}")
        return f"tensor({body}{''.join(', ' + e for e in extras)})"

    # ---- in-place updates (optimizers) -------------------------------------------
    def _inplace(self, other: Any, ufunc: Any, symbol: str) -> Tensor:
        other_requires = isinstance(other, Tensor) and other.requires_grad
        if state.grad_enabled and (self.requires_grad or other_requires):
            raise RuntimeError(
                f"{symbol}: cannot update {label(self)} in place while recording, because "
                "the tape would lose the value it saved; wrap the update in "
                "`with tape.no_grad():` (as optimizers do) or write `t = t ... x`"
            )
        try:
            ufunc(self.data, other.data if isinstance(other, Tensor) else other, out=self.data)
        except (TypeError, ValueError) as e:  # NumPy's own subclasses take other arguments
            kind = TypeError if isinstance(e, TypeError) else ValueError
            raise kind(
                f"{symbol}: cannot update {describe(self)} with {describe(other)}: {e}"
            ) from e
        mark_changed(self.data)
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace(other, np.add, "+=")

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace(other, np.subtract, "-=")

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace(other, np.multiply, "*=")

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace(other, np.true_divide, "/=")

    def __setitem__(self, key: Any, value: Any) -> None:
        """``t[key] = value`` outside recording (as in an optimizer); checked before writing."""
        if state.grad_enabled and self.requires_grad:
            raise RuntimeError(
                f"item assignment: cannot write into {label(self)} while recording, "
                "because the tape would lose the values it saved; build the new values "
                "with tape.where(mask, new, t) or tape.concatenate, or write under "
                "`with tape.no_grad():`"
            )
        held = grad_tensor_in(value) if state.grad_enabled else None  # itself, or in a list
        if held is not None:
            raise RuntimeError(
                f"item assignment: cannot write {label(held)}, which requires grad, into "
                f"{label(self)}: the write copies values, so its gradient would be lost; "
                "build the new tensor with tape.where(mask, value, t), tape.concatenate or "
                "tape.stack, or write value.detach() if no gradient should flow"
            )
        new = value.data if isinstance(value, Tensor) else np.asarray(value)
        try:
            target = self.data[plain_key(key)]
            np.broadcast_to(new, np.shape(target))
            if not np.can_cast(new.dtype, self.data.dtype, casting="same_kind"):
                raise TypeError(f"cannot cast {new.dtype} to {self.data.dtype}")
        except (TypeError, ValueError, IndexError) as e:
            raise type(e)(
                f"item assignment: cannot write {describe(new)} into {describe(self)} at "
                f"{key!r}: {e}"
            ) from None
        self.data[plain_key(key)] = new  # validated above: this write cannot fail half-way
        mark_changed(self.data)

    # ---- NumPy interop ---------------------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method == "__call__":
            op = UFUNC_OPS.get(ufunc)
            if op is not None and not kwargs:
                return op(*inputs)
            if op is not None and state.grad_enabled and grad_tensor_in(inputs) is not None:
                raise TypeError(
                    f"np.{ufunc.__name__} on a Tensor that requires grad takes no keyword "
                    f"arguments (got {', '.join(kwargs)}); call it without them, e.g. "
                    f"np.{ufunc.__name__}(x, y), or cast with t.astype(...) first"
                )
            return _run_on_data(f"np.{ufunc.__name__}", ufunc, ufunc, inputs, kwargs)
        return _run_on_data(
            f"np.{ufunc.__name__}.{method}",
            None,
            getattr(ufunc, method),
            inputs,
            kwargs,
            writes="a" if method == "at" else None,  # np.add.at(w, i, 1) adds into w itself
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        op = FUNCTION_OPS.get(func)
        if op is not None:
            return op(*args, **kwargs)
        where = getattr(func, "__module__", "numpy") or "numpy"
        name = f"{where.replace('numpy', 'np', 1)}.{func.__name__}"
        return _run_on_data(name, func, func, args, kwargs, writes=WRITES_FIRST.get(func))

    # ---- Jupyter ---------------------------------------------------------------------
    def _repr_html_(self) -> str:
        """How a Tensor shows itself in a notebook: name, dtype and shape, data, ``.grad``, op.

        Never warns: a non-leaf that keeps no ``.grad`` says so in the table.
        """
        import html

        from .teaching import user_line  # the page's way of naming a line (cells, not files)

        def show(a: np.ndarray) -> str:
            text = np.array2string(
                a, separator=", ", precision=4, threshold=48, edgeitems=3, max_line_width=60
            )
            return f"<pre style='margin: 0'>{html.escape(text)}</pre>"

        try:
            data = show(self.data)
        except RuntimeError:  # a stand-in: the values were freed
            data = "<i>freed</i> (nothing held it and no VJP needed it)"
        if not self.requires_grad:
            grad = "<i>no gradient</i> (requires_grad=False)"
        elif self.node is not None and not _retains(self):
            grad = (
                "<i>not kept</i>: a non-leaf; call <code>.retain_grad()</code> before "
                "backward, or read it with <code>tape.grad(loss, [t])</code>"
            )
        elif self._grad is None:
            grad = "<code>None</code>: no backward pass has reached it yet"
        else:
            grad = show(self._grad)
        if self.node is None:
            made = "a leaf: no op made it" if self.requires_grad else "a constant"
        else:
            node = self.node
            made = (
                f"<code>{html.escape(node.op)}</code> (record #{node.index}), "
                f"recorded at <code>{html.escape(user_line(node))}</code>"
            )
        title = html.escape(self.name) if self.name else "tensor"
        shape = f"{self.dtype}[{', '.join(map(str, self.shape))}]"
        rows = [("data", data), (".grad", grad), ("made by", made)]
        body = "".join(
            f"<tr><th style='text-align: left; vertical-align: top'>{k}</th>"
            f"<td style='text-align: left'>{v}</td></tr>"
            for k, v in rows
        )
        flag = ", requires_grad" if self.requires_grad else ""
        return (
            f"<div class='tape-tensor'><b>{title}</b> <code>{shape}</code>{flag}"
            f"<table>{body}</table></div>"
        )


def grad_tensor_in(value: Any) -> Tensor | None:
    """The Tensor that requires grad in ``value``: ``value`` itself, or one inside nested
    lists and tuples (walked without recursion); ``None`` when there is none."""
    waiting = [value]
    while waiting:
        v = waiting.pop()
        if isinstance(v, Tensor):
            if v.requires_grad:
                return v
        elif isinstance(v, list | tuple):
            waiting.extend(v)
    return None


def _unwrap(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, list | tuple):
        return type(value)(_unwrap(v) for v in value)
    return value


# NumPy functions that write into their first argument, by the name it has as a keyword
WRITES_FIRST = {
    np.copyto: "dst",
    np.put: "a",
    np.putmask: "a",
    np.place: "arr",
    np.fill_diagonal: "a",
    np.put_along_axis: "arr",
}


def _run_on_data(
    what: str, key: Any, fn: Any, args: Any, kwargs: dict, writes: str | None = None
) -> Any:
    """Run a NumPy function tape has no rule for, only when no gradient is lost.

    A Tensor written through ``out=``, or as the first argument of a function
    that writes into it (``np.copyto``, ``np.put``, ``np.add.at``, ...; named
    ``writes`` when given as a keyword), is marked changed, so backward refuses
    a VJP that would read its old value.
    """
    written = kwargs.get("out", ())
    written = written if isinstance(written, tuple) else (written,)
    if writes is not None:
        written = (*written, args[0] if args else kwargs.get(writes))
    if state.grad_enabled:
        target = grad_tensor_in(list(written))
        if target is not None:
            raise TypeError(
                f"{what}: it would write into {label(target)} in place, and that tensor "
                "requires grad: tape records no in-place ops; compute a new tensor instead, "
                "or write under tape.no_grad() (as an optimizer step does)"
            )
        read = [a for a in args if not any(a is t for t in written)]
        read += [v for k, v in kwargs.items() if k not in ("out", writes)]
        if grad_tensor_in(read) is not None and key not in NONDIFF_FUNCTIONS:
            raise TypeError(
                f"{what} has no gradient rule in tape, and one of its inputs requires grad, "
                "so the result would silently drop out of the graph; use the tape op of the "
                "same name if there is one (see docs/ops.md), compute on t.detach() if no "
                "gradient should flow, or write a tape.Function with its backward"
            )
    if TRACING.hook is not None:
        traced = TRACING.hook.untracked(fn, args, kwargs)
        if traced is not None:
            return traced
    result = fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    for t in written:
        if isinstance(t, Tensor):
            mark_changed(t.data)
    return result


def plain_key(key: Any) -> Any:
    """An index with its Tensors replaced by their arrays (``t[i]`` where ``i`` is a Tensor)."""
    if isinstance(key, Tensor):
        return key.data
    if isinstance(key, tuple):
        return tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return key


def _retains(t: Tensor) -> bool:
    watch = WATCHED.get(t)
    return watch is not None and watch.retain


def wrap(data: np.ndarray) -> Tensor:
    """Make a Tensor around an array the engine just computed (no copy, no checks)."""
    t = _new(Tensor)
    t.data = data
    t.requires_grad = False
    t.node = t._grad = t._name = None
    return t


def on_graph(data: Any, node: Node) -> Tensor:
    """A Tensor for a value ``node`` produced: the walk sends its gradient to ``node``.

    A create_graph pass reads saved values through these, so the ops its VJPs
    run are recorded with the right parents.
    """
    t = wrap(data)
    t.requires_grad = True
    t.node = node
    t._name = node.name
    return t


_new = object.__new__


class Standin(Tensor):
    """A freed value in ``node.inputs`` or ``node.output``: shape, dtype, name, record; no data.

    The graph keeps its structure after the values are gone, so it can always
    be walked through ``.node.inputs``; reading ``.data`` says what happened.
    """

    __slots__ = ("meta",)

    @property  # type: ignore[override]
    def data(self) -> np.ndarray:
        made = f"the output of {self.node.op!r} (#{self.node.index})" if self.node else "a constant"
        raise RuntimeError(
            f"{made} was freed: nothing held it and no VJP needed its values (or a "
            "backward pass released them); keep a reference to the tensor, or pass "
            "retain_graph=True, to read its data"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.meta[0]

    @property
    def dtype(self) -> np.dtype:
        return self.meta[1]

    @property
    def ndim(self) -> int:
        return len(self.meta[0])

    @property
    def size(self) -> int:
        return int(np.prod(self.meta[0], dtype=np.int64))

    def __repr__(self) -> str:
        made = f", op={self.node.op}" if self.node else ""
        return f"<freed tensor {self.meta[1]}{list(self.meta[0])}{made}>"


def _standin(meta: tuple, node: Node | None, name: str | None) -> Standin:
    t = _new(Standin)
    t.meta, t.node, t._name, t._grad = meta, node, name, None
    t.requires_grad = node is not None
    return t


def _output(node: Node) -> Tensor:
    t = node._output()
    return t if t is not None else _standin(node.layout, node, node.name)


def _input(parent: Any) -> Tensor:
    if type(parent) is Node:
        return _output(parent)
    if isinstance(parent, Tensor):
        return parent
    if isinstance(parent, Freed):
        value = parent.value
        if isinstance(value, Tensor):
            return value
        return _standin((parent.shape, parent.dtype), None, None)
    return Tensor(parent)


Node.output = property(_output, doc="The Tensor this record produced (a stand-in once freed).")  # type: ignore[attr-defined]
Node.inputs = property(  # type: ignore[attr-defined]
    lambda node: tuple(_input(p) for p in node.parents),
    doc="The op's inputs as Tensors: the very Tensor while someone holds it, else a stand-in.",
)
