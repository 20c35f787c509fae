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
    shapes: tuple
    domains: tuple = ()  # one sampler per input; real numbers when empty
    grid: tuple = ({},)  # keyword arguments to try
    broadcast: tuple = ()  # pairs (or triples) of input shapes that must broadcast
    special: tuple = ()

    def sample(self, rng: np.random.Generator, shapes: tuple | None = None) -> list[np.ndarray]:
        shapes = self.shapes if shapes is None else shapes
        domains = self.domains or (real,) * len(shapes)
        return [domain(rng, shape) for domain, shape in zip(domains, shapes)]


def _axes_grid(ndim: int) -> tuple:
    axes: list[Any] = [None, *range(ndim), -1, tuple(range(ndim))]
    if ndim == 3:
        axes.append((0, 2))
    return tuple({"axis": a, "keepdims": k} for a in axes for k in (False, True))


BINARY_BROADCAST = (((), (3,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)))


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
        lambda x, **kw: x.clamp(**kw),
        lambda x, min=None, max=None: np.clip(x, min, max),
        ((3, 4),),
        grid=({"min": -0.5, "max": 0.5}, {"min": -0.5}, {"max": 0.5}, {}),
        special=(
            Special(
                (np.array([-1.0, -0.5, 0.0, 0.5, 1.0]),),
                (np.array([0.0, 1.0, 1.0, 1.0, 0.0]),),
                {"min": -0.5, "max": 0.5},
                why="the gradient passes at both bounds",
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
)

BY_NAME = {spec.name: spec for spec in SPECS}
