"""The op table: one row per public op, driving tests/test_ops.py.

A row says how to call the op on Tensors (``call``), what NumPy computes for
the same inputs (``ref``), the input shapes, the domain inputs are drawn from,
a keyword grid, broadcasting pairs, and special values at kinks and ties with
the gradient we promise there (PyTorch's conventions). Adding an op means
adding a row here, next to its forward and VJP in tape/ops.py and its line in
docs/ops.md; test_ops.py fails, naming what is missing, when the three
disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tape

Sampler = Callable[[np.random.Generator, tuple], np.ndarray]


def real(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Magnitudes in [0.5, 2] with random signs: well-conditioned denominators."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)


def unit(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Inside (-1, 1), away from the ends: arcsin and arccos."""
    return rng.uniform(-0.9, 0.9, shape)


def above_minus_one(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(-0.5, 2.0, shape)


def no_pole(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Within (-1.2, 1.2), well inside tan's (-π/2, π/2)."""
    return rng.uniform(-1.2, 1.2, shape)


@dataclass(frozen=True)
class Special:
    """Inputs at a kink or tie, and the gradient of ``sum(op(*inputs))`` we promise."""

    inputs: tuple
    grads: tuple
    kwargs: dict = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class OpSpec:
    name: str
    call: Callable[..., Any]
    ref: Callable[..., np.ndarray]
    shapes: tuple | Callable[..., tuple]  # or a function of the keywords (einsum's subscripts)
    domains: tuple = ()  # one sampler per input; real numbers when empty
    grid: tuple = ({},)  # keyword arguments to try
    broadcast: tuple = ()  # pairs (or triples) of input shapes that must broadcast
    special: tuple = ()

    def sample(
        self, rng: np.random.Generator, shapes: tuple | None = None, kw: dict | None = None
    ) -> list[np.ndarray]:
        if shapes is None:
            shapes = self.shapes(**(kw or {})) if callable(self.shapes) else self.shapes
        domains = self.domains or (real,) * len(shapes)
        return [domain(rng, shape) for domain, shape in zip(domains, shapes)]


def _axes_grid(ndim: int) -> tuple:
    axes: list[Any] = [None, *range(ndim), -1, tuple(range(ndim))]
    if ndim == 3:
        axes.append((0, 2))
    return tuple({"axis": a, "keepdims": k} for a in axes for k in (False, True))


BINARY_BROADCAST = (((), (3,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)))


def _np_clamp(x: np.ndarray, min: Any = None, max: Any = None) -> np.ndarray:
    return x.copy() if min is None and max is None else np.clip(x, min, max)


def _np_logsumexp(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def _unary(name: str, ref: Callable[..., np.ndarray], domain: Sampler = real, **kw: Any) -> OpSpec:
    """A row for an elementwise function: the method, NumPy's ufunc, shape (3, 4)."""
    return OpSpec(name, lambda x: getattr(x, name)(), ref, ((3, 4),), domains=(domain,), **kw)


def _reduction_grid(ddof: bool = False) -> tuple:
    grid: list[dict] = [{}, {"axis": 0}, {"axis": -1, "keepdims": True}, {"axis": (0, 2)}]
    grid.append({"axis": (0, 2), "keepdims": True})
    if ddof:
        grid += [{"axis": 1, "ddof": 1}, {"ddof": 1, "keepdims": True}]
    return tuple(grid)


# einsum's grid: each subscripts string with the operand shapes it needs
EINSUM = {
    "ij,jk->ik": ((2, 3), (3, 4)),  # matmul, explicit
    "ij,jk": ((2, 3), (3, 4)),  # implicit: the letters used once, sorted: ik
    "bij,bjk->bik": ((2, 3, 4), (2, 4, 5)),  # batched matmul
    "ii->": ((3, 3),),  # trace
    "ii": ((3, 3),),  # trace, implicit
    "ii->i": ((3, 3),),  # diagonal
    "i,j->ij": ((3,), (4,)),  # outer product
    "ij,k->ijk": ((2, 3), (4,)),  # outer product of a matrix and a vector
    "ji": ((2, 3),),  # implicit transpose: the output is ij
    "ij->": ((2, 3),),  # sum of all
    "ij,ij->i": ((2, 3), (2, 3)),  # row-wise dot products
    "ij,jk,kl->il": ((2, 3), (3, 4), (4, 2)),  # a chain of three
    "iij,kj->ik": ((3, 3, 2), (4, 2)),  # a diagonal inside a contraction
    "ij,k->i": ((2, 3), (4,)),  # j and k each summed inside one operand alone
}


def _np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


SPECS: tuple[OpSpec, ...] = (
    OpSpec("add", lambda x, y: x + y, np.add, ((3, 4), (3, 4)), broadcast=BINARY_BROADCAST),
    OpSpec("sub", lambda x, y: x - y, np.subtract, ((3, 4), (3, 4)), broadcast=BINARY_BROADCAST),
    OpSpec("mul", lambda x, y: x * y, np.multiply, ((3, 4), (3, 4)), broadcast=BINARY_BROADCAST),
    OpSpec(
        "div",
        lambda x, y: x / y,
        np.divide,
        ((3, 4), (3, 4)),
        domains=(real, away_from_zero),
        broadcast=BINARY_BROADCAST,
    ),
    OpSpec("neg", lambda x: -x, np.negative, ((3, 4),)),
    OpSpec(
        "pow",
        lambda x, y: x**y,
        np.power,
        ((3, 4), (3, 4)),
        domains=(positive, real),
        broadcast=BINARY_BROADCAST,
    ),
    OpSpec(
        "matmul",
        lambda x, y: x @ y,
        np.matmul,
        ((4, 3), (3, 2)),
        broadcast=(
            ((3,), (3,)),
            ((3,), (3, 2)),
            ((4, 3), (3,)),
            ((2, 4, 3), (3, 2)),
            ((4, 3), (2, 3, 2)),
            ((2, 1, 4, 3), (3, 3, 2)),
        ),
    ),
    OpSpec("exp", lambda x: x.exp(), np.exp, ((3, 4),)),
    OpSpec("log", lambda x: x.log(), np.log, ((3, 4),), domains=(positive,)),
    OpSpec("sqrt", lambda x: x.sqrt(), np.sqrt, ((3, 4),), domains=(positive,)),
    OpSpec(
        "abs",
        lambda x: x.abs(),
        np.abs,
        ((3, 4),),
        domains=(away_from_zero,),
        special=(
            Special(
                (np.array([-1.0, 0.0, 2.0]),), (np.array([-1.0, 0.0, 1.0]),), why="abs'(0) = 0"
            ),
        ),
    ),
    OpSpec("tanh", lambda x: x.tanh(), np.tanh, ((3, 4),)),
    OpSpec(
        "sigmoid",
        lambda x: x.sigmoid(),
        lambda x: 1 / (1 + np.exp(-x)),
        ((3, 4),),
        special=(
            Special(
                (np.array([-1000.0, 0.0, 1000.0]),),
                (np.array([0.0, 0.25, 0.0]),),
                why="stable at ±1000: no overflow, gradient σ(1−σ)",
            ),
        ),
    ),
    OpSpec(
        "relu",
        lambda x: x.relu(),
        lambda x: np.maximum(x, 0),
        ((3, 4),),
        domains=(away_from_zero,),
        special=(
            Special(
                (np.array([-1.0, 0.0, 2.0]),), (np.array([0.0, 0.0, 1.0]),), why="relu'(0) = 0"
            ),
        ),
    ),
    OpSpec(
        "clamp",
        lambda x, *bounds, **kw: tape.clamp(x, *bounds, **kw),
        lambda x, *bounds, **kw: _np_clamp(x, *bounds, **kw),
        ((3, 4),),
        grid=({"min": -0.5, "max": 0.5}, {"min": -0.5}, {"max": 0.5}, {}),
        # Tensor bounds: (x, min, max), each receiving its part of the gradient
        broadcast=(((3, 4), (3, 4), (3, 4)), ((3, 4), (), (4,)), ((3, 1), (4,), (3, 4))),
        special=(
            Special(
                (np.array([-1.0, -0.5, 0.0, 0.5, 1.0]),),
                (np.array([0.0, 1.0, 1.0, 1.0, 0.0]),),
                {"min": -0.5, "max": 0.5},
                why="the gradient passes at both bounds",
            ),
            Special(
                (
                    np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.3, 0.0]),
                    np.array([-0.5, -0.5, -0.5, -0.5, -0.5, 0.6, 0.2]),
                    np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.2]),
                ),
                (
                    np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
                    np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
                    np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]),
                ),
                why="Tensor bounds get g where active (x < min; x > max, or max < min); "
                "a tie at a bound goes to x; min == max with x outside: no one (PyTorch)",
            ),
            Special(
                (np.array([-1.0, 0.0, 2.0]), np.array([0.0, 0.0, 0.0])),
                (np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0])),
                why="a lone Tensor min gets g where x < min; the tie goes to x",
            ),
        ),
    ),
    OpSpec("sum", lambda x, **kw: x.sum(**kw), np.sum, ((2, 3, 4),), grid=_axes_grid(3)),
    OpSpec("mean", lambda x, **kw: x.mean(**kw), np.mean, ((2, 3, 4),), grid=_axes_grid(3)),
    OpSpec(
        "max",
        lambda x, **kw: x.max(**kw),
        np.max,
        ((2, 3, 4),),
        grid=_axes_grid(3),
        special=(
            Special(
                (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),),
                (np.array([[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]),),
                {"axis": 1},
                why="tied maxima share the gradient evenly",
            ),
            Special(
                (np.array([1.0, np.nan, 2.0]),),
                (np.array([0.0, 1.0, 0.0]),),
                why="a NaN is the maximum (as in NumPy) and gets the gradient",
            ),
        ),
    ),
    OpSpec(
        "min",
        lambda x, **kw: x.min(**kw),
        np.min,
        ((2, 3, 4),),
        grid=_axes_grid(3),
        special=(
            Special(
                (np.array([1.0, 1.0, 4.0, 1.0]),),
                (np.array([1 / 3, 1 / 3, 0.0, 1 / 3]),),
                why="tied minima share the gradient evenly",
            ),
        ),
    ),
    OpSpec(
        "reshape",
        lambda x, **kw: x.reshape(kw["shape"]),
        lambda x, shape: np.reshape(x, shape),
        ((3, 4),),
        grid=({"shape": (4, 3)}, {"shape": (12,)}, {"shape": (2, -1, 3)}),
    ),
    OpSpec(
        "transpose",
        lambda x, **kw: x.transpose(*kw.get("axes", ())),
        lambda x, axes=None: np.transpose(x, axes),
        ((2, 3, 4),),
        grid=({}, {"axes": (1, 0, 2)}, {"axes": (2, 0, 1)}, {"axes": (-1, 0, 1)}),
    ),
    OpSpec(
        "softmax",
        lambda x, **kw: x.softmax(**kw),
        _np_softmax,
        ((3, 4),),
        grid=({}, {"axis": 0}, {"axis": -1}),
        special=(
            Special(
                (np.array([1000.0, -1000.0, 1000.0]),),
                (np.zeros(3),),
                why="stable for ±1000 (a sum of softmax is constant 1)",
            ),
        ),
    ),
    OpSpec(
        "log_softmax",
        lambda x, **kw: x.log_softmax(**kw),
        _np_log_softmax,
        ((3, 4),),
        grid=({}, {"axis": 0}),
        special=(
            Special(
                (np.array([1000.0, -1000.0, 1000.0]),),
                (np.array([-0.5, 1.0, -0.5]),),
                why="stable for ±1000: the gradient of its sum is 1 − 3·softmax",
            ),
        ),
    ),
    OpSpec(
        "getitem",
        lambda x, **kw: x[kw["key"]],
        lambda x, key: x[key],
        ((4, 5),),
        grid=(
            {"key": 1},
            {"key": (slice(1, 3), slice(None, None, 2))},
            {"key": (Ellipsis, None, 2)},
            {"key": ([0, 2, 2, 3],)},
            {"key": ([0, 0, 1], [4, 4, 4])},
            {"key": (slice(None), [3, 1, 3])},
        ),
        special=(
            Special(
                (np.array([10.0, 20.0, 30.0]),),
                (np.array([3.0, 0.0, 1.0]),),
                {"key": [0, 2, 0, 0]},
                why="repeated indices accumulate",
            ),
        ),
    ),
    OpSpec(
        "concatenate",
        lambda x, y, **kw: tape.concatenate([x, y], **kw),
        lambda x, y, axis=0: np.concatenate([x, y], axis=axis),
        ((2, 3), (2, 3)),
        grid=({}, {"axis": 1}, {"axis": -1}),
    ),
    OpSpec(
        "stack",
        lambda x, y, **kw: tape.stack([x, y], **kw),
        lambda x, y, axis=0: np.stack([x, y], axis=axis),
        ((2, 3), (2, 3)),
        grid=({}, {"axis": 1}, {"axis": 2}, {"axis": -1}),
    ),
    OpSpec(
        "where",
        lambda x, y, **kw: tape.where(np.arange(x.size).reshape(x.shape) % 3 == 0, x, y),
        lambda x, y: np.where(np.arange(x.size).reshape(x.shape) % 3 == 0, x, y),
        ((3, 4), (3, 4)),
        broadcast=(((3, 4), (4,)), ((3, 4), ())),
    ),
    OpSpec(
        "maximum",
        lambda x, y: tape.maximum(x, y),
        np.maximum,
        ((3, 4), (3, 4)),
        broadcast=BINARY_BROADCAST,
        special=(
            Special(
                (np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])),
                (np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0])),
                why="a tie splits the gradient in half",
            ),
        ),
    ),
    OpSpec(
        "minimum",
        lambda x, y: tape.minimum(x, y),
        np.minimum,
        ((3, 4), (3, 4)),
        broadcast=BINARY_BROADCAST,
        special=(
            Special(
                (np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])),
                (np.array([1.0, 0.5, 0.0]), np.array([0.0, 0.5, 1.0])),
                why="a tie splits the gradient in half",
            ),
        ),
    ),
    _unary("sin", np.sin),
    _unary("cos", np.cos),
    _unary("tan", np.tan, no_pole),
    _unary("arcsin", np.arcsin, unit),
    _unary("arccos", np.arccos, unit),
    _unary("arctan", np.arctan),
    _unary("sinh", np.sinh),
    _unary("cosh", np.cosh),
    _unary("log1p", np.log1p, above_minus_one),
    _unary("expm1", np.expm1),
    _unary("log2", np.log2, positive),
    _unary("log10", np.log10, positive),
    _unary("exp2", np.exp2),
    _unary("square", np.square),
    _unary("reciprocal", np.reciprocal, away_from_zero),
    _unary(
        "sign",
        np.sign,
        away_from_zero,
        special=(
            Special(
                (np.array([-2.0, 0.0, 3.0]),), (np.zeros(3),), why="sign' = 0, at 0 too (PyTorch)"
            ),
        ),
    ),
    OpSpec(
        "prod",
        lambda x, **kw: x.prod(**kw),
        np.prod,
        ((2, 3, 4),),
        domains=(away_from_zero,),
        grid=_axes_grid(3),
        special=(
            Special(
                (np.array([2.0, 0.0, 3.0]),),
                (np.array([0.0, 6.0, 0.0]),),
                why="one zero: only it has a gradient, the product of the others",
            ),
            Special(
                (np.array([0.0, 2.0, 0.0]),), (np.zeros(3),), why="two zeros: no gradient at all"
            ),
            Special(
                (np.array([[1.0, 2.0, 3.0], [0.0, 4.0, 5.0]]),),
                (np.array([[6.0, 3.0, 2.0], [20.0, 0.0, 0.0]]),),
                {"axis": 1},
                why="zeros are handled per product",
            ),
        ),
    ),
    OpSpec(
        "var",
        lambda x, **kw: x.var(**kw),
        np.var,
        ((2, 3, 4),),
        grid=_reduction_grid(ddof=True),
        special=(
            Special(
                (np.array([1.0, 3.0]),),
                (np.array([-2.0, 2.0]),),
                {"ddof": 1},
                why="ddof=1: 2(x − x̄)/(N − 1)",
            ),
        ),
    ),
    OpSpec(
        "std",
        lambda x, **kw: x.std(**kw),
        np.std,
        ((2, 3, 4),),
        grid=_reduction_grid(ddof=True),
        special=(Special((np.array([2.0, 2.0, 2.0]),), (np.zeros(3),), why="std = 0: gradient 0"),),
    ),
    OpSpec(
        "logsumexp",
        lambda x, **kw: x.logsumexp(**kw),
        _np_logsumexp,
        ((2, 3, 4),),
        grid=_axes_grid(3),
        special=(
            Special(
                (np.array([1000.0, 1000.0, -1000.0]),),
                (np.array([0.5, 0.5, 0.0]),),
                why="stable for ±1000: the gradient is the softmax",
            ),
        ),
    ),
    OpSpec(
        "cumsum",
        lambda x, **kw: x.cumsum(**kw),
        np.cumsum,
        ((3, 4),),
        grid=({}, {"axis": 0}, {"axis": 1}, {"axis": -1}),
    ),
    OpSpec(
        "norm",
        lambda x, **kw: x.norm(**kw),
        np.linalg.norm,
        ((3, 4),),
        domains=(away_from_zero,),
        grid=(
            {},
            {"axis": 1},
            {"axis": 0, "keepdims": True},
            {"ord": 2, "axis": -1},
            {"ord": 1, "axis": 1},
            {"ord": np.inf, "axis": 1},
            {"ord": -np.inf, "axis": 0},
            {"ord": 3, "axis": 1},
            {"ord": 1.5, "axis": 0},
            {"ord": "fro"},
            {"ord": "fro", "axis": (1, 0), "keepdims": True},
        ),
        special=(
            Special((np.zeros(3),), (np.zeros(3),), why="‖x‖ = 0: gradient 0 (PyTorch)"),
            Special(
                (np.array([3.0, -3.0, 1.0]),),
                (np.array([0.5, -0.5, 0.0]),),
                {"ord": np.inf},
                why="ord=inf: tied largest |x| share the gradient evenly",
            ),
            Special(
                (np.array([0.0, -2.0, 1.0]),),
                (np.array([0.0, -1.0, 1.0]),),
                {"ord": 1},
                why="ord=1: sign(x), 0 at 0",
            ),
        ),
    ),
    OpSpec(
        "squeeze",
        lambda x, **kw: x.squeeze(**kw),
        np.squeeze,
        ((3, 1, 4, 1),),
        grid=({}, {"axis": 1}, {"axis": (1, 3)}, {"axis": -1}),
    ),
    OpSpec(
        "expand_dims",
        lambda x, **kw: x.expand_dims(**kw),
        np.expand_dims,
        ((3, 4),),
        grid=({"axis": 0}, {"axis": -1}, {"axis": (0, 2)}),
    ),
    OpSpec(
        "flip",
        lambda x, **kw: x.flip(**kw),
        np.flip,
        ((2, 3, 4),),
        grid=({}, {"axis": 0}, {"axis": -1}, {"axis": (0, 2)}),
    ),
    OpSpec(
        "broadcast_to",
        lambda x, **kw: x.broadcast_to(kw["shape"]),
        np.broadcast_to,
        ((3, 1),),
        grid=({"shape": (2, 3, 4)}, {"shape": (3, 5)}, {"shape": (3, 1)}),
    ),
    OpSpec(
        "split",
        lambda x, piece, **kw: tape.split(x, **kw)[piece],
        lambda x, piece, **kw: np.split(x, **kw)[piece],
        ((4, 6),),
        grid=(
            {"indices_or_sections": 2, "piece": 1},
            {"indices_or_sections": 3, "axis": 1, "piece": 2},
            {"indices_or_sections": [1, 4], "axis": -1, "piece": 1},
            {"indices_or_sections": [1, 3], "piece": 0},
        ),
    ),
    OpSpec(
        "einsum",
        lambda *xs, subscripts: tape.einsum(subscripts, *xs),
        lambda *xs, subscripts: np.einsum(subscripts, *xs),
        lambda subscripts: EINSUM[subscripts],
        grid=tuple({"subscripts": s} for s in EINSUM),
    ),
    OpSpec(
        "dot",
        lambda x, y: tape.dot(x, y),
        np.dot,
        ((2, 3), (3, 4)),
        # np.dot's cases by the operands' dimensions (not broadcasting)
        broadcast=(
            ((3,), (3,)),
            ((2, 3), (3,)),
            ((3,), (3, 4)),
            ((2, 2, 3), (4, 3, 5)),
            ((), (3,)),
            ((2, 3), ()),
        ),
    ),
    OpSpec(
        "outer",
        lambda x, y: tape.outer(x, y),
        np.outer,
        ((3,), (4,)),
        broadcast=(((2, 3), (4,)), ((3,), ())),  # np.outer flattens its operands
    ),
)


# ---- PyTorch's spelling of each op, for the comparison where torch is installed --------------
# Each takes torch tensors and the row's keywords; None means PyTorch has no such call.


def _dims(axis: Any, ndim: int) -> Any:
    if axis is None:
        return tuple(range(ndim))
    return axis if isinstance(axis, int) else tuple(axis)


def _t_reduce(name: str, whole: str | None = None) -> Callable[..., Any]:
    def call(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        torch = _torch()
        if whole is not None and axis is None and not keepdims:
            return getattr(torch, whole)(x)  # torch.max(x) lets a NaN win, as NumPy
        return getattr(torch, name)(x, dim=_dims(axis, x.ndim), keepdim=keepdims)

    return call


def _t_prod(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    torch = _torch()
    if axis is None and not keepdims:
        return torch.prod(x)
    if not isinstance(axis, int):
        return None  # torch.prod reduces over one dim or all
    return torch.prod(x, dim=axis, keepdim=keepdims)


def _t_var(name: str) -> Callable[..., Any]:
    def call(x: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
        fn = getattr(_torch(), name)
        return fn(x, dim=_dims(axis, x.ndim), correction=ddof, keepdim=keepdims)

    return call


def _t_cumsum(x: Any, axis: Any = None) -> Any:
    return _torch().cumsum(x.reshape(-1) if axis is None else x, 0 if axis is None else axis)


def _t_getitem(x: Any, key: Any) -> Any:
    return x[key]


def _t_clamp(x: Any, *bounds: Any, **kw: Any) -> Any:
    if not bounds and not kw:
        return None  # torch.clamp refuses to run without a bound
    return _torch().clamp(x, *bounds, **kw)


def _t_where(x: Any, y: Any) -> Any:
    torch = _torch()
    return torch.where(torch.arange(x.numel()).reshape(x.shape) % 3 == 0, x, y)


def _t_dot(x: Any, y: Any) -> Any:
    torch = _torch()
    if x.ndim == 0 or y.ndim == 0:
        return x * y
    return torch.tensordot(x, y, dims=([-1], [0 if y.ndim == 1 else -2]))


def _torch() -> Any:
    import torch

    return torch


TORCH: dict[str, Callable[..., Any]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "neg": lambda x: -x,
    "pow": lambda x, y: x**y,
    "matmul": lambda x, y: x @ y,
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(),
    "abs": lambda x: x.abs(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "clamp": _t_clamp,
    "sum": _t_reduce("sum"),
    "mean": _t_reduce("mean"),
    "max": _t_reduce("amax", "max"),
    "min": _t_reduce("amin", "min"),
    "softmax": lambda x, axis=-1: x.softmax(axis),
    "log_softmax": lambda x, axis=-1: x.log_softmax(axis),
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes=None: x.permute(axes or tuple(reversed(range(x.ndim)))),
    "getitem": _t_getitem,
    "concatenate": lambda x, y, axis=0: _torch().cat([x, y], axis),
    "stack": lambda x, y, axis=0: _torch().stack([x, y], axis),
    "where": _t_where,
    "maximum": lambda x, y: _torch().maximum(x, y),
    "minimum": lambda x, y: _torch().minimum(x, y),
    "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(),
    "tan": lambda x: x.tan(),
    "arcsin": lambda x: x.asin(),
    "arccos": lambda x: x.acos(),
    "arctan": lambda x: x.atan(),
    "sinh": lambda x: x.sinh(),
    "cosh": lambda x: x.cosh(),
    "log1p": lambda x: x.log1p(),
    "expm1": lambda x: x.expm1(),
    "log2": lambda x: x.log2(),
    "log10": lambda x: x.log10(),
    "exp2": lambda x: _torch().exp2(x),
    "square": lambda x: x.square(),
    "reciprocal": lambda x: x.reciprocal(),
    "sign": lambda x: x.sign(),
    "prod": _t_prod,
    "var": _t_var("var"),
    "std": _t_var("std"),
    "logsumexp": _t_reduce("logsumexp"),
    "cumsum": _t_cumsum,
    "norm": lambda x, ord=None, axis=None, keepdims=False: _torch().linalg.norm(
        x, ord=ord, dim=axis, keepdim=keepdims
    ),
    "squeeze": lambda x, axis=None: x.squeeze() if axis is None else x.squeeze(axis),
    "expand_dims": lambda x, axis: x.unsqueeze(axis) if isinstance(axis, int) else None,
    "flip": lambda x, axis=None: x.flip(_dims(axis, x.ndim)),
    "broadcast_to": lambda x, shape: x.broadcast_to(shape),
    "split": lambda x, piece, indices_or_sections, axis=0: _torch().tensor_split(
        x, indices_or_sections, axis
    )[piece],
    "einsum": lambda *xs, subscripts: _torch().einsum(subscripts, *xs),
    "dot": _t_dot,
    "outer": lambda x, y: _torch().outer(x.reshape(-1), y.reshape(-1)),
}

BY_NAME = {spec.name: spec for spec in SPECS}
