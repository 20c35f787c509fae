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
import inspect
import itertools
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import describe, normalize_axis_tuple
from .function import Op, apply, constant
from .tensors import (
    FUNCTION_OPS,
    NONDIFF_FUNCTIONS,
    TRACING,
    UFUNC_OPS,
    Tensor,
    plain_key,
    wrap,
)

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
    # help() and inspect show NumPy's parameters (axis, keepdims), not *args, **kwargs
    public.__signature__ = inspect.signature(o.forward)  # type: ignore[attr-defined]
    return public


def _reflected(o: Op) -> Callable[[Any, Any], Tensor]:
    def reflected(self: Any, other: Any) -> Tensor:
        return apply(o, (other, self))

    return reflected


_SYMBOLS = {  # a binary op's symbol gives its dunder, reflected dunder and NumPy ufunc
    "+": ("add", np.add),
    "-": ("sub", np.subtract),
    "*": ("mul", np.multiply),
    "/": ("truediv", np.true_divide),
    "**": ("pow", np.power),
}


def unary(
    name: str, forward: Callable, vjp: Callable, math: str, *, dunder: str | None = None
) -> Any:
    """One elementwise op in one row: its NumPy ``forward`` and its ``vjp``; ``math`` for the docs.

    A NumPy ufunc as ``forward`` also makes ``np.NAME(t)`` record the op.
    """

    def elementwise(x):
        return forward(x)

    elementwise.__doc__ = f"Elementwise ``{name}``; ``{math}``."
    ufunc = forward if isinstance(forward, np.ufunc) else None
    fn = op(name, dunders=(dunder,) if dunder else (), ufunc=ufunc)(elementwise)
    fn.defvjp(vjp)
    if ufunc is not None:  # run NumPy's ufunc itself: one Python call less on every op
        fn.op.forward = ufunc
    fn.__doc__ += _example(fn, name, ([0.25, 0.5],))
    return fn


def binary(
    name: str,
    symbol: Any,
    dx: Callable,
    dy: Callable,
    math: str,
    *,
    forward: Callable | None = None,
) -> Any:
    """One broadcasting op of two inputs in one row.

    ``symbol`` is an operator (``"*"``: ``__mul__``, ``__rmul__`` and ``np.multiply``
    follow) or, for a function without one, its NumPy ufunc. The ufunc is the
    forward unless ``forward`` gives a faster one that computes the same.
    """
    word, ufunc = _SYMBOLS[symbol] if isinstance(symbol, str) else (None, symbol)

    def elementwise(x, y):
        return ufunc(x, y)

    elementwise.__doc__ = f"Elementwise ``{name}`` of ``x`` and ``y`` (broadcasting); ``{math}``."
    dunders = (f"__{word}__",) if word else ()
    reflected = (f"__r{word}__",) if word else ()
    register = op(name, dunders=dunders, reflected=reflected, ufunc=ufunc, hint=_broadcast_hint)
    fn = register(elementwise)
    fn.defvjp(dx, dy)
    # ``elementwise`` gave the signature; NumPy's ufunc (or the faster ``forward``) runs it
    fn.op.forward = ufunc if forward is None else forward
    fn.__doc__ += _example(fn, name, ([0.25, 0.5], [2.0, 3.0]))
    return fn


def _example(fn: Any, name: str, values: tuple) -> str:
    """A docstring example that runs: the op's gradient at ``values``, worked out by its VJPs."""
    o = fn.op
    arrays = tuple(np.array(v) for v in values)
    saved = o.save(o.forward(*arrays), arrays)
    grads = [np.round(call(np.ones(2), saved, {}), 4) for call in o.calls]
    names = "xy"[: len(values)]
    lines = [f">>> {v} = tape.tensor({list(a)}, requires_grad=True)" for v, a in zip(names, values)]
    grad_text = ", ".join(f"{v}.grad.round(4)" for v in names)
    shown = repr(grads[0]) if len(grads) == 1 else repr(tuple(grads))
    lines.append(f">>> tape.{name}({', '.join(names)}).sum().backward(); {grad_text}")
    return "\n\n" + "\n".join(lines) + "\n" + shown + "\n"


def _broadcast_hint(x: Any, y: Any, **params: Any) -> str | None:
    try:
        cond = np.shape(params["cond"]) if "cond" in params else ()  # np.shape(()) is (0,)
        np.broadcast_shapes(np.shape(x), np.shape(y), cond)
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


# ---- arithmetic: one row per op ---------------------------------------------------------

add = binary("add", "+", lambda g: g, lambda g: g, "∂/∂x = ∂/∂y = 1")  # g flows to both
sub = binary("sub", "-", lambda g: g, lambda g: -g, "∂/∂x = 1, ∂/∂y = −1")
mul = binary("mul", "*", lambda g, y: g * y, lambda g, x: g * x, "∂(xy)/∂x = y, ∂(xy)/∂y = x")
div = binary("div", "/", lambda g, y: g / y, lambda g, out, y: -g * out / y, "∂/∂y = −out/y")
neg = unary("neg", np.negative, lambda g: -g, "∂(−x)/∂x = −1", dunder="__neg__")


def _pow_dx(g, x, y):
    # ∂(xʸ)/∂x = y·xʸ⁻¹; where y = 0, xʸ is constant: 0, even at x = 0 where x⁻¹ is inf
    if isinstance(y, int | float):
        if y == 0:
            return np.zeros_like(g)
        return g * y * (x if y == 2 else x ** (y - 1))  # a square's x¹ is x: no np.power
    return g * y * x ** (np.where(y == 0, 1, y) - 1)


def _pow_dy(g, out, x):
    # ∂(xʸ)/∂y = xʸ·ln x; where x ≤ 0 the real derivative does not exist and we give 0
    return g * out * np.log(np.where(x > 0, x, 1))


def _power(x, y):
    # for a float array NumPy's x ** 2 is np.square: np.power's values at a third of the time
    return x**2 if y.__class__ is int and y == 2 else np.power(x, y)


pow = binary("pow", "**", _pow_dx, _pow_dy, "∂/∂x = y·xʸ⁻¹, ∂/∂y = xʸ ln x", forward=_power)


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


def _matmul_dx(g, x, y):
    if y.ndim == 1:
        return g[..., None] * y  # out = x·y over the last axis: an outer product back
    if x.ndim == 1:
        return (y @ g[..., None])[..., 0]
    return g @ y.swapaxes(-1, -2)  # dX = dZ Wᵀ


def _matmul_dy(g, x, y):
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
    """Matrix product ``x @ y`` (NumPy's rules for 1-D and batched operands).

    ``dX = g Yᵀ`` and ``dY = Xᵀ g``: the Linear layer's ``dX = dZ Wᵀ``, ``dW = Xᵀ dZ``.

    >>> x, w = tape.tensor([[1.0, 2.0]]), tape.tensor([[3.0], [4.0]], requires_grad=True)
    >>> (x @ w).sum().backward(); w.grad
    array([[1.],
           [2.]])
    """
    return x @ y


matmul.defvjp(_matmul_dx, _matmul_dy)


# ---- elementwise functions: one row per op --------------------------------------------


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never exp of a large positive number
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


exp = unary("exp", np.exp, lambda g, out: g * out, "∂eˣ/∂x = eˣ, the output itself")
log = unary("log", np.log, lambda g, x: g / x, "∂ln x/∂x = 1/x; domain x > 0")
sqrt = unary("sqrt", np.sqrt, lambda g, out: g / (2 * out), "∂√x/∂x = 1/(2√x); inf at 0")
# sign(0) = 0: abs'(0) = 0, as in PyTorch
abs = unary("abs", np.absolute, lambda g, x: g * np.sign(x), "∂|x|/∂x = sign(x)", dunder="__abs__")
tanh = unary("tanh", np.tanh, lambda g, out: g * (1 - out * out), "∂tanh/∂x = 1 − tanh²")
sigmoid = unary("sigmoid", _sigmoid, lambda g, out: g * out * (1 - out), "∂σ/∂x = σ(1 − σ)")
# 1 where x > 0 (out > 0 says the same): relu'(0) = 0, as in PyTorch
relu = unary("relu", lambda x: np.maximum(x, 0), lambda g, out: g * (out > 0), "∂/∂x = [x > 0]")


class _TensorBound:
    """Stands for a clamp bound given as a Tensor: it travels as an input, after ``x``."""

    def __repr__(self) -> str:
        return "tensor"


TENSOR_BOUND = _TensorBound()  # the one instance: tape.compile writes it as an operand


def _clamp_bounds(bounds: tuple, min: Any, max: Any) -> tuple:
    """The ``(min, max)`` a clamp record used: Tensor bounds are its inputs after ``x``."""
    rest = iter(bounds)
    return (
        next(rest) if min is TENSOR_BOUND else min,
        next(rest) if max is TENSOR_BOUND else max,
    )


def _clamp_hint(x: Any, *bounds: Any, **params: Any) -> str | None:
    try:
        np.broadcast_shapes(np.shape(x), *(np.shape(b) for b in bounds))
    except ValueError:
        return (
            "the bounds broadcast against x as operands do: shapes aligned from the right, "
            "each pair of sizes equal or 1; reshape a bound (e.g. lo[:, None])"
        )
    return None


@op("clamp", method=False, hint=_clamp_hint)
def _clamp(x, *bounds, min=None, max=None):
    """Clip ``x`` to ``[min, max]``; a bound is ``None``, a number, an array or a Tensor."""
    lo, hi = _clamp_bounds(bounds, min, max)
    if lo is None and hi is None:
        return np.array(x, copy=True)  # NumPy < 2.1 refuses np.clip(x, None, None)
    return np.clip(x, lo, hi)


def _clamp_vjp(g, x, *bounds, min=None, max=None):
    # Masks as PyTorch's clamp_backward and clamp_backward_min_max:
    #   x:   g where min <= x <= max, bounds included (a tie at a bound goes to x)
    #   min: g where x < min (and min < max when both are given)
    #   max: g where x > max, and everywhere max < min (np.clip then gives max)
    # So where min == max and x lies outside, no input gets the gradient.
    lo, hi = _clamp_bounds(bounds, min, max)
    inside = np.ones_like(x, dtype=bool) if lo is None else x >= lo
    if hi is not None:
        inside = inside & (x <= hi)
    grads = [np.where(inside, g, 0)]
    if min is TENSOR_BOUND:
        below = x < lo if hi is None else (x < lo) & (lo < hi)
        grads.append(np.where(below, g, 0))
    if max is TENSOR_BOUND:
        above = x > hi if lo is None else (x > hi) | (hi < lo)
        grads.append(np.where(above, g, 0))
    return tuple(grads)


_clamp.defvjp_all(_clamp_vjp)


def clamp(x: Any, min: Any = None, max: Any = None) -> Tensor:
    """Clip ``x`` to ``[min, max]``; either bound may be ``None``, a number or a Tensor.

    ``∂out/∂x = 1`` where ``min ≤ x ≤ max`` (bounds included), else 0. A bound
    that is a Tensor requiring grad receives ``g`` where it is the active bound
    (``x < min``; ``x > max``), as in PyTorch.

    >>> x = tape.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    >>> m = tape.tensor(0.0, requires_grad=True)  # a lower bound that learns
    >>> x.clamp(min=m, max=1.0).sum().backward(); x.grad, m.grad
    (array([0., 1., 0.]), array(1.))
    """
    min, max = (constant(b, "clamp") if isinstance(b, list | tuple) else b for b in (min, max))
    bounds = tuple(b for b in (min, max) if isinstance(b, Tensor))
    params = {
        "min": TENSOR_BOUND if isinstance(min, Tensor) else min,
        "max": TENSOR_BOUND if isinstance(max, Tensor) else max,
    }
    return apply(_clamp.op, (x, *bounds), params)


# ---- reductions -----------------------------------------------------------------------


@op("sum", numpy=(np.sum,))
def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (all axes when ``None``); every summand gets the whole ``g``.

    >>> x = tape.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> (x.sum(axis=0) * [10.0, 100.0]).sum().backward(); x.grad
    array([[ 10., 100.],
           [ 10., 100.]])
    """
    return np.sum(x, axis=_axis(axis), keepdims=keepdims)


# every summand receives the whole upstream gradient
sum.defvjp(
    lambda g, x_shape, axis, keepdims: np.broadcast_to(
        _expand(g, x_shape, _axis(axis), keepdims), x_shape
    )
)


@op("mean", numpy=(np.mean,))
def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis`` (all axes when ``None``); each entry gets ``g/N``.

    >>> x = tape.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> x.mean().backward(); x.grad
    array([0.25, 0.25, 0.25, 0.25])
    """
    return np.mean(x, axis=_axis(axis), keepdims=keepdims)


def _mean_vjp(g, x_shape, axis, keepdims):
    count = math.prod(x_shape) // builtins.max(g.size, 1)  # np.prod would make an array first
    return np.broadcast_to(_expand(g / count, x_shape, _axis(axis), keepdims), x_shape)  # g/N each


mean.defvjp(_mean_vjp)


def _extremum_vjp(g, out, x, axis, keepdims):
    axis = _axis(axis)
    extremum = _expand(out, x.shape, axis, keepdims)
    hit = (x == extremum) | (np.isnan(x) & np.isnan(extremum))  # NaN wins, as in NumPy
    # ties share the gradient evenly, as in PyTorch
    return _expand(g, x.shape, axis, keepdims) * hit / hit.sum(axis=axis, keepdims=True)


@op("max", numpy=(np.max, np.amax))
def max(x, axis=None, keepdims=False):
    """Largest entry over ``axis``; ``g`` goes to the maximum, tied maxima share it evenly.

    >>> x = tape.tensor([1.0, 3.0, 3.0], requires_grad=True)
    >>> x.max().backward(); x.grad
    array([0. , 0.5, 0.5])
    """
    return np.max(x, axis=_axis(axis), keepdims=keepdims)


max.defvjp(_extremum_vjp)


@op("min", numpy=(np.min, np.amin))
def min(x, axis=None, keepdims=False):
    """Smallest entry over ``axis``; ``g`` goes to the minimum, tied minima share it evenly.

    >>> x = tape.tensor([1.0, 3.0, 2.0], requires_grad=True)
    >>> x.min().backward(); x.grad
    array([1., 0., 0.])
    """
    return np.min(x, axis=_axis(axis), keepdims=keepdims)


min.defvjp(_extremum_vjp)


def _max_kept(x: Any, axis: Any) -> Any:
    """The max along ``axis`` as a size-1 axis: the shift that keeps ``exp`` from overflowing.

    An empty float axis has no max: ``-inf`` there (the softmax of nothing is
    empty, its logsumexp ``-inf``, as in PyTorch). Integers have no ``-inf``.
    """
    if x.dtype.kind == "f":
        return np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return np.max(x, axis=axis, keepdims=True)


@op("softmax")
def softmax(x, axis=-1):
    """``s = exp(x) / sum(exp(x))`` along ``axis``, stable; ``gᵀJ = s ⊙ (g − ⟨g, s⟩)``.

    >>> x = tape.tensor([0.0, 0.0], requires_grad=True)
    >>> (x.softmax() * [1.0, 0.0]).sum().backward(); x.grad
    array([ 0.25, -0.25])
    """
    e = np.exp(x - _max_kept(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


# J = diag(s) − s sᵀ, so gᵀJ = s ⊙ (g − ⟨g, s⟩)
softmax.defvjp(lambda g, out, axis: out * (g - (g * out).sum(axis=axis, keepdims=True)))


@op("log_softmax")
def log_softmax(x, axis=-1):
    """``x − log(sum(exp(x)))`` along ``axis``, stable; ``∂/∂x = g − softmax(x)·Σg``.

    >>> x = tape.tensor([0.0, 0.0], requires_grad=True)
    >>> x.log_softmax()[0].backward(); x.grad
    array([ 0.5, -0.5])
    """
    shifted = x - _max_kept(x, axis)
    with np.errstate(divide="ignore"):  # log Σ over an empty axis is log 0: the result is empty
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


# ∂/∂x = I − softmax(x) 1ᵀ, and softmax = exp(out)
log_softmax.defvjp(lambda g, out, axis: g - np.exp(out) * g.sum(axis=axis, keepdims=True))


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


_reshape.defvjp(lambda g, x_shape, shape: g.reshape(x_shape))  # the inverse reshape


def reshape(x: Any, *shape: Any) -> Tensor:
    """Same data, new shape: ``reshape(t, (4, 6))``, ``t.reshape(4, 6)``, ``t.reshape((4, 6))``.

    The gradient is ``g`` reshaped back to ``x.shape``.

    >>> x = tape.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> (x.reshape(2, 2) * [[1.0, 2.0], [3.0, 4.0]]).sum().backward(); x.grad
    array([1., 2., 3., 4.])
    """
    return apply(_reshape.op, (x,), {"shape": _shape_args(shape)})


@op("transpose", method=False)
def _transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is ``None``)."""
    return np.transpose(x, axes)


_transpose.defvjp(
    lambda g, axes: g.transpose(None if axes is None else tuple(np.argsort(axes)))
)  # undo the permutation


def transpose(x: Any, *axes: Any) -> Tensor:
    """Permute axes: ``t.transpose()``, ``t.transpose(1, 0, 2)`` or ``t.transpose((1, 0, 2))``.

    The gradient is ``g`` permuted back (``argsort`` of the axes).

    >>> x = tape.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x.T * [[3.0], [4.0]]).sum().backward(); x.grad
    array([[3., 4.]])
    """
    axes = _shape_args(axes)
    if axes:  # non-negative, so the VJP's argsort inverts the permutation
        axes = _axes_of(x, "transpose", axes)
    return apply(_transpose.op, (x,), {"axes": tuple(axes) if axes else None})


def _axes_of(x: Any, op: str, axes: Any, allow_duplicate: bool = False) -> tuple:
    """``axes`` made non-negative for ``x``, or an error naming ``op`` and x's shape."""
    data = x.data if isinstance(x, Tensor) else x
    try:
        return normalize_axis_tuple(axes, np.ndim(data), allow_duplicate=allow_duplicate)
    except ValueError as e:  # NumPy's AxisError is a ValueError
        raise ValueError(
            f"{op}({describe(data)}, axes={tuple(axes)}): {e}; "
            + ("each axis must be in" if allow_duplicate else "axes must be a permutation of")
            + f" range({np.ndim(data)}), negative ones counting from the end"
        ) from None


def swapaxes(x: Any, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes (a ``transpose``)."""
    axes = list(range(np.ndim(x.data if isinstance(x, Tensor) else x)))
    a, b = _axes_of(x, "swapaxes", (axis1, axis2), allow_duplicate=True)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def _broadcast_to_hint(x: Any, shape: Any = ()) -> str:
    return (
        f"broadcasting aligns {np.shape(x)} with {tuple(shape)} from the right and needs "
        "each of x's sizes to be 1 or the target's; add axes of length 1 first "
        "(x.expand_dims(...) or x.reshape(...))"
    )


@op("broadcast_to", method=False, hint=_broadcast_to_hint)
def _broadcast_to(x, shape=()):
    """Read ``x`` as an array of a larger ``shape``, NumPy broadcasting rules."""
    return np.broadcast_to(x, shape)


_broadcast_to.defvjp(lambda g, shape: g)  # the engine sums g back to x's shape


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """Read ``x`` as an array of ``shape`` (NumPy's broadcasting rules), without copying.

    Each entry of ``x`` feeds every output it was repeated into, so its
    gradient is the sum of theirs: ``g`` summed back to ``x.shape``.

    >>> b = tape.tensor([1.0, 2.0], requires_grad=True)
    >>> b.broadcast_to((3, 2)).sum().backward(); b.grad
    array([3., 3.])
    """
    shape = tuple(shape) if isinstance(shape, Sequence | np.ndarray) else (shape,)
    return apply(_broadcast_to.op, (x,), {"shape": shape})


@op("astype", public=False)
def astype(x, dtype=None):
    """The same values in another floating dtype."""
    return x.astype(dtype)


astype.defvjp(lambda g, dtype: g)  # the engine casts g back to x's dtype


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


index_add.defvjp(lambda g, key, shape: g[key])


@op("getitem", method=False)
def _getitem(x, key=None):
    """Basic and integer-array indexing, ``x[key]``."""
    return x[key]


# the gradient lands where the entries came from; repeated indices add up
_getitem.defvjp(lambda g, x_shape, key: index_add.op.call(g, key=key, shape=x_shape))


def getitem(x: Any, key: Any) -> Tensor:
    """``x[key]``: basic slicing and integer-array indexing; ``g`` lands where entries came from.

    Repeated indices accumulate.

    >>> x = tape.tensor([10.0, 20.0, 30.0], requires_grad=True)
    >>> x[[0, 2, 0]].sum().backward(); x.grad
    array([2., 0., 1.])
    """
    return apply(_getitem.op, (x,), {"key": plain_key(key)})


def _split_vjp(g, *xs_shape, axis=0):
    ends = np.cumsum([shape[axis] for shape in xs_shape])
    lead = (slice(None),) * normalize_axis_tuple(axis, g.ndim)[0]
    return tuple(g[(*lead, slice(end - s[axis], end))] for s, end in zip(xs_shape, ends))


@op("concatenate", method=False, numpy=(np.concatenate,))
def _concatenate(*xs, axis=0):
    """Join tensors along an existing ``axis``."""
    return np.concatenate(xs, axis=axis)


_concatenate.defvjp_all(_split_vjp)  # each input gets its slice of g


def concatenate(ts: Sequence[Any], axis: int = 0) -> Tensor:
    """Join a sequence of tensors along an existing ``axis``; each gets its slice of ``g``.

    >>> a, b = tape.tensor([1.0], requires_grad=True), tape.tensor([2.0, 3.0], requires_grad=True)
    >>> (tape.concatenate([a, b]) * [1.0, 2.0, 3.0]).sum().backward(); b.grad
    array([2., 3.])
    """
    if axis is None:
        raise ValueError(
            "concatenate: axis=None (flatten, then join) is not supported; "
            "flatten each tensor with .reshape(-1) and join along axis 0"
        )
    return apply(_concatenate.op, tuple(ts), {"axis": axis})


def _unstack_vjp(g, *xs_shape, axis=0):
    lead = (slice(None),) * normalize_axis_tuple(axis, g.ndim)[0]
    return tuple(g[(*lead, i)] for i in range(len(xs_shape)))


@op("stack", method=False, numpy=(np.stack,))
def _stack(*xs, axis=0):
    """Join tensors along a new ``axis``."""
    return np.stack(xs, axis=axis)


_stack.defvjp_all(_unstack_vjp)  # each input gets its slice of g


def stack(ts: Sequence[Any], axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new ``axis``; each gets ``g`` at its position.

    >>> a, b = tape.tensor([1.0, 2.0], requires_grad=True), tape.tensor([3.0, 4.0])
    >>> (tape.stack([a, b]) * [[5.0, 6.0], [7.0, 8.0]]).sum().backward(); a.grad
    array([5., 6.])
    """
    return apply(_stack.op, tuple(ts), {"axis": axis})


@op("where", method=False, hint=_broadcast_hint)
def _where(x, y, cond=None):
    """``x`` where ``cond`` holds, else ``y`` (broadcasting all three)."""
    return np.where(cond, x, y)


_where.defvjp(
    lambda g, cond: np.where(cond, g, 0),  # x's entries where chosen
    lambda g, cond: np.where(cond, 0, g),  # y's entries elsewhere
)


def where(cond: Any, x: Any, y: Any) -> Tensor:
    """``x`` where ``cond`` holds, else ``y``; each gets ``g`` where it was chosen.

    ``cond`` carries no gradient.

    >>> x = tape.tensor([-1.0, 2.0], requires_grad=True)
    >>> tape.where(x > 0, x, 0.1 * x).sum().backward(); x.grad
    array([0.1, 1. ])
    """
    if TRACING.hook is not None and not any(
        isinstance(v, Tensor) and v.requires_grad for v in (x, y)
    ):
        # tape.compile: a choice between constants by a traced condition has no gradient to
        # record, but must be recomputed from the condition on every call, not frozen
        traced = TRACING.hook.untracked(np.where, (cond, x, y), {})
        if traced is not None:
            return traced
    cond = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    return apply(_where.op, (x, y), {"cond": cond})


def _maximum_mask(x, y):
    return (x > y) + 0.5 * (x == y)  # a tie splits the gradient in half


@op("maximum", method=False, ufunc=np.maximum, hint=_broadcast_hint)
def maximum(x, y):
    """Elementwise larger of ``x`` and ``y``; ``g`` goes to the larger, a tie splits it in half.

    >>> x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> tape.maximum(x, 2.0).sum().backward(); x.grad
    array([0. , 0.5, 1. ])
    """
    return np.maximum(x, y)


maximum.defvjp(
    lambda g, x, y: g * _maximum_mask(x, y),
    lambda g, x, y: g * _maximum_mask(y, x),
)


@op("minimum", method=False, ufunc=np.minimum, hint=_broadcast_hint)
def minimum(x, y):
    """Elementwise smaller of ``x`` and ``y``; ``g`` goes to the smaller, a tie splits it in half.

    >>> x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> tape.minimum(x, 2.0).sum().backward(); x.grad
    array([1. , 0.5, 0. ])
    """
    return np.minimum(x, y)


minimum.defvjp(
    lambda g, x, y: g * _maximum_mask(y, x),
    lambda g, x, y: g * _maximum_mask(x, y),
)


# ---- registration of the hand-written public forms ---------------------------------------

Tensor.reshape = reshape  # type: ignore[attr-defined]
Tensor.clamp = clamp  # type: ignore[attr-defined]
Tensor.broadcast_to = broadcast_to  # type: ignore[attr-defined]
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
    return wrap(np.asarray(fn(x.data, **kwargs)))


Tensor.astype = _astype  # type: ignore[attr-defined]


FUNCTION_OPS.update(
    {
        np.reshape: reshape,
        np.transpose: lambda x, axes=None: transpose(x, axes) if axes is not None else transpose(x),
        np.swapaxes: swapaxes,
        np.concatenate: concatenate,
        np.stack: stack,
        np.where: where,
        np.clip: clamp,
        np.broadcast_to: broadcast_to,
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
            return wrap(np.asarray(ufunc(x, y)))
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
        np.around, np.trunc, np.fix,
        np.shape, np.ndim, np.size, np.allclose, np.isclose, np.array_equal,
        np.argmax, np.argmin, np.argsort, np.count_nonzero, np.any, np.all,
        np.zeros_like, np.ones_like, np.empty_like, np.result_type, np.can_cast,
        np.array_repr, np.array_str, np.array2string, np.iscomplexobj, np.isrealobj,
    }
)  # fmt: skip


# ==== more elementary functions, reductions, shapes and linear algebra (issue 11) ==========
#
# Each VJP reads only what its formula needs: the output where the classic rule is
# written with it (tan, expm1, exp2, reciprocal), and "reads: x.shape only" marks
# formulas that use an input's shape but not its values.

_LN2, _LN10 = math.log(2.0), math.log(10.0)


# ---- trigonometric and hyperbolic: one row per op ------------------------------------------

sin = unary("sin", np.sin, lambda g, x: g * np.cos(x), "∂ sin x/∂x = cos x")
cos = unary("cos", np.cos, lambda g, x: -g * np.sin(x), "∂ cos x/∂x = −sin x")
# poles at π/2 + kπ
tan = unary("tan", np.tan, lambda g, out: g * (1 + out * out), "∂ tan x/∂x = 1 + tan² x")
# domain −1 ≤ x ≤ 1, inf at ±1
arcsin = unary("arcsin", np.arcsin, lambda g, x: g / np.sqrt(1 - x * x), "∂/∂x = 1/√(1 − x²)")
arccos = unary("arccos", np.arccos, lambda g, x: -g / np.sqrt(1 - x * x), "∂/∂x = −1/√(1 − x²)")
arctan = unary("arctan", np.arctan, lambda g, x: g / (1 + x * x), "∂/∂x = 1/(1 + x²)")
sinh = unary("sinh", np.sinh, lambda g, x: g * np.cosh(x), "∂ sinh x/∂x = cosh x")
cosh = unary("cosh", np.cosh, lambda g, x: g * np.sinh(x), "∂ cosh x/∂x = sinh x")


# ---- logarithms, exponentials, powers: one row per op ---------------------------------------

# accurate for tiny x; domain x > −1
log1p = unary("log1p", np.log1p, lambda g, x: g / (1 + x), "∂ ln(1 + x)/∂x = 1/(1 + x)")
expm1 = unary("expm1", np.expm1, lambda g, out: g * (out + 1), "∂(eˣ − 1)/∂x = eˣ = out + 1")
log2 = unary("log2", np.log2, lambda g, x: g / (x * _LN2), "∂ log₂ x/∂x = 1/(x ln 2)")
log10 = unary("log10", np.log10, lambda g, x: g / (x * _LN10), "∂ log₁₀ x/∂x = 1/(x ln 10)")
exp2 = unary("exp2", np.exp2, lambda g, out: g * out * _LN2, "∂ 2ˣ/∂x = 2ˣ ln 2")
square = unary("square", np.square, lambda g, x: g * 2 * x, "∂x²/∂x = 2x")
# x ≠ 0
reciprocal = unary("reciprocal", np.reciprocal, lambda g, out: -g * out * out, "∂(1/x)/∂x = −out²")
# piecewise constant: 0 everywhere, and 0 at the jump too, as PyTorch
sign = unary("sign", np.sign, lambda g: np.zeros_like(g), "∂ sign x/∂x = 0")


# ---- reductions ----------------------------------------------------------------------------


@op("prod", numpy=(np.prod,))
def prod(x, axis=None, keepdims=False):
    """Product over ``axis`` (all axes when ``None``); ``∂/∂xᵢ = Π_{j≠i} xⱼ``.

    Zeros are handled as in PyTorch: with one zero in a product only that
    entry has a gradient (the product of the others), with two or more none.

    >>> x = tape.tensor([2.0, 3.0, 4.0], requires_grad=True)
    >>> x.prod().backward(); x.grad
    array([12.,  8.,  6.])
    """
    return np.prod(x, axis=_axis(axis), keepdims=keepdims)


def _prod_vjp(g, x, axis, keepdims):
    # ∂/∂xᵢ Πx = Πx / xᵢ, but without dividing by 0, and with no branch on the values, so
    # tape.compile traces it for any x. `rest` is the product of the nonzero entries; `s`
    # the sum of the zero entries: 0, but on the tape with slope 1, so the result is right
    # to second order: no zero gives rest/xᵢ; with one zero, at i ≠ zero Π_{j≠i} =
    # rest/xᵢ·x_zero, at the zero it is rest; with two, at each zero rest·(the other zero);
    # with more, 0.
    axis = _axis(axis)
    g = _expand(g, x.shape, axis, keepdims)
    zero = x == 0
    count = zero.sum(axis=axis, keepdims=True)
    safe = np.where(zero, 1, x)
    rest = prod.op.call(safe, axis=axis, keepdims=True)
    s = np.where(zero, x, 0).sum(axis=axis, keepdims=True)
    at_nonzero = rest / safe * np.where(count == 0, 1, np.where(count == 1, s, 0))
    at_zero = np.where(count == 1, rest, np.where(count == 2, rest * (s - x), 0))
    return g * np.where(zero, at_zero, at_nonzero)


prod.defvjp(_prod_vjp)


def _count(x: Any, out: Any) -> int:
    """How many entries of ``x`` each entry of a reduction's ``out`` summarises."""
    return x.size // builtins.max(out.size, 1)


@op("var", numpy=(np.var,))
def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over ``axis``, ``Σ(xᵢ − x̄)²/(N − ddof)``; ``∂/∂xᵢ = 2(xᵢ − x̄)/(N − ddof)``.

    ``ddof=1`` gives the unbiased estimate (PyTorch's default, NumPy's is 0).

    >>> x = tape.tensor([0.0, 3.0], requires_grad=True)
    >>> x.var().backward(); x.grad
    array([-1.5,  1.5])
    """
    return np.var(x, axis=_axis(axis), ddof=ddof, keepdims=keepdims)


def _var_vjp(g, out, x, axis, ddof, keepdims):
    axis = _axis(axis)
    centred = x - x.mean(axis=axis, keepdims=True)
    # ∂var/∂xᵢ = 2(xᵢ − x̄)/(N − ddof): the terms through x̄ sum to zero
    return _expand(g, x.shape, axis, keepdims) * 2 * centred / _dof(x, out, ddof)


def _dof(x, out, ddof):
    # N − ddof, never below 0, as NumPy's forward has it: no degrees left is inf, not a sign flip
    return builtins.max(_count(x, out) - ddof, 0)


var.defvjp(_var_vjp)


@op("std", numpy=(np.std,))
def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation over ``axis``, ``√var``; ``∂/∂xᵢ = (xᵢ − x̄)/((N − ddof)·std)``.

    Where the deviation is 0 (all entries equal) the gradient is 0, as in PyTorch.

    >>> x = tape.tensor([1.0, 3.0], requires_grad=True)
    >>> x.std().backward(); x.grad
    array([-0.5,  0.5])
    """
    return np.std(x, axis=_axis(axis), ddof=ddof, keepdims=keepdims)


def _std_vjp(g, out, x, axis, ddof, keepdims):
    axis = _axis(axis)
    g, out = _expand(g, x.shape, axis, keepdims), _expand(out, x.shape, axis, keepdims)
    centred = x - x.mean(axis=axis, keepdims=True)
    scale = _dof(x, out, ddof) * np.where(out == 0, 1, out)
    # ∂std/∂xᵢ = (xᵢ − x̄)/((N − ddof)·std); 0 where std = 0 (PyTorch masks it the same way)
    return g * np.where(out == 0, 0, centred / scale)


std.defvjp(_std_vjp)


@op("logsumexp")
def logsumexp(x, axis=None, keepdims=False):
    """``log Σ eˣ`` over ``axis``, stable for large ``|x|``; ``∂/∂xᵢ = softmax(x)ᵢ``.

    >>> x = tape.tensor([1000.0, 1000.0], requires_grad=True)
    >>> x.logsumexp().backward(); x.grad
    array([0.5, 0.5])
    """
    axis = _axis(axis)
    m = _max_kept(x, axis)
    m = np.where(np.isfinite(m), m, 0)  # all −inf, an empty axis (or an inf): shift by nothing
    with np.errstate(divide="ignore"):  # log 0 = −inf is the right answer for all −inf
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


logsumexp.defvjp(  # ∂/∂xᵢ log Σ eˣ = e^(xᵢ − out): the softmax
    lambda g, out, x, axis, keepdims: (
        _expand(g, x.shape, _axis(axis), keepdims)
        * np.exp(x - _expand(out, x.shape, _axis(axis), keepdims))
    )
)


@op("cumsum", numpy=(np.cumsum,))
def cumsum(x, axis=None):
    """Running sum along ``axis`` (of the flattened ``x`` when ``None``).

    ``outⱼ = Σ_{i≤j} xᵢ``, so ``xᵢ`` feeds every ``outⱼ`` with ``j ≥ i``: its
    gradient is the running sum of ``g`` taken from the end.

    >>> x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x.cumsum().sum().backward(); x.grad
    array([3., 2., 1.])
    """
    return np.cumsum(x, axis=axis)


def _cumsum_vjp(g, x_shape, axis):
    # ∂/∂xᵢ = Σ_{j≥i} gⱼ: a cumulative sum from the end
    if axis is None:
        return np.flip(np.cumsum(np.flip(g))).reshape(x_shape)
    return np.flip(np.cumsum(np.flip(g, axis), axis), axis)


cumsum.defvjp(_cumsum_vjp)


def _norm_p(ndim: int, ord: Any, axis: Any) -> float:
    """The vector p-norm that ``norm(x, ord, axis)`` computes; refuses what has no clean VJP."""
    matrix = (
        isinstance(axis, tuple | list) and len(axis) == 2
    ) or (axis is None and ord is not None and ndim == 2)  # fmt: skip
    if matrix:
        if ord is None or ord == "fro":
            return 2.0  # Frobenius: the 2-norm of the entries
        raise ValueError(
            f"the matrix norm ord={ord!r} has no gradient in tape; supported over "
            "two axes: ord=None or 'fro' (Frobenius). Write others with ops, e.g. ord=1 "
            "as x.abs().sum(axis=-2).max(axis=-1), ord=inf as x.abs().sum(axis=-1).max(axis=-1)"
        )
    if ord is None:
        return 2.0
    if isinstance(ord, int | float) and not isinstance(ord, bool) and (ord >= 1 or ord == -np.inf):
        return float(ord)
    raise ValueError(
        f"the vector norm ord={ord!r} has no gradient in tape; supported: ord=None "
        "or 2, 1, inf, -inf, or any p >= 1 (ord=0 counts nonzero entries and has no "
        "gradient; p < 1 has an infinite one at 0)"
    )


@op("norm", numpy=(np.linalg.norm,))
def norm(x, ord=None, axis=None, keepdims=False):
    """Vector or matrix norm as ``np.linalg.norm``: the 2-norm (Frobenius) by default.

    ``∂‖x‖₂/∂x = x/‖x‖₂`` (0 at ``x = 0``, as PyTorch); ``ord=1``: ``sign(x)``;
    ``ord=±inf``: ``sign(x)`` at the entries of largest (smallest) ``|x|``,
    ties sharing evenly; ``ord=p``: ``sign(x)|x|ᵖ⁻¹/‖x‖ᵖ⁻¹``. Matrix norms other
    than Frobenius are refused with the ops that write them.

    >>> x = tape.tensor([3.0, 4.0], requires_grad=True)
    >>> x.norm().backward(); x.grad
    array([0.6, 0.8])
    """
    _norm_p(np.ndim(x), ord, axis)
    return np.linalg.norm(x, ord=ord, axis=_axis(axis), keepdims=keepdims)


def _norm_vjp(g, out, x, ord, axis, keepdims):
    p, axis = _norm_p(x.ndim, ord, axis), _axis(axis)
    g, out = _expand(g, x.shape, axis, keepdims), _expand(out, x.shape, axis, keepdims)
    if p == 2:
        return g * x / np.where(out == 0, 1, out)  # x/‖x‖; where ‖x‖ = 0, x = 0: gives 0
    if p == 1:
        return g * np.sign(x)  # sign(0) = 0
    if p in (np.inf, -np.inf):
        hit = np.abs(x) == out  # the entries at the max (min) |x|: ties share evenly
        return g * np.sign(x) * hit / hit.sum(axis=axis, keepdims=True)
    # sign(x)|x|ᵖ⁻¹/‖x‖ᵖ⁻¹, 0 where ‖x‖ = 0
    return g * np.sign(x) * np.abs(x) ** (p - 1) / np.where(out == 0, 1, out) ** (p - 1)


norm.defvjp(_norm_vjp)


# ---- shapes ----------------------------------------------------------------------------------


def _squeeze_hint(x: Any, axis: Any = None) -> str:
    ones = [i for i, n in enumerate(np.shape(x)) if n == 1]
    return (
        f"squeeze drops only axes of length 1; here that is axis {ones}"
        if ones
        else "squeeze drops only axes of length 1, and this tensor has none; use reshape"
    )


@op("squeeze", numpy=(np.squeeze,), hint=_squeeze_hint)
def squeeze(x, axis=None):
    """Drop axes of length 1 (all of them when ``axis`` is ``None``); the gradient reshapes back.

    >>> x = tape.tensor([[1.0], [2.0]], requires_grad=True)
    >>> (x.squeeze() * [3.0, 4.0]).sum().backward(); x.grad
    array([[3.],
           [4.]])
    """
    return np.squeeze(x, axis=_axis(axis))


squeeze.defvjp(lambda g, x_shape, axis: g.reshape(x_shape))


@op("expand_dims", method=False)
def _expand_dims(x, axis=0):
    """Insert axes of length 1 at ``axis`` (an int or a tuple)."""
    return np.expand_dims(x, _axis(axis))


_expand_dims.defvjp(lambda g, x_shape, axis: g.reshape(x_shape))


def expand_dims(x: Any, axis: Any) -> Tensor:
    """Insert axes of length 1 at ``axis``, as ``np.expand_dims``; the gradient reshapes back.

    >>> x = tape.tensor([1.0, 2.0], requires_grad=True)
    >>> (x.expand_dims(1) * [[3.0], [4.0]]).sum().backward(); x.grad
    array([3., 4.])
    """
    return apply(_expand_dims.op, (x,), {"axis": axis})


@op("flip", numpy=(np.flip,))
def flip(x, axis=None):
    """Reverse the order of entries along ``axis`` (all axes when ``None``).

    Flipping is its own inverse, so the gradient is ``g`` flipped back.

    >>> x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x.flip() * [1.0, 10.0, 100.0]).sum().backward(); x.grad
    array([100.,  10.,   1.])
    """
    return np.flip(x, axis=_axis(axis))


flip.defvjp(lambda g, axis: flip.op.call(g, axis=axis))


@op("split", method=False)
def _split(x, axis=0, start=0, stop=None):
    """One piece of ``split``: ``x[start:stop]`` along ``axis``."""
    return x[(slice(None),) * axis + (slice(start, stop),)]


_split.defvjp(  # the piece's gradient lands where it was cut from
    lambda g, x_shape, axis, start, stop: index_add.op.call(
        g, key=(slice(None),) * axis + (slice(start, stop),), shape=x_shape
    )
)


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Cut ``x`` along ``axis`` as ``np.split``: into equal pieces, or at the given indices.

    Returns a list with one tape record per piece; each piece's gradient lands
    in its own slice of ``x``'s gradient (pieces nothing used contribute zeros).

    >>> x = tape.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> a, b = tape.split(x, 2); (a * 10 + b).sum().backward(); x.grad
    array([10., 10.,  1.,  1.])
    """
    shape = np.shape(x.data if isinstance(x, Tensor) else x)
    try:
        axis = normalize_axis_tuple(axis, len(shape))[0]
    except ValueError as e:
        raise ValueError(
            f"split({describe(x)}, axis={axis}): {e}; pick an axis of the tensor"
        ) from e
    n = shape[axis]
    if isinstance(indices_or_sections, int | np.integer):
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise ValueError(
                f"split({describe(x)}, {sections}, axis={axis}): an axis of length {n} does "
                f"not split into {sections} equal pieces; give a number of pieces that "
                f"divides {n}, or the indices to cut at, e.g. [{n // 2}]"
            )
        edges = [i * (n // sections) for i in range(sections + 1)]
    else:
        edges = [0, *(int(i) for i in indices_or_sections), n]
    return [
        apply(_split.op, (x,), {"axis": axis, "start": start, "stop": stop})
        for start, stop in itertools.pairwise(edges)
    ]


# ---- linear algebra ---------------------------------------------------------------------------


def _einsum_parse(subscripts: str, n: int) -> tuple[list[str], str]:
    """``'ij,jk'`` → ``(['ij', 'jk'], 'ik')``: the operands' and the output's subscripts.

    The implicit form's output is NumPy's: the letters used once, in alphabetical order.
    """
    if not isinstance(subscripts, str):
        raise TypeError(
            f"einsum: the first argument is the subscripts string, got "
            f"{type(subscripts).__name__}; call tape.einsum('ij,jk->ik', a, b)"
        )
    text = subscripts.replace(" ", "")
    if "." in text:
        raise ValueError(
            f"einsum({subscripts!r}): ellipsis ('...') is not supported; name every axis "
            "with a letter, e.g. 'bij,bjk->bik'"
        )
    inputs, arrow, result = text.partition("->")
    operands = inputs.split(",")
    letters = inputs.replace(",", "")
    if not arrow:
        result = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    bad = sorted({c for c in letters + result if c not in string.ascii_letters})
    if bad or "->" in result:
        raise ValueError(
            f"einsum({subscripts!r}): subscripts are letters, one group per operand "
            f"separated by ',', and one optional '->'; {bad or ['->']} do not fit"
        )
    if len(operands) != n:
        raise ValueError(
            f"einsum({subscripts!r}): the subscripts name {len(operands)} operand(s) but "
            f"{n} were given; give one group of letters per operand"
        )
    return operands, result


def _einsum_hint(*xs: Any, subscripts: str = "") -> str | None:
    inputs = subscripts.split("->")[0].split(",")
    lengths: dict[str, set] = {}
    for sub, x in zip(inputs, xs):
        if len(sub) != np.ndim(x):
            return f"{sub!r} names {len(sub)} axes, but its operand has {np.ndim(x)}"
        for c, n in zip(sub, np.shape(x)):
            lengths.setdefault(c, set()).add(n)
    clash = {c: sorted(n) for c, n in lengths.items() if len(n - {1}) > 1}
    if clash:
        letter, sizes = next(iter(clash.items()))
        return f"letter {letter!r} names axes of lengths {sizes}; a letter is one length"
    return None


@op("einsum", method=False, hint=_einsum_hint)
def _einsum(*xs, subscripts=""):
    """Einstein summation ``np.einsum(subscripts, *xs)`` in the explicit ``->`` form."""
    return np.einsum(subscripts, *xs, optimize=len(xs) > 2)


def _einsum_grad(g: Any, xs: tuple, inputs: list[str], result: str, k: int) -> Any:
    """The gradient of operand ``k``: an einsum of ``g`` with the other operands.

    A letter repeated in operand ``k`` (a trace ``ii``) gets a fresh letter and an
    identity matrix linking the two, so the gradient lands on the diagonal. Where
    the result is constant along a letter (summed in operand ``k`` alone, or of
    size 1 in every other operand), each entry gets the same value: it is
    broadcast to the letter's full size, and the engine sums it back where
    operand ``k`` itself has size 1.
    """
    sizes: dict[str, int] = {}  # each letter's size after broadcasting: 1 stretches, 0 wins
    for sub, x in zip(inputs, xs):
        for c, n in zip(sub, np.shape(x)):
            m = sizes.get(c, n)
            sizes[c] = 0 if 0 in (m, n) else builtins.max(m, n)
    used = set("".join(inputs) + result)
    fresh = (c for c in string.ascii_letters if c not in used)
    target, eyes = [], []
    for c in inputs[k]:
        if c in target:
            target.append(next(fresh))
            sizes[target[-1]] = sizes[c]
            eyes.append(c + target[-1])
        else:
            target.append(c)
    others = [(s, x) for j, (s, x) in enumerate(zip(inputs, xs)) if j != k]
    reached = set(result + "".join(s for s, _ in others) + "".join(eyes))
    kept = "".join(c for c in target if c in reached)
    subscripts = ",".join([result, *(s for s, _ in others), *eyes]) + "->" + kept
    eye = [np.eye(sizes[e[0]], dtype=g.dtype) for e in eyes]
    grad = _einsum.op.call(g, *(x for _, x in others), *eye, subscripts=subscripts)
    full = tuple(sizes[c] for c in target)
    if len(kept) < len(target):  # a size-1 axis for each letter the einsum did not give
        grad = grad.reshape(tuple(grad.shape[kept.index(c)] if c in reached else 1 for c in target))
    if grad.shape != full:
        grad = np.broadcast_to(grad, full)
    return grad


def _einsum_vjp(g, *xs, subscripts=""):
    # ∂/∂x_k: the einsum of g with every other operand, giving x_k's subscripts; it
    # reads the other operands, and of x_k only its shape
    # (all operands' gradients are formed: a variadic op has one VJP for all)
    operands, result = subscripts.split("->")
    inputs = operands.split(",")
    return tuple(_einsum_grad(g, xs, inputs, result, k) for k in range(len(xs)))


_einsum.defvjp_all(_einsum_vjp)


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Einstein summation as ``np.einsum``: ``'ij,jk->ik'`` or the implicit ``'ij,jk'``.

    Letters name axes; letters missing from the output are summed. The
    gradient of each operand is again an einsum: ``g`` with the other
    operands, giving that operand's letters (``ij,jk->ik``: ``dA = g Bᵀ``).
    No ellipsis: name every axis.

    >>> a, b = tape.tensor([[1.0, 2.0]], requires_grad=True), tape.tensor([[3.0], [4.0]])
    >>> tape.einsum("ij,jk->ik", a, b).sum().backward(); a.grad
    array([[3., 4.]])
    """
    inputs, result = _einsum_parse(subscripts, len(operands))
    return apply(_einsum.op, operands, {"subscripts": ",".join(inputs) + "->" + result})


def _dot_subscripts(xdim: int, ydim: int) -> tuple[list[str], str]:
    """``np.dot``'s contraction as einsum subscripts: x's last axis with y's second-to-last."""
    x = string.ascii_lowercase[: xdim - 1] + "Z"
    y = "Z" if ydim == 1 else string.ascii_uppercase[: ydim - 2] + "ZY"
    return [x, y], x[:-1] + y.replace("Z", "")


def _dot_grad(g: Any, x: Any, y: Any, k: int) -> Any:
    xdim, ydim = np.ndim(x), np.ndim(y)
    if xdim == 0 or ydim == 0:  # np.dot with a scalar is a product
        return g * (y if k == 0 else x)
    inputs, result = _dot_subscripts(xdim, ydim)
    return _einsum_grad(g, (x, y), inputs, result, k)


def _dot_hint(x: Any, y: Any) -> str | None:
    xs, ys = np.shape(x), np.shape(y)
    if xs and ys and xs[-1] != ys[-2 if len(ys) > 1 else 0]:
        which = "second-to-last" if len(ys) > 1 else "only"
        return (
            f"dot contracts x's last axis ({xs[-1]}) with y's {which} axis "
            f"({ys[-2 if len(ys) > 1 else 0]}); transpose an operand (.T) or check the sizes"
        )
    return None


@op("dot", numpy=(np.dot,), hint=_dot_hint)
def dot(x, y):
    """``np.dot``: inner product of vectors, matrix product, and NumPy's N-D rule.

    N-D operands are contracted over x's last axis and y's second-to-last. The
    gradients are einsums of ``g`` with the other operand (``g yᵀ`` and ``xᵀ g``
    for matrices).

    >>> x = tape.tensor([1.0, 2.0], requires_grad=True)
    >>> x.dot([3.0, 4.0]).backward(); x.grad
    array([3., 4.])
    """
    return np.dot(x, y)


dot.defvjp(
    lambda g, x, y: _dot_grad(g, x, y, 0),  # contract g with y over y's other axes
    lambda g, x, y: _dot_grad(g, x, y, 1),  # contract x with g over x's other axes
)


@op("outer", method=False, numpy=(np.outer,))
def outer(x, y):
    """Outer product of the flattened inputs, ``outᵢⱼ = xᵢ yⱼ``; ``∂/∂xᵢ = Σⱼ gᵢⱼ yⱼ``.

    >>> x = tape.tensor([1.0, 2.0], requires_grad=True)
    >>> tape.outer(x, [3.0, 4.0, 5.0]).sum().backward(); x.grad
    array([12., 12.])
    """
    return np.outer(x, y)


outer.defvjp(
    lambda g, x_shape, y: np.reshape(g @ np.reshape(y, -1), x_shape),  # Σⱼ gᵢⱼ yⱼ
    lambda g, x, y_shape: np.reshape(np.reshape(x, -1) @ g, y_shape),  # Σᵢ xᵢ gᵢⱼ
)

Tensor.expand_dims = expand_dims  # type: ignore[attr-defined]
FUNCTION_OPS.update({np.expand_dims: expand_dims, np.split: split, np.einsum: einsum})


# ---- NumPy's functions called on Tensors ---------------------------------------------------

# NumPy's name for a parameter tape spells otherwise, and NumPy's parameters that change
# nothing tape computes (einsum's contraction order)
_NUMPY_NAMES = {"a_min": "min", "a_max": "max", "newshape": "shape"}
_NUMPY_HINTS = {"optimize"}


def _numpy_form(func: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` called the way NumPy calls ``func``: NumPy's parameter names and order.

    ``np.clip(t, a_min=0)`` and ``np.sum(t, 0, None)`` (``dtype=None``) bind by
    NumPy's own signature; the leading arguments are ``fn``'s inputs, the rest
    its parameters by name. A NumPy parameter tape has no use for must keep its
    default, or the error says which one and what to do instead.
    """
    try:
        numpy_params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # no signature to bind by: tape's own
        return fn
    ours = inspect.signature(fn).parameters
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    inputs = builtins.sum(p.default is p.empty and p.kind in positional for p in ours.values())
    numpy_sig = inspect.Signature(numpy_params)
    name = f"np.{func.__name__}"

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = numpy_sig.bind(*args, **kwargs).arguments  # a wrong call: NumPy's own words
        values, params, given = [], {}, {}
        for i, p in enumerate(numpy_params):
            if p.name not in bound:
                continue
            value = bound[p.name]
            if p.kind is p.VAR_POSITIONAL:
                values.extend(value)
            elif i < inputs:
                values.append(value)
            elif p.kind is p.VAR_KEYWORD:
                params.update(value)
            elif _NUMPY_NAMES.get(p.name, p.name) in ours:
                key = _NUMPY_NAMES.get(p.name, p.name)
                if ours[key].kind is p.VAR_POSITIONAL:  # reshape(x, *shape)
                    values.append(value)
                elif key in params:  # np.clip(t, 0, 1, min=0): a_min and min
                    raise ValueError(f"{name}: {given[key]} and {p.name} are one parameter")
                else:
                    params[key], given[key] = value, p.name
            elif not (value is p.default or p.name in _NUMPY_HINTS or _same(value, p.default)):
                shown = describe(value) if isinstance(value, np.ndarray) else repr(value)
                raise TypeError(
                    f"{name} on a Tensor: tape's {fn.__name__} has no {p.name!r} (got "
                    f"{shown}); leave it out, or apply it yourself (t.astype(dtype) for "
                    f"a dtype), or call {name} on t.detach() if no gradient should flow"
                )
        for key in [k for k in params if k not in ours]:
            raise TypeError(f"{name} on a Tensor: tape's {fn.__name__} has no {key!r}")
        return fn(*values, **params)

    return call


def _same(value: Any, default: Any) -> bool:
    return isinstance(value, str | bool) and type(value) is type(default) and value == default


def _where_or_nonzero(condition: Any, x: Any = None, y: Any = None) -> Any:
    """``np.where(cond, x, y)`` records ``where``; ``np.where(cond)`` is ``np.nonzero(cond)``."""
    if x is None and y is None:
        return np.nonzero(condition)
    if x is None or y is None:
        raise ValueError("np.where: give both x and y, or neither (then it is np.nonzero)")
    return where(condition, x, y)


FUNCTION_OPS[np.where] = _where_or_nonzero
for _func, _fn in list(FUNCTION_OPS.items()):
    FUNCTION_OPS[_func] = _numpy_form(_func, _fn)
