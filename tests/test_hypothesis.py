"""Random expression DAGs: every leaf gradient against central finite differences.

A program is a list of steps over a growing list of values (the leaves
first); each step reads earlier values by index, so a value read twice is a
shared subexpression (fan-out) and the graph is a DAG, not a tree. Leaf shapes
come from one broadcasting family, so any two values combine. The output adds
up every value no step consumed, so no part of the program is dead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tape

FAMILIES = {
    # everything broadcasts to (3, 4)
    "matrix": [(), (1,), (4,), (3, 1), (1, 4), (3, 4)],
    # everything broadcasts to (2, 3, 4)
    "batch": [(), (4,), (3, 4), (1, 3, 1), (2, 1, 4), (2, 3, 4)],
}

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}
UNARY = {
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "exp_bounded": lambda a: a.tanh().exp(),  # exp of values in (−1, 1)
    "neg": lambda a: -a,
    "scale": lambda a: a * 0.75,
}
REDUCE = {
    "sum": lambda a, axis, keepdims: a.sum(axis=axis, keepdims=keepdims),
    "mean": lambda a, axis, keepdims: a.mean(axis=axis, keepdims=keepdims),
}
BOUND = 20.0  # larger intermediates get squashed, so differences stay accurate

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def apply_step(values: list, step: tuple) -> Any:
    kind, name, args = step
    if kind == "binary":
        return BINARY[name](values[args[0]], values[args[1]])
    if kind == "unary":
        return UNARY[name](values[args[0]])
    index, axis, keepdims = args
    return REDUCE[name](values[index], axis, keepdims)


def run(program: list, leaves: list) -> tape.Tensor:
    values = list(leaves)
    consumed: set[int] = set()
    for step in program:
        values.append(apply_step(values, step))
        consumed.update(step[2][:2] if step[0] == "binary" else step[2][:1])
    sinks = [v for i, v in enumerate(values) if i not in consumed]
    out = sinks[0]
    for v in sinks[1:]:
        out = out + v
    return out


@st.composite
def reduction(draw: Any, ndim: int, allow_0d: bool) -> tuple:
    """An axis and keepdims whose result still broadcasts against the family."""
    if ndim == 0:
        return None, draw(st.booleans())
    choice = draw(st.sampled_from(["all", "leading", "subset"]))
    if choice == "all":
        return None, draw(st.booleans()) if allow_0d else True
    if choice == "leading" and (allow_0d or ndim > 1):
        # dropping a leading axis leaves a suffix of the shape
        return draw(st.sampled_from([0, -ndim])), False
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return (axes[0] if len(axes) == 1 else tuple(axes)), True


@st.composite
def programs(draw: Any, allow_0d: bool = True) -> tuple[list[np.ndarray], list]:
    """Leaves and a program; without ``allow_0d`` no value is 0-d."""
    shapes = [s for s in FAMILIES[draw(st.sampled_from(sorted(FAMILIES)))] if allow_0d or s]
    # two or three leaves of different shapes, so binary steps broadcast often
    leaf_shapes = draw(st.lists(st.sampled_from(shapes), min_size=2, max_size=3, unique=True))
    leaves = [
        draw(
            arrays(
                np.float64,
                shape,
                elements=st.floats(-2, 2, allow_nan=False, allow_subnormal=False),
            )
        )
        for shape in leaf_shapes
    ]
    program: list = []
    # values computed alongside, without grad, to keep every intermediate bounded
    values = [tape.tensor(a) for a in leaves]
    for _ in range(draw(st.integers(1, 8))):
        last = len(values) - 1
        kind = draw(st.sampled_from(["binary", "binary", "unary", "reduce"]))
        # lean on recent values, but reach back too: that is where fan-out comes from
        pick = st.one_of(st.just(last), st.integers(0, last))
        if kind == "binary":
            step = ("binary", draw(st.sampled_from(sorted(BINARY))), (draw(pick), draw(pick)))
        elif kind == "unary":
            step = ("unary", draw(st.sampled_from(sorted(UNARY))), (draw(pick),))
        else:
            index = draw(pick)
            axis, keepdims = draw(reduction(values[index].ndim, allow_0d))
            step = ("reduce", draw(st.sampled_from(sorted(REDUCE))), (index, axis, keepdims))
        program.append(step)
        values.append(apply_step(values, step))
        if np.abs(values[-1].data).max(initial=0) > BOUND:
            program.append(("unary", "tanh", (len(values) - 1,)))
            values.append(apply_step(values, program[-1]))
    return leaves, program


def check_against_finite_differences(case: tuple) -> None:
    leaves, program = case
    inputs = [tape.tensor(a, requires_grad=True) for a in leaves]
    assert tape.gradcheck(lambda *xs: run(program, list(xs)), inputs, eps=1e-6, atol=1e-6)
    assert all(x.grad is None for x in inputs)  # gradcheck goes through tape.grad


@SETTINGS
@given(programs(allow_0d=False))
def test_every_leaf_gradient_matches_finite_differences(case):
    check_against_finite_differences(case)


def test_every_leaf_gradient_matches_finite_differences_with_0d_values():
    # run inside the test body so an expected failure leaves no patch file behind
    given(programs(allow_0d=True))(SETTINGS(check_against_finite_differences))()


@SETTINGS
@given(programs())
def test_backward_agrees_with_tape_grad_and_doubles_over_two_passes(case):
    leaves, program = case
    inputs = [tape.tensor(a, requires_grad=True) for a in leaves]
    out = run(program, inputs)
    seed = np.random.default_rng(1).standard_normal(out.shape)
    expected = tape.grad(out, inputs, grad_outputs=seed, retain_graph=True, allow_unused=True)
    out.backward(seed, retain_graph=True)
    for x, g in zip(inputs, expected):
        if g is None:
            assert x.grad is None
            continue
        assert x.grad.shape == x.shape and x.grad.dtype == np.float64
        np.testing.assert_array_equal(x.grad, g)
    out.backward(seed)
    for x, g in zip(inputs, expected):
        if g is not None:
            np.testing.assert_array_equal(x.grad, 2 * g)


@pytest.mark.parametrize("allow_0d", [False, True])
def test_the_strategy_makes_fan_out_and_broadcasting(allow_0d):
    """Guard the generator itself: the properties above must see DAGs, not only trees."""
    seen = {"fan_out": 0, "broadcast": 0, "reduce": 0, "0d": 0}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(programs(allow_0d=allow_0d))
    def survey(case):
        leaves, program = case
        reads = [
            i for step in program for i in (step[2][:2] if step[0] == "binary" else step[2][:1])
        ]
        if len(reads) != len(set(reads)):
            seen["fan_out"] += 1
        if any(step[0] == "reduce" for step in program):
            seen["reduce"] += 1
        values = [tape.tensor(a) for a in leaves]
        broadcast = False
        for step in program:
            if step[0] == "binary":
                broadcast |= values[step[2][0]].shape != values[step[2][1]].shape
            values.append(apply_step(values, step))
        seen["broadcast"] += broadcast
        if any(v.ndim == 0 for v in values):
            seen["0d"] += 1

    survey()
    assert seen["fan_out"] >= 10 and seen["broadcast"] >= 10 and seen["reduce"] >= 10, seen
    assert (seen["0d"] >= 10) if allow_0d else (seen["0d"] == 0), seen
