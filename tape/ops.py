"""Every built-in op: the forward on NumPy arrays, and right under it its VJP.

Each VJP formula is ``vjp(g, out, *inputs, **params)`` for one input: ``g`` is
the gradient arriving at the op's output, ``out`` the forward result. Formulas
are textbook rules only. The engine (``autodiff.py``) sums a gradient back
over broadcast axes, casts it to the input's dtype and accumulates it; a
formula never does.

Formulas use operators, methods and NumPy functions that ``Tensor`` also
dispatches, so the same line runs on arrays in an ordinary backward pass and
on Tensors under ``tape.grad(..., create_graph=True)``, which is what makes
second derivatives come out of first-derivative rules.

Kinks and ties follow PyTorch: ``relu'(0) = 0``, ``abs'(0) = 0``, ``clamp``
passes the gradient at its bounds, ``maximum``/``minimum`` split a tie in half,
``max``/``min`` reductions share the gradient evenly among tied entries.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import describe, normalize_axis_tuple
from .function import Op, apply
from .tensor import FUNCTION_OPS, NONDIFF_FUNCTIONS, TRACING, UFUNC_OPS, Tensor, _wrap

OPS: dict[str, Op] = {}
"""The public differentiable ops by name: the table tests and docs are checked against."""


def op(
    name: str,
    *,
    method: bool = True,
    dunders: Sequence[str] = (),
    reflected: Sequence[str] = (),
    ufunc: Any = None,
    numpy: Sequence[Any] = (),
    public: bool = True,
    hint: Callable[..., str | None] | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Register ``forward`` as op ``name``; return its public function.

    Positional parameters without defaults are the op's tensor inputs, the
    rest are its parameters (``axis``, ``keepdims``). The public function
    takes the parameters by position too (``t.sum(0)``) and carries the
    ``Op`` as ``.op`` and ``.defvjp`` to register the VJP right below.
    """

    def register(forward: Callable[..., Any]) -> Any:
        o = Op(name, forward)
        o.hint = hint
        fn = _public_function(o)
        fn.op = o
        fn.defvjp = o.defvjp
        fn.defvjp_all = o.defvjp_all
        if public:
            OPS[name] = o
        if method:
            setattr(Tensor, name, fn)
        for d in dunders:
            setattr(Tensor, d, fn)
        for d in reflected:
            setattr(Tensor, d, _reflected(o))
        if ufunc is not None:
            UFUNC_OPS[ufunc] = fn
        for f in numpy:
            FUNCTION_OPS[f] = fn
        return fn

    return register


def _public_function(o: Op) -> Callable[..., Tensor]:
    n, names, defaults = o.n_inputs, tuple(o.params), o.params
    if not names and n == 1:

        def public(x: Any) -> Tensor:
            return apply(o, (x,))

    elif not names and n == 2:

        def public(x: Any, y: Any) -> Tensor:  # type: ignore[misc]
            return apply(o, (x, y))

    else:

        def public(*args: Any, **kwargs: Any) -> Tensor:  # type: ignore[misc]
            if len(args) < n or len(args) > n + len(names):
                raise TypeError(
                    f"{o.name}() takes {n} tensor argument(s) and at most {len(names)} "
                    f"parameter(s) ({', '.join(names)}), got {len(args)} positional"
                )
            params = dict(defaults)
            params.update(zip(names, args[n:]))
            for key, value in kwargs.items():
                if key not in defaults:
                    raise TypeError(
                        f"{o.name}() got an unexpected keyword argument {key!r}; "
                        f"it takes {', '.join(names)}"
                    )
                params[key] = value
            return apply(o, args[:n], params)

    public.__name__ = public.__qualname__ = o.name
    public.__doc__ = o.forward.__doc__
    return public


def _reflected(o: Op) -> Callable[[Any, Any], Tensor]:
    def reflected(self: Any, other: Any) -> Tensor:
        return apply(o, (other, self))

    return reflected


def _broadcast_hint(x: Any, y: Any, **params: Any) -> str | None:
    try:
        np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(params.get("cond", ())))
    except ValueError:
        return (
            "NumPy broadcasting aligns shapes from the right and needs each pair of "
            "sizes equal or 1; reshape one operand (e.g. b[:, None]) or transpose it"
        )
    return None


def _expand(g: Any, shape: tuple, axis: Any, keepdims: bool) -> Any:
    """Give a reduction's ``g`` back the reduced axes (as size 1) so it broadcasts."""
    if keepdims or axis is None:
        return g
    axes = normalize_axis_tuple(axis, len(shape))
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


# ---- arithmetic -----------------------------------------------------------------


@op("add", dunders=("__add__",), reflected=("__radd__",), ufunc=np.add, hint=_broadcast_hint)
def add(x, y):
    """Elementwise ``x + y`` (broadcasting)."""
    return x + y


add.defvjp(
    lambda g, out, x, y: g,  # ∂(x+y)/∂x = 1
    lambda g, out, x, y: g,  # ∂(x+y)/∂y = 1
)


@op("sub", dunders=("__sub__",), reflected=("__rsub__",), ufunc=np.subtract, hint=_broadcast_hint)
def sub(x, y):
    """Elementwise ``x - y`` (broadcasting)."""
    return x - y


sub.defvjp(
    lambda g, out, x, y: g,  # ∂(x−y)/∂x = 1
    lambda g, out, x, y: -g,  # ∂(x−y)/∂y = −1
)


@op("mul", dunders=("__mul__",), reflected=("__rmul__",), ufunc=np.multiply, hint=_broadcast_hint)
def mul(x, y):
    """Elementwise ``x * y`` (broadcasting)."""
    return x * y


mul.defvjp(
    lambda g, out, x, y: g * y,  # ∂(xy)/∂x = y
    lambda g, out, x, y: g * x,  # ∂(xy)/∂y = x
)


@op(
    "div",
    dunders=("__truediv__",),
    reflected=("__rtruediv__",),
    ufunc=np.true_divide,
    hint=_broadcast_hint,
)
def div(x, y):
    """Elementwise ``x / y`` (true division: integers give floats)."""
    return x / y


div.defvjp(
    lambda g, out, x, y: g / y,  # ∂(x/y)/∂x = 1/y
    lambda g, out, x, y: -g * out / y,  # ∂(x/y)/∂y = −x/y² = −out/y
)


@op("neg", dunders=("__neg__",), ufunc=np.negative)
def neg(x):
    """Elementwise ``-x``."""
    return -x


neg.defvjp(lambda g, out, x: -g)  # ∂(−x)/∂x = −1


def _pow_dx(g, out, x, y):
    # ∂(xʸ)/∂x = y·xʸ⁻¹; where y = 0, xʸ is constant: 0, even at x = 0 where x⁻¹ is inf
    if isinstance(y, int | float):
        return np.zeros_like(g) if y == 0 else g * y * x ** (y - 1)
    return g * y * x ** (np.where(y == 0, 1, y) - 1)


def _pow_dy(g, out, x, y):
    # ∂(xʸ)/∂y = xʸ·ln x; where x ≤ 0 the real derivative does not exist and we give 0
    return g * out * np.log(np.where(x > 0, x, 1))


@op("pow", dunders=("__pow__",), reflected=("__rpow__",), ufunc=np.power, hint=_broadcast_hint)
def pow(x, y):
    """Elementwise ``x ** y`` (broadcasting)."""
    return x**y


pow.defvjp(_pow_dx, _pow_dy)


def _matmul_hint(x: Any, y: Any) -> str | None:
    xs, ys = np.shape(x), np.shape(y)
    if not xs or not ys:
        return "matmul needs operands with at least one axis; use * to scale by a scalar"
    inner = ys[0] if len(ys) == 1 else ys[-2]
    if xs[-1] != inner:
        return (
            f"x @ y needs the last axis of x ({xs[-1]}) to equal the "
            f"{'only' if len(ys) == 1 else 'second-to-last'} axis of y ({inner}); "
            "transpose an operand (.T) or check the layer sizes"
        )
    return None


def _matmul_dx(g, out, x, y):
    if y.ndim == 1:
        return g[..., None] * y  # out = x·y over the last axis: an outer product back
    if x.ndim == 1:
        return (y @ g[..., None])[..., 0]
    return g @ y.swapaxes(-1, -2)  # dX = dZ Wᵀ


def _matmul_dy(g, out, x, y):
    if x.ndim == 1:
        return x[:, None] * g[..., None, :] if y.ndim > 1 else g * x
    if y.ndim == 1:
        return (x.swapaxes(-1, -2) @ g[..., None])[..., 0]
    return x.swapaxes(-1, -2) @ g  # dW = Xᵀ dZ


@op(
    "matmul",
    dunders=("__matmul__",),
    reflected=("__rmatmul__",),
    ufunc=np.matmul,
    hint=_matmul_hint,
)
def matmul(x, y):
    """Matrix product ``x @ y`` with NumPy's rules for 1-D and batched operands."""
    return x @ y


matmul.defvjp(_matmul_dx, _matmul_dy)


# ---- elementwise functions ----------------------------------------------------------


@op("exp", ufunc=np.exp)
def exp(x):
    """Elementwise ``eˣ``."""
    return np.exp(x)


exp.defvjp(lambda g, out, x: g * out)  # ∂eˣ/∂x = eˣ


@op("log", ufunc=np.log)
def log(x):
    """Natural logarithm, elementwise (domain x > 0)."""
    return np.log(x)


log.defvjp(lambda g, out, x: g / x)  # ∂ln x/∂x = 1/x


@op("sqrt", ufunc=np.sqrt)
def sqrt(x):
    """Elementwise square root (domain x ≥ 0; the gradient at 0 is inf)."""
    return np.sqrt(x)


sqrt.defvjp(lambda g, out, x: g / (2 * out))  # ∂√x/∂x = 1/(2√x)


@op("abs", dunders=("__abs__",), ufunc=np.absolute)
def abs(x):
    """Elementwise ``|x|``."""
    return np.abs(x)


abs.defvjp(lambda g, out, x: g * np.sign(x))  # ∂|x|/∂x = sign(x); sign(0) = 0


@op("tanh", ufunc=np.tanh)
def tanh(x):
    """Elementwise hyperbolic tangent."""
    return np.tanh(x)


tanh.defvjp(lambda g, out, x: g * (1 - out * out))  # ∂tanh/∂x = 1 − tanh²


@op("sigmoid")
def sigmoid(x):
    """Elementwise logistic ``1 / (1 + e⁻ˣ)``, stable for large ``|x|``."""
    e = np.exp(-np.abs(x))  # never exp of a large positive number
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


sigmoid.defvjp(lambda g, out, x: g * out * (1 - out))  # ∂σ/∂x = σ(1 − σ)


@op("relu")
def relu(x):
    """Elementwise ``max(x, 0)``."""
    return np.maximum(x, 0)


relu.defvjp(lambda g, out, x: g * (x > 0))  # 1 where x > 0; relu'(0) = 0


def _bound(value):
    # a bound given as a Tensor is a constant (np.asarray: never dispatch back to clamp)
    return np.asarray(value) if isinstance(value, Tensor) else value


def _clamp_vjp(g, out, x, min=None, max=None):
    min, max = _bound(min), _bound(max)
    inside = np.ones_like(x, dtype=bool) if min is None else x >= min
    if max is not None:
        inside = inside & (x <= max)
    return g * inside  # 1 inside [min, max], bounds included; 0 outside


@op("clamp", numpy=(np.clip,))
def clamp(x, min=None, max=None):
    """Clip ``x`` to ``[min, max]`` (either bound may be ``None``)."""
    return np.clip(x, _bound(min), _bound(max))


clamp.defvjp(_clamp_vjp)


# ---- reductions -----------------------------------------------------------------------


@op("sum", numpy=(np.sum,))
def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (all axes when ``None``)."""
    return np.sum(x, axis=_axis(axis), keepdims=keepdims)


# every summand receives the whole upstream gradient
sum.defvjp(
    lambda g, out, x, axis, keepdims: np.broadcast_to(
        _expand(g, x.shape, _axis(axis), keepdims), x.shape
    )
)


@op("mean", numpy=(np.mean,))
def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis`` (all axes when ``None``)."""
    return np.mean(x, axis=_axis(axis), keepdims=keepdims)


def _mean_vjp(g, out, x, axis, keepdims):
    count = x.size // builtins.max(out.size, 1)
    return np.broadcast_to(_expand(g / count, x.shape, _axis(axis), keepdims), x.shape)  # g/N each


mean.defvjp(_mean_vjp)


def _extremum_vjp(g, out, x, axis, keepdims):
    axis = _axis(axis)
    extremum = _expand(out, x.shape, axis, keepdims)
    hit = (x == extremum) | (np.isnan(x) & np.isnan(extremum))  # NaN wins, as in NumPy
    # ties share the gradient evenly, as in PyTorch
    return _expand(g, x.shape, axis, keepdims) * hit / hit.sum(axis=axis, keepdims=True)


@op("max", numpy=(np.max, np.amax))
def max(x, axis=None, keepdims=False):
    """Largest entry over ``axis``."""
    return np.max(x, axis=_axis(axis), keepdims=keepdims)


max.defvjp(_extremum_vjp)


@op("min", numpy=(np.min, np.amin))
def min(x, axis=None, keepdims=False):
    """Smallest entry over ``axis``."""
    return np.min(x, axis=_axis(axis), keepdims=keepdims)


min.defvjp(_extremum_vjp)


@op("softmax")
def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, stable for large inputs."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# J = diag(s) − s sᵀ, so gᵀJ = s ⊙ (g − ⟨g, s⟩)
softmax.defvjp(lambda g, out, x, axis: out * (g - (g * out).sum(axis=axis, keepdims=True)))


@op("log_softmax")
def log_softmax(x, axis=-1):
    """``x − log(sum(exp(x)))`` along ``axis``, stable for large inputs."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


# ∂/∂x = I − softmax(x) 1ᵀ, and softmax = exp(out)
log_softmax.defvjp(lambda g, out, x, axis: g - np.exp(out) * g.sum(axis=axis, keepdims=True))


# ---- shapes --------------------------------------------------------------------------


def _shape_args(shape: tuple) -> tuple:
    """``reshape(4, 6)`` and ``reshape((4, 6))`` mean the same, as in NumPy and PyTorch."""
    if len(shape) == 1 and isinstance(shape[0], Sequence | np.ndarray):
        return tuple(shape[0])
    if len(shape) == 1 and shape[0] is None:  # transpose(None), as NumPy allows
        return ()
    return shape


@op("reshape", method=False, numpy=(np.reshape,))
def _reshape(x, shape=()):
    """Same data, new shape (one axis may be ``-1``)."""
    return np.reshape(x, shape)


_reshape.defvjp(lambda g, out, x, shape: g.reshape(x.shape))  # the inverse reshape


def reshape(x: Any, *shape: Any) -> Tensor:
    """Same data, new shape: ``reshape(t, (4, 6))``, ``t.reshape(4, 6)``, ``t.reshape((4, 6))``."""
    return apply(_reshape.op, (x,), {"shape": _shape_args(shape)})


@op("transpose", method=False)
def _transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is ``None``)."""
    return np.transpose(x, axes)


_transpose.defvjp(
    lambda g, out, x, axes: g.transpose(None if axes is None else tuple(np.argsort(axes)))
)  # undo the permutation


def transpose(x: Any, *axes: Any) -> Tensor:
    """Permute axes: ``t.transpose()``, ``t.transpose(1, 0, 2)`` or ``t.transpose((1, 0, 2))``."""
    axes = _shape_args(axes)
    if axes:  # non-negative, so the VJP's argsort inverts the permutation
        axes = normalize_axis_tuple(axes, np.ndim(x.data if isinstance(x, Tensor) else x))
    return apply(_transpose.op, (x,), {"axes": tuple(axes) if axes else None})


def swapaxes(x: Any, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes (a ``transpose``)."""
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    axes = list(range(ndim))
    a, b = normalize_axis_tuple((axis1, axis2), ndim, allow_duplicate=True)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


@op("broadcast_to", method=False, numpy=(np.broadcast_to,), public=False)
def broadcast_to(x, shape=()):
    """Read ``x`` as an array of a larger ``shape``, NumPy broadcasting rules."""
    return np.broadcast_to(x, shape)


broadcast_to.defvjp(lambda g, out, x, shape: g)  # the engine sums g back to x's shape


@op("astype", public=False)
def astype(x, dtype=None):
    """The same values in another floating dtype."""
    return x.astype(dtype)


astype.defvjp(lambda g, out, x, dtype: g)  # the engine casts g back to x's dtype


# ---- indexing and joining -----------------------------------------------------------------


def _is_basic(key: Any) -> bool:
    """True when ``key`` cannot name one position twice (no integer arrays)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(
        isinstance(k, int | slice | type(None) | type(Ellipsis))
        or (isinstance(k, np.ndarray) and k.dtype == bool)
        for k in parts
    )


@op("index_add", method=False, public=False)
def index_add(g, key=None, shape=()):
    """Zeros of ``shape`` with ``g`` added at ``key``: the transpose of indexing."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(key):
        out[key] = g
    else:
        np.add.at(out, key, g)  # repeated indices accumulate
    return out


index_add.defvjp(lambda g, out, x, key, shape: g[key])


def _unwrap_key(key: Any) -> Any:
    if isinstance(key, Tensor):
        return key.data
    if isinstance(key, tuple):
        return tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return key


@op("getitem", method=False)
def _getitem(x, key=None):
    """Basic and integer-array indexing, ``x[key]``."""
    return x[key]


# the gradient lands where the entries came from; repeated indices add up
_getitem.defvjp(lambda g, out, x, key: index_add.op.call(g, key=key, shape=x.shape))


def getitem(x: Any, key: Any) -> Tensor:
    """``x[key]``: basic slicing and integer-array indexing (repeats accumulate)."""
    return apply(_getitem.op, (x,), {"key": _unwrap_key(key)})


def _split_vjp(g, out, *xs, axis=0):
    ends = np.cumsum([x.shape[axis] for x in xs])
    lead = (slice(None),) * normalize_axis_tuple(axis, out.ndim)[0]
    return tuple(g[(*lead, slice(end - x.shape[axis], end))] for x, end in zip(xs, ends))


@op("concatenate", method=False, numpy=(np.concatenate,))
def _concatenate(*xs, axis=0):
    """Join tensors along an existing ``axis``."""
    return np.concatenate(xs, axis=axis)


_concatenate.defvjp_all(_split_vjp)  # each input gets its slice of g


def concatenate(ts: Sequence[Any], axis: int = 0) -> Tensor:
    """Join a sequence of tensors along an existing ``axis``."""
    if axis is None:
        raise ValueError(
            "concatenate: axis=None (flatten, then join) is not supported; "
            "flatten each tensor with .reshape(-1) and join along axis 0"
        )
    return apply(_concatenate.op, tuple(ts), {"axis": axis})


def _unstack_vjp(g, out, *xs, axis=0):
    lead = (slice(None),) * normalize_axis_tuple(axis, out.ndim)[0]
    return tuple(g[(*lead, i)] for i in range(len(xs)))


@op("stack", method=False, numpy=(np.stack,))
def _stack(*xs, axis=0):
    """Join tensors along a new ``axis``."""
    return np.stack(xs, axis=axis)


_stack.defvjp_all(_unstack_vjp)  # each input gets its slice of g


def stack(ts: Sequence[Any], axis: int = 0) -> Tensor:
    """Join a sequence of same-shape tensors along a new ``axis``."""
    return apply(_stack.op, tuple(ts), {"axis": axis})


@op("where", method=False, hint=_broadcast_hint)
def _where(x, y, cond=None):
    """``x`` where ``cond`` holds, else ``y`` (broadcasting all three)."""
    return np.where(cond, x, y)


_where.defvjp(
    lambda g, out, x, y, cond: np.where(cond, g, 0),  # x's entries where chosen
    lambda g, out, x, y, cond: np.where(cond, 0, g),  # y's entries elsewhere
)


def where(cond: Any, x: Any, y: Any) -> Tensor:
    """``x`` where ``cond`` holds, else ``y``; ``cond`` carries no gradient."""
    cond = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    return apply(_where.op, (x, y), {"cond": cond})


def _maximum_mask(x, y):
    return (x > y) + 0.5 * (x == y)  # a tie splits the gradient in half


@op("maximum", method=False, ufunc=np.maximum, hint=_broadcast_hint)
def maximum(x, y):
    """Elementwise larger of ``x`` and ``y``."""
    return np.maximum(x, y)


maximum.defvjp(
    lambda g, out, x, y: g * _maximum_mask(x, y),
    lambda g, out, x, y: g * _maximum_mask(y, x),
)


@op("minimum", method=False, ufunc=np.minimum, hint=_broadcast_hint)
def minimum(x, y):
    """Elementwise smaller of ``x`` and ``y``."""
    return np.minimum(x, y)


minimum.defvjp(
    lambda g, out, x, y: g * _maximum_mask(y, x),
    lambda g, out, x, y: g * _maximum_mask(x, y),
)


# ---- registration of the hand-written public forms ---------------------------------------

Tensor.reshape = reshape  # type: ignore[attr-defined]
Tensor.transpose = transpose  # type: ignore[attr-defined]
Tensor.swapaxes = swapaxes  # type: ignore[attr-defined]
Tensor.T = property(transpose)  # type: ignore[attr-defined]
Tensor.__getitem__ = getitem  # type: ignore[attr-defined]
Tensor.__pos__ = lambda self: self  # type: ignore[attr-defined]


def _astype(x: Tensor, dtype: Any) -> Tensor:
    """The same values in ``dtype``; only a floating result stays on the tape."""
    if np.issubdtype(np.dtype(dtype), np.floating):
        return astype(x, dtype)
    return _no_gradient(np.asarray, x, dtype=dtype)  # integers and bools carry no gradient


def _no_gradient(fn: Any, x: Tensor, **kwargs: Any) -> Tensor:
    """``fn`` on the data, off the tape (tape.compile's trace records it, to recompute it)."""
    if TRACING.hook is not None:
        traced = TRACING.hook.untracked(fn, (x,), kwargs)
        if traced is not None:
            return traced
    return _wrap(np.array(fn(x.data, **kwargs)))


Tensor.astype = _astype  # type: ignore[attr-defined]


def _dot(x: Any, y: Any) -> Tensor:
    if np.ndim(x) > 2 or np.ndim(y) > 2:
        raise TypeError(
            "np.dot of arrays with more than 2 axes sums over other axes than matmul; "
            "use x @ y (tape.matmul), which broadcasts batch axes"
        )
    return matmul(x, y) if np.ndim(x) and np.ndim(y) else mul(x, y)


def _expand_dims(x: Any, axis: Any) -> Tensor:
    shape = np.expand_dims(np.empty(np.shape(x), dtype=bool), axis).shape
    return reshape(x, shape)


def _squeeze(x: Any, axis: Any = None) -> Tensor:
    return reshape(x, np.squeeze(np.empty(np.shape(x), dtype=bool), axis).shape)


UFUNC_OPS[np.square] = lambda x: pow(x, 2)
FUNCTION_OPS.update(
    {
        np.dot: _dot,
        np.expand_dims: _expand_dims,
        np.squeeze: _squeeze,
        np.reshape: reshape,
        np.transpose: lambda x, axes=None: transpose(x, axes) if axes is not None else transpose(x),
        np.swapaxes: swapaxes,
        np.concatenate: concatenate,
        np.stack: stack,
        np.where: where,
    }
)


# ---- comparisons: boolean results, no gradient ---------------------------------------------


def _comparison(ufunc: Any) -> Callable[[Any, Any], Tensor]:
    def compare(x: Any, y: Any) -> Tensor:
        if TRACING.hook is not None:  # tape.compile records what the tape does not
            traced = TRACING.hook.untracked(ufunc, (x, y), {})
            if traced is not None:
                return traced
        x = x.data if isinstance(x, Tensor) else x
        y = y.data if isinstance(y, Tensor) else y
        try:
            return _wrap(np.asarray(ufunc(x, y)))
        except (ValueError, TypeError) as e:
            raise type(e)(f"{ufunc.__name__}({describe(x)}, {describe(y)}): {e}") from e

    return compare


for _dunder, _ufunc in {
    "__lt__": np.less,
    "__le__": np.less_equal,
    "__gt__": np.greater,
    "__ge__": np.greater_equal,
    "__eq__": np.equal,
    "__ne__": np.not_equal,
}.items():
    UFUNC_OPS[_ufunc] = _compare = _comparison(_ufunc)
    setattr(Tensor, _dunder, _compare)

for _ufunc in (np.logical_and, np.logical_or, np.logical_not, np.bitwise_and, np.bitwise_or):
    NONDIFF_FUNCTIONS.add(_ufunc)
Tensor.__and__ = _comparison(np.bitwise_and)  # type: ignore[attr-defined]
Tensor.__or__ = _comparison(np.bitwise_or)  # type: ignore[attr-defined]
Tensor.__invert__ = lambda x: _no_gradient(np.invert, x)  # type: ignore[attr-defined]

# NumPy functions whose result has no gradient (or a zero one): safe to run on the data.
NONDIFF_FUNCTIONS.update(
    {
        np.sign, np.isfinite, np.isnan, np.isinf, np.floor, np.ceil, np.round, np.rint,
        np.shape, np.ndim, np.size, np.allclose, np.isclose, np.array_equal,
        np.argmax, np.argmin, np.argsort, np.count_nonzero, np.any, np.all,
        np.zeros_like, np.ones_like, np.empty_like, np.result_type, np.can_cast,
        np.array_repr, np.array_str, np.array2string, np.iscomplexobj, np.isrealobj,
    }
)  # fmt: skip
