"""Compiled steps: the forward and backward pass of a graph, written out as NumPy code.

``tape.compile(f)`` runs ``f`` once on Tensors that require grad, asks
``tape.grad(..., create_graph=True)`` for the gradients (so the backward pass
is recorded too: every VJP is ordinary differentiable code, and each line of it
is a record: ``mul``, ``sum``, ``reshape``, ``matmul``, ...), then walks the
records from the results back and writes one line of NumPy per record::

    z = X @ W                      # matmul  seed.py:7
    ...
    dz = dsub * greater            # mul     (the VJP of relu: g * (out > 0))
    dW = X.T @ dz                  # matmul
    db = dz.sum(axis=0)            # sum     (un-broadcasting b)

Each primitive therefore needs only the code form of its *forward* (the
``FORMS`` table below); the derivative formulas are the engine's own, read
off the tape. The source is compiled once per input shapes and dtypes and
cached, so later calls run straight-line NumPy with no tape at all.

What a trace cannot see it refuses (``TraceError``) instead of freezing:
turning a traced Tensor into a Python value (``float(t)``, ``if t > 0:``) or
reading it as a plain array (``np.asarray(t)``).
Comparisons and NumPy functions the tape does not record (``out > 0`` inside
relu's VJP, ``np.sign`` inside abs's) are recorded while tracing, through one
hook in ``tensors.py``, so masks are recomputed on every call, not frozen.

Constants. Python scalars become literals; arrays ``f`` closes over become
module-level constants of the source (small ones as ``np.array([...])``,
larger ones as views into one block of bytes, written in hex and decoded
once), so ``source`` runs on its own. Tensors that require grad and that
``f`` closes over (a model's parameters) are keyword arguments of the
generated function: ``compile``
passes their current ``.data`` on every call, so an optimizer's updates are
seen; their defaults in the source are the values at trace time.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import itertools
import keyword
import linecache
import math
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autodiff import grad as tape_grad
from .errors import (
    TraceError,
    code_location,
    describe,
    from_command_line,
    label,
    where_recorded,
)
from .func import argnums_positions
from .function import Function, Op, apply
from .ops import TENSOR_BOUND
from .record import enable_grad, reachable, user_code
from .tensors import TRACING, Tensor

__all__ = ["Compiled", "code", "compile"]


# ---- tracing: what leaves the tape is recorded, or refused ---------------------------------

# NumPy functions whose result describes an array's layout, not its values: safe to run.
_METADATA = {
    np.shape, np.ndim, np.size, np.result_type, np.can_cast, np.iscomplexobj, np.isrealobj,
    np.array_repr, np.array_str, np.array2string,
}  # fmt: skip


def _untracked_forward(*xs: Any, fn: Any, kwargs: dict) -> Any:
    return fn(*xs, **kwargs)


def _no_gradient(g: Any, out: Any, *xs: Any, fn: Any, kwargs: dict) -> tuple:
    return (None,) * len(xs)  # comparisons, sign, isnan: no gradient flows through them


@functools.cache
def _untracked_op(fn: Any) -> Op:
    """The record a traced comparison or NumPy function makes: its forward is ``fn``."""
    op = Op(getattr(fn, "__name__", "function"), _untracked_forward)
    op.defvjp_all(_no_gradient)
    return op


def _traced(value: Any) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


def _here() -> str:
    return code_location(user_code(1))


class _Hook:
    """Installed in ``tensor.TRACING`` while ``f`` runs: records or refuses what leaves the tape."""

    def __init__(self) -> None:
        self.kept: list[Tensor] = []  # untracked results, alive until the code is written
        self.seed: Tensor | None = None

    def to_python(self, t: Tensor, what: str) -> None:
        if _traced(t):
            raise TraceError(
                f"tape.compile: {what} at {_here()} turns a traced Tensor ({describe(t)}) into "
                "a Python value; a trace records ops, not values, so that value would be frozen "
                "into every later call. Keep it a Tensor (tape.where(cond, a, b) for a "
                "data-dependent choice, tape.maximum, tape.clamp), or call f without compile"
            )

    def untracked(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        if not any(_traced(a) for a in args):
            if any(_traced(v) for v in kwargs.values()) or any(
                isinstance(a, list | tuple) and any(_traced(v) for v in a) for a in args
            ):
                raise TraceError(
                    f"tape.compile: {getattr(fn, '__name__', fn)} at {_here()} gets a traced "
                    "Tensor inside a list or as a keyword; pass it as a positional argument"
                )
            return None
        name = getattr(fn, "__name__", None)
        result = fn(*[a.data if isinstance(a, Tensor) else a for a in args], **kwargs)
        if not isinstance(result, np.ndarray | np.generic):
            if fn in _METADATA:
                return None
            raise TraceError(
                f"tape.compile: np.{name} at {_here()} turns a traced Tensor into a Python "
                f"value ({type(result).__name__}); keep the computation in Tensors"
            )
        if name not in _COMPARISONS and getattr(np, name or "", None) is not fn:
            raise TraceError(
                f"tape.compile: {fn!r} at {_here()} has no code form (it is not a NumPy "
                "function tape can name); write it with tape ops or a tape.Function"
            )
        t = apply(_untracked_op(fn), tuple(args), {"fn": fn, "kwargs": dict(kwargs)})
        self.kept.append(t)
        return t


class _Tracing:
    """``with _Tracing() as hook:`` installs the hook (nesting keeps the outer one)."""

    def __enter__(self) -> _Hook:
        self.saved = TRACING.hook
        TRACING.hook = self.hook = _Hook()
        return self.hook

    def __exit__(self, *exc: object) -> None:
        TRACING.hook = self.saved


# ---- custom Functions: called through their own forward and backward ---------------------


def _custom(node: Any) -> str | None:
    """``"forward"`` for a ``tape.Function`` record, ``"backward"`` for the record its
    gradient carries under ``create_graph``, else ``None``.

    The one place that knows how the engine marks a Function (``Op.once`` today).
    """
    if node.op == "function_backward":
        return "backward"
    return "forward" if getattr(node.primitive, "once", False) else None


def _function_class(node: Any) -> type:
    """The ``tape.Function`` subclass that recorded ``node``."""
    todo = list(Function.__subclasses__())
    while todo:
        cls = todo.pop()
        if getattr(cls, "_op", None) is node.primitive:
            return cls
        todo.extend(cls.__subclasses__())
    raise TraceError(f"tape.compile: cannot find the tape.Function that recorded {node.op!r}")


# ---- code forms: how to write each primitive's forward -------------------------------------

_COMPARISONS = {
    "greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "equal": "==",
    "not_equal": "!=", "bitwise_and": "&", "bitwise_or": "|",
}  # fmt: skip
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@"}
_UNARY = {"exp": "np.exp", "log": "np.log", "sqrt": "np.sqrt", "abs": "np.abs", "tanh": "np.tanh"}
_UNARY.update(
    {name: f"np.{name}" for name in (
        "sin cos tan arcsin arccos arctan sinh cosh log1p expm1 log2 log10 exp2 square "
        "reciprocal sign"
    ).split()}
)  # fmt: skip
# ufuncs for writing into a buffer the generated code owns (out=)
_UFUNCS = {
    "add": "np.add", "sub": "np.subtract", "mul": "np.multiply", "div": "np.divide",
    "pow": "np.power", "maximum": "np.maximum", "minimum": "np.minimum", "neg": "np.negative",
    **_UNARY, "abs": "np.absolute",
}  # fmt: skip
_AUGMENTED = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/="}
# ops that broadcast elementwise: they accept an operand smaller than its recorded shape
_ELEMENTWISE = {
    *_BINARY, *_UNARY, *_COMPARISONS, "neg", "sigmoid", "relu", "clamp", "maximum", "minimum",
    "where", "astype", "sign", "isnan", "isfinite", "isinf", "logical_not", "invert",
} - {"matmul"}  # fmt: skip

_HELPERS = {
    "_sigmoid": """def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never exp of a large positive number
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))""",
    "_max_kept": """def _max_kept(x, axis):
    if x.dtype.kind == "f":  # an empty axis has no max: -inf
        return np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return np.max(x, axis=axis, keepdims=True)""",
    "_softmax": """def _softmax(x, axis):
    e = np.exp(x - _max_kept(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)""",
    "_log_softmax": """def _log_softmax(x, axis):
    shifted = x - _max_kept(x, axis)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))""",
    "_scatter": """def _scatter(g, key, shape):
    out = np.zeros(shape, dtype=g.dtype)  # the transpose of x[key]
    out[key] = g
    return out""",
    "_scatter_add": """def _scatter_add(g, key, shape):
    out = np.zeros(shape, dtype=g.dtype)  # the transpose of x[key]; repeats add up
    np.add.at(out, key, g)
    return out""",
    "_logsumexp": """def _logsumexp(x, axis, keepdims):
    m = _max_kept(x, axis)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)""",
    "_const": """def _const(offset, dtype, shape):
    # a view into _BLOCK, where every larger constant lies side by side (one read stream)
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return _BLOCK[offset : offset + size].view(dtype).reshape(shape)""",
    "_function_forward": '''class _Context:
    """What a tape.Function's forward leaves for its backward (as tape.Context)."""

    def __init__(self):
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


def _function_forward(function, *arrays, **kwargs):
    ctx = _Context()
    return np.asarray(function.forward(ctx, *arrays, **kwargs)), ctx


def _function_backward(function, ctx, g):
    return [None if p is None else np.array(p) for p in function.backward(ctx, g)]''',
}


_ASSIGN = re.compile(r"(\w+) = ([^;=]+)")
_AUGMENTED_USE = re.compile(r"(\w+) ([-+*/]=) (\w+)")


def _fold_temporaries(lines: list, tail: str) -> list:
    """``t = w * c`` then ``s += t``, with ``t`` read nowhere else: ``s += w * c``.

    As a person writes it, and one name less for Python to store and drop per use
    (the fan-out adds one product per use this way, as the hand-written loop does).
    """
    text = "\n".join(line for line, _ in lines) + "\n" + tail
    out: list = []
    for line, comment in lines:
        use = _AUGMENTED_USE.fullmatch(line)
        made = _ASSIGN.fullmatch(out[-1][0]) if use and out else None
        if (
            made
            and made.group(1) == use.group(3)
            and len(re.findall(rf"\b{use.group(3)}\b", text)) == 2
        ):
            first = out.pop()[1]
            op = first.split()[0] if first else ""
            comment = f"{op}, {comment}" if op and comment else comment
            line = f"{use.group(1)} {use.group(2)} {made.group(2)}"
        out.append((line, comment))
    return out


_OPERAND = object()
# A buffer this big is ``del``-ed as soon as nothing reads it (NumPy reuses the memory);
# for a smaller one the extra line costs more than the memory it returns early.
DEL_ABOVE = 1 << 16  # a clamp bound that is one of the record's inputs


def _param_code(v: Any) -> str:
    """A parameter (an axis, an ``ord``, a ``ddof``, a string) as source that evaluates to it.

    ``repr`` alone is not source for every value: ``inf`` and ``nan`` are no names.
    """
    if isinstance(v, bool | np.bool_) or v is None or isinstance(v, str):
        return repr(v if not isinstance(v, np.bool_) else bool(v))
    if isinstance(v, int | float | np.integer | np.floating):
        return _py_literal(v)
    if isinstance(v, tuple | list):
        inner = ", ".join(_param_code(x) for x in v)
        if isinstance(v, list):
            return f"[{inner}]"
        return f"({inner}{',' if len(v) == 1 else ''})"
    return repr(v)


def _axis_code(axis: Any) -> str:
    if isinstance(axis, list | tuple) and len(axis) == 1:
        axis = axis[0]
    return _param_code(tuple(axis) if isinstance(axis, list) else axis)


def _reduce_args(p: dict) -> str:
    parts = [] if p.get("axis") is None else [f"axis={_axis_code(p['axis'])}"]
    if p.get("keepdims"):
        parts.append("keepdims=True")
    return ", ".join(parts)


def _dtype_code(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    return "bool" if dtype.kind == "b" else f"np.{dtype.name}"


def _value_code(v: Any) -> str:
    """A keyword argument of a NumPy call (``dtype=bool``) as source."""
    if isinstance(v, type) and v in (bool, int, float, complex):
        return v.__name__
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return _dtype_code(v)
    return _param_code(v)


def _form(node: Any, a: list[str], p: dict) -> str:
    """The expression computing ``node``'s forward from operand codes ``a`` and params ``p``."""
    op = node.op
    if op in _BINARY:
        return f"{a[0]} {_BINARY[op]} {a[1]}"
    if op in _UNARY:
        return f"{_UNARY[op]}({a[0]})"
    if op == "neg":
        return f"-{a[0]}"
    if op == "relu":
        return f"np.maximum({a[0]}, 0)"
    if op == "sigmoid":
        return f"_sigmoid({a[0]})"
    if op == "clamp":  # a bound given as a Tensor is one of the operands after x
        rest = iter(a[1:])
        lo = next(rest) if p.get("min") is _OPERAND else p.get("min")
        hi = next(rest) if p.get("max") is _OPERAND else p.get("max")
        return f"np.clip({a[0]}, {lo}, {hi})"
    if op in ("prod", "var", "std"):
        ddof = f", ddof={_param_code(p['ddof'])}" if p.get("ddof") else ""
        args = _reduce_args(p)
        return f"np.{op}({a[0]}{', ' + args if args else ''}{ddof})"
    if op == "logsumexp":
        return f"_logsumexp({a[0]}, {_axis_code(p['axis'])}, {bool(p.get('keepdims'))})"
    if op == "norm":
        return (
            f"np.linalg.norm({a[0]}, ord={_param_code(p['ord'])}, axis={_axis_code(p['axis'])}, "
            f"keepdims={bool(p.get('keepdims'))})"
        )
    if op in ("cumsum", "flip", "squeeze"):
        return f"np.{op}({a[0]}, axis={_axis_code(p['axis'])})"
    if op == "expand_dims":
        return f"np.expand_dims({a[0]}, {_axis_code(p['axis'])})"
    if op == "split":
        return f"{a[0]}[{':, ' * p['axis']}{p['start']}:{p['stop']}]"
    if op in ("dot", "outer"):
        return f"np.{op}({a[0]}, {a[1]})"
    if op == "einsum":
        optimize = ", optimize=True" if len(a) > 2 else ""  # as the engine's forward
        return f"np.einsum({p['subscripts']!r}, {', '.join(a)}{optimize})"
    if op in ("sum", "mean", "max", "min"):
        return f"{a[0]}.{op}({_reduce_args(p)})"
    if op in ("softmax", "log_softmax"):
        return f"_{op}({a[0]}, {_axis_code(p['axis'])})"
    if op == "reshape":
        return f"{a[0]}.reshape({tuple(p['shape'])!r})"
    if op == "transpose":
        return f"{a[0]}.transpose()" if p["axes"] is None else f"{a[0]}.transpose({p['axes']!r})"
    if op == "broadcast_to":
        return f"np.broadcast_to({a[0]}, {tuple(p['shape'])!r})"
    if op == "astype":
        return f"{a[0]}.astype({_dtype_code(p['dtype'])})"
    if op == "getitem":
        return f"{a[0]}[{p['key']}]"
    if op == "index_add":
        helper = "_scatter" if p["basic"] else "_scatter_add"
        return f"{helper}({a[0]}, np.s_[{p['key']}], {tuple(p['shape'])!r})"
    if op in ("concatenate", "stack"):
        return f"np.{op}(({', '.join(a)},), axis={p['axis']!r})"
    if op == "where":  # the recorded op (cond a parameter), or np.where on a traced cond alone
        return (
            f"np.where({p['cond']}, {a[0]}, {a[1]})"
            if "cond" in p
            else f"np.where({a[0]}, {a[1]}, {a[2]})"
        )
    if op in ("maximum", "minimum"):
        return f"np.{op}({a[0]}, {a[1]})"
    if op in _COMPARISONS and len(a) == 2:
        return f"{a[0]} {_COMPARISONS[op]} {a[1]}"
    if "fn" in p:  # a NumPy function the trace recorded (np.sign, np.isnan, ...)
        kw = "".join(f", {k}={_value_code(v)}" for k, v in p["kwargs"].items())
        return f"np.{op}({', '.join(a)}{kw})"
    raise TraceError(
        f"tape.compile: the op {op!r} (recorded at {where_recorded(node)}) has no code form; "
        "add one to FORMS in tape/compile.py (its forward written as NumPy)"
    )


FORMS = (
    sorted({*_BINARY, *_UNARY, *_COMPARISONS})
    + "neg relu sigmoid clamp sum mean max min softmax log_softmax reshape transpose".split()
    + "broadcast_to astype getitem index_add concatenate stack where maximum minimum".split()
    + "prod var std logsumexp norm cumsum flip squeeze expand_dims split dot outer".split()
    + ["einsum"]
)
"""The ops ``_form`` can write (besides the NumPy functions a trace records by name)."""


# ---- the generator ----------------------------------------------------------------------------


class _Val:
    """A value of the generated code: how to write it, its shape and dtype, who owns it.

    ``shape`` may be smaller than the record's (a broadcast the generator left
    to the elementwise op that consumes it); ``root`` names the buffer, set only
    for arrays the generated code allocated, the ones it may overwrite.
    """

    __slots__ = ("code", "shape", "dtype", "root", "scalar", "own", "weak", "ordered")

    def __init__(
        self,
        code: str,
        shape: tuple,
        dtype: Any,
        root: int | None = None,
        scalar: Any = None,
        own: bool = False,
        weak: bool = False,
        ordered: bool = False,
    ) -> None:
        self.code, self.shape, self.dtype = code, tuple(shape), np.dtype(dtype)
        self.root, self.scalar, self.own = root, scalar, own
        self.weak = weak  # a Python number the op was given: NumPy lets the array's dtype win
        # known to lie in memory in C order (or to have one axis longer than 1, where every
        # layout is the same): the layout NumPy gives the result of an op on it
        self.ordered = ordered or sum(n > 1 for n in self.shape) <= 1


# a line that calls a helper brings the helper's definition into the source
_HELPER_CALL = re.compile(rf"\b({'|'.join(sorted(_HELPERS, key=len, reverse=True))})\(")


def _with_their_helpers(helpers: Any) -> list[str]:
    """``helpers`` and the helpers they call (``_softmax`` calls ``_max_kept``)."""
    needed = list(helpers)
    for name in needed:  # the list grows while it is read: a breadth-first closure
        body = _HELPERS[name].split("\n", 1)[-1]  # not its own ``def`` line
        needed.extend(h for h in dict.fromkeys(_HELPER_CALL.findall(body)) if h not in needed)
    return needed


_IDENT = re.compile(r"[^0-9a-zA-Z_]")
INPLACE_MIN = 1  # ndim >= 1: np.generic scalars cannot be written into
OUT_MIN = 4096  # entries from which np.op(..., out=buffer) beats allocating a new array


def _identifier(name: str) -> str:
    name = _IDENT.sub("_", name) or "v"
    if name[0].isdigit():
        name = "v" + name
    if keyword.iskeyword(name) or name in ("np", "self"):
        name += "_"
    return name


def _layout(data: np.ndarray) -> tuple[tuple, tuple]:
    """How ``data`` lies in memory: ``(perm, flips)`` with ``data`` equal, layout and all, to
    ``np.flip(base.transpose(argsort(perm)), flips)`` for the C-contiguous
    ``base = np.flip(data, flips).transpose(perm)``; ``(identity, ())`` for C order.
    """
    longer = [i for i, n in enumerate(data.shape) if n > 1]  # axes of length 1: any stride
    perm = list(range(data.ndim))
    for slot, axis in zip(longer, sorted(longer, key=lambda i: -abs(data.strides[i]))):
        perm[slot] = axis
    return tuple(perm), tuple(i for i in longer if data.strides[i] < 0)


def _uniform(data: np.ndarray) -> bool:
    """All entries one finite number (a seed, or a broadcast scalar)."""
    if data.size == 0 or data.dtype.kind not in "biuf":
        return False
    first = data.flat[0]
    return bool(np.isfinite(first)) and bool((data == first).all())


def _py_literal(value: Any) -> str:
    v = np.asarray(value).item()
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, float) and not math.isfinite(v):
        text = "np.nan" if math.isnan(v) else "np.inf"
        return f"(-{text})" if v < 0 else text
    text = repr(v)
    return f"({text})" if text.startswith("-") else text


class _Writer:
    """Writes one function: parameters, the forward and backward lines, the return."""

    def __init__(
        self,
        name: str,
        params: Sequence[tuple[str, Tensor]],
        results: Sequence[tuple[str, Any]],
        tensors: dict[int, Tensor],
        grad_of: dict[Any, tuple],
        forward_end: int,
        several: bool,
        inplace: bool,
    ) -> None:
        self.name = name
        self.inplace = inplace
        self.params = list(params)
        self.results = list(results)  # (name, Tensor), the value first, then the gradients
        self.zeros: dict[str, tuple] = {}  # gradients that are zero: name -> (shape, dtype)
        self.tensors = tensors  # id(array) -> Tensor: which array params are traced values
        self.numbers: dict[int, Any] = {}  # id(input Tensor) -> the Python number it stands for
        self.grad_of = grad_of  # a gradient's identity -> (the forward Tensor it is of, itself)
        self.forward_end = forward_end
        self.several = several
        self.used: set[str] = {"np", "sum", "pow", "max", "min", "abs"}  # keep builtins
        self.helpers: dict[str, None] = {}
        self.constants: dict[tuple, str] = {}
        self.constant_lines: list[str] = []
        self.block: list[bytes] = []  # the bytes of the larger constants, back to back
        self.block_size = 0
        self.live: list[tuple[str, Tensor]] = []  # closed-over Tensors: keyword arguments
        self.functions: dict[type, str] = {}
        self.lines: list[str] = []
        self.vals: dict[Any, _Val] = {}  # node or id(leaf) -> value
        self.pending: dict[int, int] = {}  # buffer -> uses still to come
        self.roots = itertools.count(1)
        self.counters: dict[str, int] = {}
        self.dead: list[int] = []  # buffers whose last use was just written
        self.root_names: dict[int, list[str]] = {}
        self.root_sizes: dict[int, int] = {}  # entries of each buffer: only big ones get a del

    # ---- names ------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = _identifier(base)
        if base not in self.used:
            self.used.add(base)
            return base
        n = self.counters.get(base, 1)
        while f"{base}_{n}" in self.used:
            n += 1
        self.counters[base] = n + 1
        self.used.add(f"{base}_{n}")
        return f"{base}_{n}"

    # ---- constants --------------------------------------------------------------------
    def constant(self, data: np.ndarray) -> str:
        """A module-level name for an array constant (the same array once, however often used)."""
        data = np.asarray(data)
        if data.dtype.kind not in "biufc":
            raise TraceError(f"tape.compile: cannot write a constant of dtype {data.dtype}")
        perm, flips = _layout(data)
        key = (data.dtype.str, data.shape, data.tobytes(), perm, flips)
        name = self.constants.get(key)
        if name is None:
            name = self.constants[key] = self.fresh(f"c{len(self.constants)}")
            # laid out in memory as the array was (Fortran order, a transpose, a flip): NumPy
            # gives the results of ops on it the same layout, and sums them in that order
            base = np.ascontiguousarray(np.flip(data, flips).transpose(perm))
            if base.size == 0:  # tolist() of a (0, 3) array is [], which has lost its shape
                value = f"np.zeros({base.shape!r}, dtype={_dtype_code(base.dtype)})"
            elif base.size <= 16 and (base.dtype.kind != "f" or np.isfinite(base).all()):
                value = f"np.array({base.tolist()!r}, dtype={_dtype_code(base.dtype)})"
            else:
                self.helpers["_const"] = None
                offset = self.block_size
                self.block.append(base.tobytes() + bytes(-base.nbytes % 64))  # 64-byte aligned
                self.block_size += len(self.block[-1])
                value = f"_const({offset}, {base.dtype.str!r}, {base.shape!r})"
            if perm != tuple(range(data.ndim)):
                value += f".transpose({tuple(int(i) for i in np.argsort(perm))!r})"
            if flips:
                value = f"np.flip({value}, axis={flips!r})"
            self.constant_lines.append(f"{name} = {value}")
        return name

    def leaf(self, t: Tensor) -> _Val:
        """The value of a Tensor no record produced: a parameter, closed-over, or a constant."""
        found = self.vals.get(id(t))
        if found is not None:
            return found
        if id(t) in self.numbers:  # a Python number in f's code (or a VJP's, as mean's count)
            val = _Val("", (), t.dtype, scalar=self.numbers[id(t)], weak=True)
        elif t.requires_grad:  # closed over by f: read live on each call
            name = self.fresh(t.name or f"p{len(self.live)}")
            self.live.append((name, t))
            val = _Val(name, t.shape, t.dtype)
        elif t.ndim == 0 or _uniform(t.data):  # a broadcast number: left to its consumer
            val = _Val("", (), t.dtype, scalar=t.data.flat[0] if t.size else t.data[()])
        else:
            ordered = _layout(t.data) == (tuple(range(t.ndim)), ())
            val = _Val(self.constant(t.data), t.shape, t.dtype, ordered=ordered)
        self.vals[id(t)] = val
        return val

    def array_code(self, a: Any) -> str:
        """A param array (a where's cond, an index): the traced value it is, or a constant."""
        t = self.tensors.get(id(a))
        if t is not None:
            return self.exact(self.value(t), t.shape)
        if np.ndim(a) == 0:
            return _py_literal(a)
        return self.constant(a)

    def key_code(self, key: Any, node: Any) -> str:
        parts = key if isinstance(key, tuple) else (key,)
        codes = []
        for k in parts:
            if isinstance(k, slice):
                codes.append(
                    ":".join("" if v is None else repr(v) for v in (k.start, k.stop))
                    + ("" if k.step is None else f":{k.step!r}")
                )
            elif k is None:
                codes.append("None")
            elif k is Ellipsis:
                codes.append("...")
            elif isinstance(k, int | np.integer):
                codes.append(repr(int(k)))
            else:
                t = self.tensors.get(id(k))
                if t is not None and np.asarray(k).dtype == bool:
                    raise TraceError(
                        f"tape.compile: indexing with a boolean mask computed from traced "
                        f"values (at {where_recorded(node)}) makes a shape that depends on "
                        "the data; use tape.where(mask, x, 0) instead"
                    )
                codes.append(self.array_code(k))
        if not isinstance(key, tuple):
            return codes[0]
        return ", ".join(codes) + ("," if len(codes) == 1 else "") if codes else "()"

    # ---- values -----------------------------------------------------------------------
    def value(self, t: Tensor) -> _Val:
        return self.vals[t.node] if t.node is not None else self.leaf(t)

    def exact(self, v: _Val, shape: tuple) -> str:
        """``v`` written with exactly ``shape`` (undoing a broadcast left for later)."""
        if v.weak and shape == ():
            return _py_literal(v.scalar)  # as the engine's op was given it
        if v.scalar is not None:
            literal = _py_literal(v.scalar).removeprefix("(").removesuffix(")")
            code = f"np.{'bool_' if v.dtype.kind == 'b' else v.dtype.name}({literal})"
            return code if shape == () else f"np.broadcast_to({code}, {shape!r})"
        if v.shape != tuple(shape):
            return f"np.broadcast_to({v.code}, {tuple(shape)!r})"
        return v.code

    def operands(self, vals: list[_Val]) -> list[str]:
        """``vals`` as the operands of an elementwise op, computing in the engine's dtype.

        A Python number the engine was given is written as one (NumPy lets the
        other operand's dtype win, as it did then); a number with a dtype (a
        folded value, a uniform constant) is written as a plain literal only
        where that changes nothing: the promotion still gives the engine's dtype.
        """
        if all(v.scalar is None for v in vals):
            return [v.code for v in vals]
        # what NumPy promotes: a dtype per array or typed scalar, a Python number as itself
        kinds: list[Any] = [np.asarray(v.scalar).item() if v.weak else v.dtype for v in vals]
        try:
            engine = np.result_type(*kinds)
        except TypeError:
            engine = None
        arrays = any(v.scalar is None for v in vals)
        for i, v in enumerate(vals):
            if v.scalar is None or v.weak or not arrays or engine is None:
                continue
            kinds[i] = np.asarray(v.scalar).item()  # try it as a literal
            try:
                same = np.result_type(*kinds) == engine
            except TypeError:
                same = False
            if not same:
                kinds[i] = v.dtype
        return [
            v.code
            if v.scalar is None
            else _py_literal(v.scalar)
            if not isinstance(k, np.dtype)
            else self.exact(v, ())
            for v, k in zip(vals, kinds)
        ]

    # ---- one record -------------------------------------------------------------------
    def emit(self, node: Any, t: Tensor, uses: int) -> None:
        kind = _custom(node)
        if kind is not None:
            self.emit_function(node, t, uses, kind)
            return
        ins = self.inputs[node]
        vals = [self.value(x) for x in ins]
        shape, dtype = t.shape, t.dtype
        op = node.op
        alias = self.alias(node, vals, shape, dtype)
        if alias is not None:
            self.vals[node] = alias
            if alias.root is not None:
                self.pending[alias.root] = self.pending.get(alias.root, 0) + uses
            self.consume(vals)
            return
        p = self.params_code(node)
        if op == "sum" and p.get("keepdims") and uses == 1:
            squeezed = self.squeezed(node)
            if squeezed is not None:
                p["keepdims"], shape = False, squeezed  # x.sum(axis, keepdims=True).reshape(s)
                t = self.out_tensor[self.consumers[node][0]]  # named as the reshape's result
        if op in _ELEMENTWISE:
            codes = self.operands(vals)
            if op == "clamp" and vals[0].scalar is not None and not vals[0].weak:
                codes[0] = self.exact(vals[0], ())  # np.clip reads a literal x as float64
            real = [v.shape for v in vals if v.scalar is None]
            if "cond" in node.params:
                real.append(np.shape(node.params["cond"]))
            actual = real[0] if len(set(real)) == 1 else np.broadcast_shapes(*real) if real else ()
        else:
            codes = [self.exact(v, x.shape) for v, x in zip(vals, ins)]
            actual = shape
        expr = _form(node, codes, p)
        name = self.name_for(node, t)
        target = self.inplace_target(node, vals, actual, dtype, shape) if self.inplace else None
        if target is not None:
            i, v = target
            small = math.prod(shape) < OUT_MIN  # out= costs more than a small allocation
            if (name is None or small) and op in _AUGMENTED and (i == 0 or op in ("add", "mul")):
                other = codes[1 - i]
                line = f"{v.code} {_AUGMENTED[op]} {other}"
                if name is not None:  # the buffer gets the value's name, then the update
                    line = f"{name} = {v.code}; {name} {_AUGMENTED[op]} {other}"
                name = name or v.code
                self.vals[node] = _Val(name, shape, dtype, v.root, own=True, ordered=True)
                self.write(line, node, name)
                self.consume(vals)
                self.pending[v.root] = uses
                return
            target = None if small else target
        if target is not None:
            i, v = target
            if name is None:
                name = self.fresh(op)
            args = ", ".join(codes) if op != "relu" else f"{codes[0]}, 0"
            ufunc = _UFUNCS["maximum" if op == "relu" else op]
            expr = f"{ufunc}({args}, out={v.code})"
            self.vals[node] = _Val(name, shape, dtype, v.root, own=True, ordered=True)
            self.write(f"{name} = {expr}", node, name)
            self.consume(vals)
            self.pending[v.root] = uses
            return
        if name is None:
            name = self.fresh(op)
        fresh = _fresh(node)
        root = next(self.roots) if fresh else self.root_of(vals)
        ordered = self.ordered(node, vals, actual)
        self.vals[node] = _Val(name, actual, dtype, root, own=fresh, ordered=ordered)
        if root is not None:
            self.pending[root] = self.pending.get(root, 0) + uses
        self.write(f"{name} = {expr}", node, name)
        self.consume(vals)

    def ordered(self, node: Any, vals: list[_Val], actual: tuple) -> bool:
        """Whether ``node``'s result is known to be laid out in C order.

        Writing into a buffer keeps the buffer's layout; the engine's result of
        the same op has NumPy's, which is C order as soon as one operand of the
        full shape is in C order. A later sum adds in memory order, so the two
        agree to the bit only when the buffer is in C order too (an einsum's
        result may be in Fortran order; ``x.T`` is a Fortran-order view).
        """
        op, arrays = node.op, [v for v in vals if v.scalar is None]
        fn = node.params.get("fn")
        if fn is not None and not isinstance(fn, np.ufunc):  # np.asarray: x itself
            return bool(arrays) and arrays[0].ordered
        if op in _ELEMENTWISE or op in ("sigmoid", "softmax", "log_softmax") or fn is not None:
            return any(v.ordered and v.shape == tuple(actual) for v in arrays)
        if op in ("dot", "outer", "index_add") or (op == "matmul" and len(actual) <= 2):
            return True  # NumPy allocates these in C order
        if op in _REDUCTIONS or op in ("matmul", "concatenate", "stack"):
            return all(v.ordered for v in arrays)
        if op in ("reshape", "squeeze", "expand_dims", "split", "broadcast_to", "flip"):
            return bool(arrays) and arrays[0].ordered  # a view keeps the order of its strides
        if op == "getitem" and _basic(node.params["key"]):
            return bool(arrays) and arrays[0].ordered
        return False

    def root_of(self, vals: list[_Val]) -> int | None:
        return vals[0].root if vals and vals[0].scalar is None else None

    def consume(self, vals: list[_Val]) -> None:
        for v in vals:
            if v.root is not None:
                self.pending[v.root] -= 1
                if self.pending[v.root] == 0:
                    self.dead.append(v.root)

    def free(self) -> None:
        """``del`` the names of buffers nothing reads any more, so NumPy can reuse them."""
        names = []
        for root in self.dead:
            if self.pending.get(root) == 0:
                found = self.root_names.pop(root, [])
                if self.root_sizes.get(root, 0) >= DEL_ABOVE:
                    names += found
                self.pending.pop(root)
        self.dead.clear()
        if names and self.inplace:
            self.lines.append((f"del {', '.join(dict.fromkeys(names))}", None))  # type: ignore[arg-type]

    def inplace_target(
        self, node: Any, vals: list[_Val], actual: tuple, dtype: Any, shape: tuple
    ) -> tuple[int, _Val] | None:
        """An operand whose buffer this op may overwrite: owned, full-size, used last here."""
        if (node.op not in _UFUNCS and node.op != "relu") or actual != tuple(shape):
            return None
        if len(shape) < INPLACE_MIN:
            return None
        for i, v in enumerate(vals):
            if (
                v.own
                and v.ordered
                and v.root is not None
                and v.shape == tuple(shape)
                and v.dtype == dtype
                and self.pending.get(v.root, 0) == sum(w.root == v.root for w in vals)
            ):
                return i, v
        return None

    def alias(self, node: Any, vals: list[_Val], shape: tuple, dtype: Any) -> _Val | None:
        """A record that needs no line: a no-op, a broadcast left to its consumer, a fold."""
        op, p = node.op, node.params
        if not vals:
            return None
        v = vals[0]
        if all(w.scalar is not None for w in vals) and "cond" not in p and "key" not in p:
            folded = self.fold(node, vals)
            if folded is not None:
                return folded
        if op in ("pow", "mul") and len(vals) == 2:
            for one, x in ((1, 0), (0, 1)) if op == "mul" else ((1, 0),):
                k = vals[one]
                if k.scalar is not None and k.scalar == 1 and vals[x].dtype == np.dtype(dtype):
                    if k.dtype.kind != "b":
                        return vals[x]  # x ** 1, x * 1: x (a square's VJP is 2 * x ** 1)
        if v.scalar is not None and op not in ("broadcast_to", "reshape"):
            return None
        same = v.dtype == np.dtype(dtype)
        if op == "broadcast_to" or (op == "reshape" and v.shape == tuple(shape)):
            if op == "reshape" or same:
                return _Val(v.code, v.shape, v.dtype, v.root, v.scalar)
        if op == "reshape" and v.scalar is not None:
            return _Val("", (), v.dtype, scalar=v.scalar) if shape == () else None
        if op == "astype" and same:
            return v
        if op == "transpose" and len(v.shape) == 2 and v.shape == self.in_shape(node, 0):
            axes = p.get("axes")
            if axes is None or tuple(axes) == (1, 0):
                return _Val(f"{v.code}.T", shape, dtype, v.root)
        return None

    def fold(self, node: Any, vals: list[_Val]) -> _Val | None:
        """Every operand a constant number: the result, one number (broadcast by its consumer).

        An elementwise op is run here, on the numbers as the engine had them (a
        Python number as one, a typed number with its dtype), so the folded value
        is the engine's to the bit; for any other op only a value still held
        (and uniform) is read back, since the record keeps no output.
        """
        p = node.params
        if node.op in _ELEMENTWISE or isinstance(p.get("fn"), np.ufunc):
            args = [v.scalar if v.weak else np.asarray(v.scalar, dtype=v.dtype) for v in vals]
            try:
                with np.errstate(all="ignore"):
                    data = np.asarray(node.primitive.forward(*args, **p))
            except Exception:
                return None
        else:
            try:
                data = np.asarray(self.out_tensor[node].data)
            except Exception:  # freed: nothing holds the value any more
                return None
            if data.size != 1 and not _uniform(data):
                return None  # a cumsum or concatenate of numbers is no number
        if data.size == 0 or data.dtype != np.dtype(node.dtype):
            return None
        return _Val("", (), data.dtype, scalar=data.flat[0])

    def squeezed(self, node: Any) -> tuple | None:
        """The shape without the summed axes, if the one consumer reshapes to exactly that."""
        (consumer,) = self.consumers.get(node, [None])[:1] or [None]
        if consumer is None or consumer.op != "reshape":
            return None
        x = self.in_shape(node, 0)
        axis = node.params.get("axis")
        axes = (
            range(len(x)) if axis is None else axis if isinstance(axis, tuple | list) else (axis,)
        )
        axes = {a % len(x) for a in axes}
        target = tuple(n for i, n in enumerate(x) if i not in axes)
        return target if tuple(consumer.params["shape"]) == target else None

    def in_shape(self, node: Any, i: int) -> tuple:
        return tuple(self.inputs[node][i].shape)

    def params_code(self, node: Any) -> dict:
        p = dict(node.params)
        if "key" in p:
            key = p["key"]
            if node.op == "index_add":
                p["basic"] = _basic(key)
            p["key"] = self.key_code(key, node)
        if "cond" in p:
            p["cond"] = self.array_code(p["cond"])
        for bound in ("min", "max"):
            if bound in p and p[bound] is not None:
                b = p[bound]
                if b is TENSOR_BOUND:  # an input of the record: an operand
                    p[bound] = _OPERAND
                else:
                    p[bound] = self.array_code(b.data if isinstance(b, Tensor) else b)
        return p

    def name_for(self, node: Any, t: Tensor) -> str | None:
        """A readable name: the Tensor's own, ``d`` + the forward value it is the gradient of."""
        if t.name and node.index <= self.forward_end:
            return self.fresh(t.name)
        fwd = self.grad_of.get(_identity(t), (None,))[0]
        if fwd is not None:
            base = self.forward_names.get(_identity(fwd)) or fwd.name
            base = base or (fwd.node.op if fwd.node is not None else "v")
            return self.fresh(f"d{base}")
        return None

    def write(self, line: str, node: Any, name: str | None = None) -> None:
        for helper in _HELPER_CALL.findall(line):
            self.helpers[helper] = None
        if node.index <= self.forward_end:
            path, _, lineno = where_recorded(node).rpartition(":")
            place = (
                "<expression>" if from_command_line(path) else f"{os.path.basename(path)}:{lineno}"
            )
            comment = f"{node.op}  {place}"
        else:
            fwd = self.grad_of.get(node, (None,))[0]
            comment = node.op if fwd is None else f"{node.op}  (gradient of {self.describe(fwd)})"
        self.lines.append((line, comment))  # type: ignore[arg-type]
        v = self.vals.get(node)
        if name is not None and v is not None and v.root is not None:
            self.root_sizes[v.root] = int(np.prod(v.shape, dtype=np.int64))
            names = self.root_names.setdefault(v.root, [])
            if name not in names:
                names.append(name)
        if node.index <= self.forward_end and name is not None:
            self.forward_names[node] = name

    def describe(self, fwd: Tensor) -> str:
        name = self.forward_names.get(_identity(fwd)) or fwd.name
        return name or (fwd.node.op if fwd.node is not None else "a leaf")

    # ---- Functions ----------------------------------------------------------------------
    def function_name(self, node: Any) -> str:
        cls = _function_class(node)
        name = self.functions.get(cls)
        if name is None:
            name = self.functions[cls] = self.fresh(cls.__name__)
        return name

    def emit_function(self, node: Any, t: Tensor, uses: int, kind: str) -> None:
        self.helpers["_function_forward"] = None
        ins = self.inputs[node]
        if kind == "forward":
            vals = [self.value(x) for x in ins]
            codes = [self.exact(v, x.shape) for v, x in zip(vals, ins)]
            kw = "".join(f", {k}={_param_code(v)}" for k, v in node.params.items() if k != "ctx")
            name = self.name_for(node, t) or self.fresh(node.op.lower())
            ctx = self.fresh(f"ctx_{name}")
            self.contexts[node] = ctx
            fn = self.function_name(node)
            self.write(
                f"{name}, {ctx} = _function_forward({fn}, {', '.join(codes)}{kw})", node, name
            )
            for v in vals:  # the Function may have saved them: never overwrite
                if v.root is not None:
                    self.pending[v.root] += 1 << 40
            self.vals[node] = _Val(name, t.shape, t.dtype)
            return
        forward, position, g = self.backward_of[node]
        parts = self.parts.get((forward, id(g)))
        if parts is None:
            gv = self.value(g)
            parts = self.parts[(forward, id(g))] = self.fresh(f"grads_{node.params['function']}")
            self.write(
                f"{parts} = _function_backward({self.function_name(forward)}, "
                f"{self.contexts[forward]}, {self.exact(gv, g.shape)})",
                node,
            )
        name = self.name_for(node, t) or self.fresh("part")
        self.lines.append((f"{name} = {parts}[{position}]", f"{node.op} of {forward.op}"))  # type: ignore[arg-type]
        root = next(self.roots)
        self.vals[node] = _Val(name, t.shape, t.dtype, root, own=False)
        self.pending[root] = uses

    # ---- the whole function -------------------------------------------------------------
    def write_all(
        self, order: list, uses: dict, out_tensor: dict, inputs: dict, consumers: dict
    ) -> str:
        self.out_tensor, self.inputs, self.consumers = out_tensor, inputs, consumers
        self.forward_names: dict[Any, str] = {}
        self.contexts: dict[Any, str] = {}
        self.parts: dict[tuple, str] = {}
        self.backward_of = _function_backward_positions(order, inputs)
        names = []
        for name, t in self.params:  # any layout: a later call may pass another
            self.vals[id(t)] = _Val(name, t.shape, t.dtype)
            self.forward_names[_identity(t)] = name
            self.used.add(name)
            names.append(name)
        for _, t in self.results:
            if t is not None and t.node is None and id(t) not in self.vals:
                self.leaf(t)
        backward_started = False
        for node in order:
            if node.index > self.forward_end and not backward_started:
                backward_started = True
                self.lines.append(("# backward", None))  # type: ignore[arg-type]
            self.emit(node, out_tensor[node], uses[node])
            self.free()
        returns = []
        for i, (name, t) in enumerate(self.results):
            if i == 0:
                returns.append(self.exact(self.value(t), t.shape))
                continue
            if t is None:
                code = (
                    f"np.zeros({self.zeros[name][0]!r}, dtype={_dtype_code(self.zeros[name][1])})"
                )
            else:
                code = self.exact(self.value(t), t.shape)
            if code != name:
                name = self.fresh(name) if name in self.used and code != name else name
                self.used.add(name)
                self.lines.append((f"{name} = {code}", None))  # type: ignore[arg-type]
            returns.append(name)
        value, grads = returns[0], returns[1:]
        grads_code = (
            f"({', '.join(grads)}{',' if len(grads) == 1 else ''})" if self.several else grads[0]
        )
        signature = ", ".join(names)
        live = [f"{n}={n}" for n, _ in self.live] + [f"{n}={n}" for n in self.functions.values()]
        if live:
            signature += (", " if signature else "") + "*, " + ", ".join(live)
        self.lines = _fold_temporaries(self.lines, f"{value} {grads_code} {signature}")
        body = []
        width = max((len(line) for line, c in self.lines if c is not None), default=0)
        width = min(width, 60)
        for line, comment in self.lines:
            if comment is None:
                body.append(f"    {line}")
            else:
                body.append(f"    {line.ljust(width)}  # {comment}")
        body.append(f"    return {value}, {grads_code}")
        defaults = {n: self._live_default(t) for n, t in self.live}  # may add constants
        sections = [
            '"""Generated by tape.compile from the tape: forward, then backward."""\n\n'
            "import numpy as np",
            *(_HELPERS[helper] for helper in _with_their_helpers(self.helpers)),
        ]
        constants = list(self.constant_lines)
        if self.block:
            blob = b"".join(self.block).hex()
            constants.insert(0, f'_BLOCK = np.frombuffer(bytes.fromhex("{blob}"), np.uint8).copy()')
        for n, t in self.live:
            constants.append(f"{n} = {defaults[n]}  # {describe(t)}, passed live by tape.compile")
        for cls, n in self.functions.items():
            constants.append(f"{n} = None  # the tape.Function {cls.__qualname__}: pass {n}=...")
        if constants:
            sections.append("\n".join(constants))
        sections.append("\n".join([f"def {self.name}({signature}):", *body]))
        return "\n\n\n".join(sections) + "\n"

    def _live_default(self, t: Tensor) -> str:
        return self.constant(t.data) if t.ndim else f"np.asarray({_py_literal(t.data)})"


# ops whose code form always returns a new array, one the generated code may overwrite;
# anything else (reshape, squeeze, flip, a slice, a one-operand einsum, np.asarray) may be
# a view of its first operand, so it shares that operand's buffer and is never written into
_FRESH = {
    *_BINARY, *_UNARY, *_COMPARISONS, "neg", "relu", "sigmoid", "clamp", "sum", "mean", "max",
    "min", "prod", "var", "std", "logsumexp", "norm", "cumsum", "softmax", "log_softmax", "dot",
    "outer", "index_add", "concatenate", "stack", "where", "maximum", "minimum", "astype",
}  # fmt: skip


_REDUCTIONS = {
    "sum", "mean", "max", "min", "prod", "var", "std", "logsumexp", "norm", "cumsum",
}  # fmt: skip


def _basic(key: Any) -> bool:
    """An index of ints, slices, ``None``, ``...`` (and boolean masks): each entry once."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(
        isinstance(k, int | slice | type(None) | type(Ellipsis) | np.integer)
        or (isinstance(k, np.ndarray) and k.dtype == bool)
        for k in parts
    )


def _fresh(node: Any) -> bool:
    """Whether ``node``'s code form allocates its result (never a view of an operand)."""
    if "fn" in node.params:  # a NumPy function the trace recorded: ufuncs allocate
        return isinstance(node.params["fn"], np.ufunc)
    if node.op == "einsum":  # of one operand NumPy may return a view ("ji", "ii->i")
        return len(node.parents) > 1
    return node.op in _FRESH


def _function_backward_positions(order: list, inputs: dict) -> dict:
    """For each record a Function's gradient carries: (the Function's record, position, g).

    Under ``create_graph`` the engine records one ``function_backward`` per input
    that got a gradient, with inputs ``(g, *function inputs)``, in argument order.
    """
    found: dict = {}
    forwards = [n for n in order if _custom(n) == "forward"]
    groups: dict[tuple, list] = {}
    for node in order:
        if _custom(node) != "backward":
            continue
        ins = inputs[node]
        keys = [_identity(x) for x in ins[1:]]
        match = [
            f
            for f in forwards
            if f.op == node.params.get("function") and [_identity(x) for x in inputs[f]] == keys
        ]
        if not match:
            raise TraceError(
                f"tape.compile: cannot find the tape.Function record behind {node.op!r}"
            )
        forward = match[-1]
        groups.setdefault((forward, _identity(ins[0])), []).append(node)
    for (forward, _), records in groups.items():
        ins = inputs[forward]
        candidates = [i for i, x in enumerate(ins) if x.requires_grad]
        if len(candidates) != len(records):
            cls = _function_class(forward)
            g = inputs[records[0]][0].data
            parts = cls.backward(forward.params["ctx"], g)
            candidates = [i for i in candidates if parts[i] is not None]
            chosen = []
            for r in records:
                value = np.asarray(r.params["value"])
                i = next(
                    (
                        i
                        for i in candidates
                        if i not in chosen and np.array_equal(np.asarray(parts[i]), value)
                    ),
                    None,
                )
                if i is None:
                    raise TraceError(
                        f"tape.compile: cannot tell which input of {forward.op!r} a gradient is for"
                    )
                chosen.append(i)
            candidates = chosen
        for r, i in zip(records, candidates):
            found[r] = (forward, i, inputs[r][0])
    return found


def _identity(t: Tensor) -> Any:
    """What identifies a value: the record that produced it, or the leaf Tensor itself."""
    return t.node if t.node is not None else ("leaf", id(t))


def _collect(
    roots: Sequence[Tensor], tensors: dict[int, Tensor]
) -> tuple[list, dict, dict, dict, dict]:
    """Every record the ``roots`` depend on, oldest first; uses of each; their Tensors.

    Iterative: a graph of any depth is walked with an explicit stack.
    """
    out_tensor: dict = {}
    inputs: dict = {}
    uses: dict = {}
    consumers: dict = {}
    stack = list(roots)
    for t in roots:
        if t.node is not None:
            uses[t.node] = uses.get(t.node, 0) + 1
    while stack:
        t = stack.pop()
        node = t.node
        if node is None or node in inputs:
            continue
        out_tensor[node] = t
        ins = inputs[node] = node.inputs
        deps = [x for x in ins]
        for value in node.params.values():
            for a in _arrays_in(value):
                traced = tensors.get(id(a))
                if traced is not None:
                    deps.append(traced)
        for x in deps:
            if x.node is not None:
                uses[x.node] = uses.get(x.node, 0) + 1
                consumers.setdefault(x.node, []).append(node)
                stack.append(x)
    order = sorted(inputs, key=lambda n: n.index)
    for node in order:
        uses.setdefault(node, 0)
    return order, uses, out_tensor, inputs, consumers


_PYTHON_NUMBERS = (bool, int, float, complex)


def _numbers(order: list, inputs: dict) -> dict[int, Any]:
    """The inputs that were Python numbers when the op ran: ``id(input Tensor) -> number``.

    ``node.inputs`` wraps a constant in a Tensor, which gives it a dtype (``24`` becomes
    int64); the op itself was given the Python number, which NumPy promotes weakly
    (``float32 / 24`` is float32). The record's ``parents`` keep the number as it was.
    """
    found = {}
    for node in order:
        for parent, t in zip(node.parents, inputs[node]):
            if type(parent) in _PYTHON_NUMBERS:
                found[id(t)] = parent
    return found


def _arrays_in(value: Any) -> list:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, Tensor):
        return [value.data]
    if isinstance(value, tuple | list):
        return [a for v in value for a in _arrays_in(v)]
    return []


def _generate(
    name: str,
    params: Sequence[tuple[str, Tensor]],
    value: tuple[str, Tensor],
    grads: Sequence[tuple[str, Tensor | None, Tensor]],
    hook: _Hook,
    grad_of: dict[Any, tuple],
    several: bool,
    inplace: bool = True,
) -> tuple[str, list[tuple[str, Tensor]], dict[str, type]]:
    """Source of ``name(*params) -> (value, grads)``, its live Tensors and its Functions."""
    tensors: dict[int, Tensor] = {id(t.data): t for _, t in params}
    for t in hook.kept:
        tensors[id(t.data)] = t
    roots = [value[1], *(g for _, g, _ in grads if g is not None)]
    order, uses, out_tensor, inputs, consumers = _collect(roots, tensors)
    forward_end = value[1].node.index if value[1].node is not None else 0
    writer = _Writer(
        name,
        params,
        [value, *((n, g) for n, g, _ in grads)],
        tensors,
        grad_of,
        forward_end,
        several,
        inplace,
    )
    writer.zeros = {n: (w.shape, w.dtype) for n, g, w in grads if g is None}
    writer.numbers = _numbers(order, inputs)
    if hook.seed is not None:  # ∂value/∂value = 1, a number the generated code folds
        writer.vals[id(hook.seed)] = _Val("", (), hook.seed.dtype, scalar=hook.seed.data[()])
    source = writer.write_all(order, uses, out_tensor, inputs, consumers)
    functions = {n: cls for cls, n in writer.functions.items()}
    return source, writer.live, functions


_SERIAL = itertools.count(1)


def _load(source: str, name: str, functions: dict[str, type]) -> Callable[..., Any]:
    """Compile ``source`` under a unique fake file name that ``linecache`` can show."""
    filename = f"<tape.compile:{name}#{next(_SERIAL)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(builtins.compile(source, filename, "exec"), namespace)
    namespace.update(functions)
    fn = namespace[name]
    weakref.finalize(fn, linecache.cache.pop, filename, None)  # the lines go with the code
    if functions:
        fn = functools.partial(fn, **functions)
    return fn


# ---- tracing a call ---------------------------------------------------------------------------


def _seed(out: Tensor, hook: _Hook) -> Tensor:
    """The backward pass's seed ``1``, as a traced leaf.

    Traced, so that every VJP applied to it is recorded: an op whose only
    Tensor operand is the seed still depends on a traced index or condition
    (``index_add`` of ``getitem``'s VJP, ``where``'s), and must not be frozen.
    """
    seed = Tensor(np.ones(out.shape, dtype=out.dtype))
    seed.requires_grad = True
    hook.seed = seed
    return seed


def _watch_gradients(tensors: Sequence[Tensor]) -> tuple[dict[Any, tuple], list]:
    """Hooks that note which recorded gradient is the total of which forward Tensor."""
    grad_of: dict[Any, tuple] = {}
    handles = []
    for t in tensors:

        def note(g: Any, t: Tensor = t) -> None:
            seen = grad_of.get(_identity(g))
            if seen is None or (t.name and not seen[0].name):  # prefer a name the user gave
                grad_of[_identity(g)] = (t, g)  # g kept alive: its id stays its own

        handles.append(t.register_hook(note))
    return grad_of, handles


def _trace(
    f: Callable[..., Any],
    args: Sequence[Any],
    names: Sequence[str],
    positions: tuple[int, ...],
    several: bool,
    fname: str,
) -> tuple[str, list, dict, list[int], list]:
    arrays: dict[int, np.ndarray] = {}
    for i, a in enumerate(args):
        if i in positions or _is_array(a):
            arrays[i] = np.asarray(a.data if isinstance(a, Tensor) else a)
    for i in positions:
        if arrays[i].dtype.kind != "f":
            raise TypeError(
                f"tape.compile: argument {i} is {describe(arrays[i])}, but only floating-point "
                "inputs have a derivative; pass floats (1.0, not 1) or np.asarray(x, dtype=float)"
            )
    leaves = {}
    for i, a in arrays.items():
        t = Tensor(a, name=names[i])
        t.requires_grad = True  # every array is traced; only positions get a gradient
        leaves[i] = t
    call_args = [leaves.get(i, a) for i, a in enumerate(args)]
    with enable_grad(), _Tracing() as hook:
        out = f(*call_args)
        if not isinstance(out, Tensor) or out.size != 1:
            raise TypeError(
                f"tape.compile: f must return a scalar Tensor (as for value_and_grad), got "
                f"{describe(out)}; reduce it with .sum() or .mean()"
            )
        wrt = [leaves[i] for i in positions]
        watched = [leaves[i] for i in arrays] + [
            n.output
            for n in _forward_records(out)
            if n.output is not None and n.output.requires_grad
        ]
        grad_of, handles = _watch_gradients(watched)
        try:
            if out.requires_grad:
                grads = tape_grad(out, wrt, _seed(out, hook), create_graph=True, allow_unused=True)
            else:
                grads = [None] * len(wrt)
        finally:
            for h in handles:
                h.remove()
    params = [(names[i], leaves[i]) for i in arrays]
    value_name = _identifier(out.name or "value")
    value_name = "value" if value_name in names else value_name
    grad_rows = [(f"d{names[i]}", g, leaves[i]) for i, g in zip(positions, grads)]
    source, live, functions = _generate(
        f"{fname}_value_and_grad", params, (value_name, out), grad_rows, hook, grad_of, several
    )
    return source, live, functions, list(arrays), [names[i] for i in arrays]


def _is_array(a: Any) -> bool:
    return isinstance(a, np.ndarray | Tensor | list) or (
        isinstance(a, np.generic) and not isinstance(a, np.bool_)
    )


def _arg_names(f: Callable[..., Any], n: int) -> list[str]:
    try:
        sig = inspect.signature(f)
        names = [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        names = []
    names = names[:n] + [f"arg{i}" for i in range(len(names), n)]
    seen: set[str] = set()
    result = []
    for name in names:
        name = _identifier(name)
        while name in seen:
            name += "_"
        seen.add(name)
        result.append(name)
    return result


def _cache_key(args: Sequence[Any], positions: tuple[int, ...]) -> tuple:
    key = []
    for i, a in enumerate(args):
        if i in positions or _is_array(a):
            data = np.asarray(a.data if isinstance(a, Tensor) else a)
            key.append((data.shape, data.dtype.str))
        else:
            try:
                hash(a)
                key.append(("static", type(a), a))
            except TypeError:
                key.append(("object", id(a)))
    return tuple(key)


class _Entry:
    """One trace: the generated function, what to pass it, and its source."""

    __slots__ = ("fn", "positions", "live", "source", "several", "arrays", "constants")

    def __init__(self, fn: Any, arrays: list[int], live: list, source: str, several: bool) -> None:
        self.fn, self.arrays, self.live, self.source = fn, arrays, live, source
        self.several = several
        # the code's own constant arrays: a gradient that is one of them goes out as a copy
        namespace = getattr(fn, "func", fn).__globals__
        self.constants = {id(v) for v in namespace.values() if isinstance(v, np.ndarray)}

    def run(self, args: Sequence[Any]) -> tuple[Any, Any]:
        arrays = [args[i] for i in self.arrays]
        arrays = [a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        if self.live:
            live = {n: t.data for n, t in self.live}
            value, grads = self.fn(*arrays, **live)
            held = [*arrays, *live.values()]
        else:
            value, grads = self.fn(*arrays)
            held = arrays
        value = np.asarray(value)
        if self.several:
            return value, _owned(grads, held, self.constants)
        return value, _owned((grads,), held, self.constants)[0]


def _owned(
    grads: Sequence[Any], arrays: Sequence[np.ndarray], constants: set = frozenset()
) -> tuple:
    """Arrays the caller may keep and change: no views, none of ``arrays`` (the inputs, the
    live parameters) or the code's ``constants`` (by id), no two the same."""
    result = []
    for g in grads:
        g = np.asarray(g)
        if (
            g.base is not None
            or not g.flags.writeable
            or id(g) in constants
            or any(g is a for a in arrays)
            or any(g is r for r in result)
        ):
            g = g.copy()
        result.append(g)
    return tuple(result)


# One lock for every compiled function (a lock of its own would make one unpicklable): a
# trace is rare, and a compiled f that calls itself while tracing may re-enter
_TRACING = threading.RLock()


CACHE_LIMIT = 64  # traces one compiled function keeps: a loop over ever-new shapes stays bounded


class Compiled:
    """``f``'s value and gradient from generated NumPy code, traced once per input signature.

    Call it like ``tape.func.value_and_grad(f, argnums)``; ``.source(*args)``
    shows the code, ``.traces`` counts the traces so far. It keeps the latest
    ``CACHE_LIMIT`` traces; a signature older than those is traced again.
    """

    def __init__(self, f: Callable[..., Any], argnums: Any = 0) -> None:
        self.f = f
        self.argnums = argnums
        self.traces = 0
        self._cache: dict[tuple, _Entry] = {}
        functools.update_wrapper(self, f)

    def _entry(self, args: Sequence[Any]) -> _Entry:
        positions, several = argnums_positions(self.argnums, len(args), "tape.compile")
        key = (len(args), _cache_key(args, positions))
        entry = self._cache.get(key)
        if entry is not None:
            return entry
        with _TRACING:  # threads calling it first at once: one traces, the rest find it
            return self._cache.get(key) or self._trace(key, args, positions, several)

    def _trace(self, key: tuple, args: Sequence[Any], positions: tuple, several: bool) -> _Entry:
        names = _arg_names(self.f, len(args))
        fname = _identifier(getattr(self.f, "__name__", "f").replace("<lambda>", "f"))
        source, live, functions, arrays, _ = _trace(self.f, args, names, positions, several, fname)
        fn = _load(source, f"{fname}_value_and_grad", functions)
        if len(self._cache) >= CACHE_LIMIT:  # ever-new shapes: the oldest trace goes
            del self._cache[next(iter(self._cache))]
        entry = self._cache[key] = _Entry(fn, arrays, live, source, several)
        self.traces += 1
        return entry

    def __call__(self, *args: Any) -> tuple[Any, Any]:
        return self._entry(args).run(args)

    def source(self, *args: Any) -> str:
        """The generated source for calls with these arguments' shapes and dtypes."""
        if not args:
            raise TypeError(
                "source() takes the arguments of a call, e.g. step.source(X, W): their "
                "shapes and dtypes choose which trace to show (each one gets its own code)"
            )
        return self._entry(args).source


def compile(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Compiled:
    """Compile ``value_and_grad(f, argnums)`` into straight-line NumPy code.

    On the first call with given input shapes and dtypes, ``f`` runs once on
    Tensors and the engine records both its forward and — through
    ``tape.grad(..., create_graph=True)`` — its backward pass; each record
    becomes one line of NumPy. Later calls with the same shapes run that code,
    no tape involved. Gradients nobody asked for (``argnums``) are never
    computed.

    The math is the engine's: for ``loss = mean((relu(X W + b) − y)²)`` the
    generated backward reads ``dz = ... * (z > 0)``, ``dW = X.T @ dz``,
    ``db = dz.sum(axis=0)`` — the chain rule written out, one record per line.

    >>> f = lambda x: (x * x).sum()
    >>> step = tape.compile(f)
    >>> step(np.array([1.0, 2.0]))          # (|x|², 2x), as value_and_grad
    (array(5.), array([2., 4.]))
    >>> step.traces
    1
    """
    return Compiled(f, argnums)


def code(output: Tensor, inputs: Tensor | Sequence[Tensor] | None = None) -> str:
    """The forward and backward of a recorded graph as NumPy source.

    ``output`` is a scalar Tensor whose graph is still on the tape (not yet
    released by ``backward``); ``inputs`` default to every leaf it depends on
    that requires grad. The source defines ``value_and_grad(...)`` taking the
    leaves as arguments and returning ``(output, (d input, ...))``.

    >>> W = tape.tensor([[1.0, 2.0]], requires_grad=True, name="W")
    >>> print(tape.code((W * W).sum()).splitlines()[-1].strip())
    return sum_1, (dW,)
    """
    if not isinstance(output, Tensor) or output.size != 1:
        raise TypeError(f"tape.code: output must be a scalar Tensor, got {describe(output)}")
    if not output.requires_grad or output.node is None:
        raise ValueError("tape.code: the output was not recorded (no input requires grad)")
    leaves = _leaves(output)
    wrt = (
        [t for t in leaves if t.requires_grad]
        if inputs is None
        else ([inputs] if isinstance(inputs, Tensor) else list(inputs))
    )
    reached = {*reachable([output.node]), *leaves}  # records and leaves themselves
    for i, w in enumerate(wrt):  # as tape.grad: an input the output does not depend on is a slip
        if isinstance(w, Tensor) and (w.node or w) not in reached:
            raise ValueError(
                f"tape.code: input {i} ({label(w)}) does not reach the output, so its "
                "gradient would be all zeros; leave it out"
            )
    params = [t for t in leaves if t.requires_grad or t.name or any(t is w for w in wrt)]
    names: list[str] = []
    for i, t in enumerate(params):
        name = _identifier(t.name or f"x{i}")
        while name in names:
            name += "_"
        names.append(name)
    with enable_grad(), _Tracing() as hook:
        watched = params + [n.output for n in _forward_records(output) if n.output is not None]
        grad_of, handles = _watch_gradients([t for t in watched if t.requires_grad])
        try:
            grads = tape_grad(
                output, wrt, _seed(output, hook), create_graph=True, allow_unused=True
            )
        finally:
            for h in handles:
                h.remove()
    name_of = {id(t): n for t, n in zip(params, names)}
    rows = [(f"d{name_of.get(id(w), 'input')}", g, w) for w, g in zip(wrt, grads)]
    value_name = _identifier(output.name or "value")
    source, _, _ = _generate(
        "value_and_grad",
        list(zip(names, params)),
        (value_name, output),
        rows,
        hook,
        grad_of,
        True,
        inplace=False,  # code() is for reading: every value keeps its own name
    )
    return source


def _forward_records(output: Tensor) -> list:
    seen: dict = {}
    stack = [output]
    while stack:
        t = stack.pop()
        if t.node is None or t.node in seen:
            continue
        seen[t.node] = t
        stack.extend(t.node.inputs)
    return [n for n in seen]


def _leaves(output: Tensor) -> list[Tensor]:
    """The leaf Tensors behind ``output`` that a user made, in order of first use."""
    found: dict[int, Tensor] = {}
    for node in sorted(_forward_records(output), key=lambda n: n.index):
        for t in node.inputs:
            if t.node is None and (t.requires_grad or t.name) and id(t) not in found:
                found[id(t)] = t
    return list(found.values())
