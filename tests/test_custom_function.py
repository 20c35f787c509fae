"""Custom ``tape.Function``s: recorded like built-ins, checked by gradcheck, differentiable once.

A Function's backward works on NumPy arrays, so the engine cannot
differentiate it again. API.md: with ``create_graph=True`` the gradients it
produced carry a record that raises ``RuntimeError`` naming the Function when
a second pass reaches it — never a silently wrong second derivative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tape
from tape import func


class Cube(tape.Function):
    """``x³``, with the hand-written ``3x² · grad``."""

    @staticmethod
    def forward(ctx: tape.Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: tape.Context, grad: np.ndarray) -> tuple[Any, ...]:
        (x,) = ctx.saved
        return (3 * x**2 * grad,)


class Lin(tape.Function):
    """``x @ w + b`` with ``dx = g wᵀ``, ``dw = xᵀ g``, ``db = Σ_rows g`` (API.md's example)."""

    @staticmethod
    def forward(ctx: tape.Context, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx: tape.Context, grad: np.ndarray) -> tuple[Any, ...]:
        x, w = ctx.saved
        return grad @ w.T, x.T @ grad, grad.sum(axis=0)


class Double(tape.Function):
    """``2x``: linear, so its second derivative is 0 — but the engine cannot know that."""

    @staticmethod
    def forward(ctx: tape.Context, x: np.ndarray) -> np.ndarray:
        return 2 * x

    @staticmethod
    def backward(ctx: tape.Context, grad: np.ndarray) -> tuple[Any, ...]:
        return (2 * grad,)


class ScaleBy(tape.Function):
    """``x · s`` where only ``x`` gets a gradient (``None`` for the scale)."""

    @staticmethod
    def forward(ctx: tape.Context, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(s)
        return x * s

    @staticmethod
    def backward(ctx: tape.Context, grad: np.ndarray) -> tuple[Any, ...]:
        (s,) = ctx.saved
        return grad * s, None


ONCE = r"Cube.*second backward pass.*differentiable once"


@pytest.fixture
def x() -> tape.Tensor:
    return tape.tensor([0.5, -1.0, 2.0], requires_grad=True)


# ---- first order: like a built-in ------------------------------------------------------------


def test_a_function_is_one_record_named_after_it_with_the_right_gradient(x):
    y = Cube.apply(x)
    assert y.node.op == "Cube" and y.node.inputs[0] is x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data**2)


def test_gradcheck_passes_for_hand_written_layers():
    rng = np.random.default_rng(3)
    xs = [tape.tensor(rng.standard_normal(s), requires_grad=True) for s in ((4, 3), (3, 2), (2,))]
    assert tape.gradcheck(Lin.apply, xs)
    assert tape.gradcheck(Cube.apply, [xs[1]])


def test_first_order_under_create_graph_is_right(x):
    (g,) = tape.grad(Cube.apply(x).sum(), [x], create_graph=True)
    assert isinstance(g, tape.Tensor) and g.requires_grad
    np.testing.assert_allclose(g.data, 3 * x.data**2)


def test_transforms_of_first_order_work(x):
    np.testing.assert_allclose(func.grad(lambda t: Cube.apply(t).sum())(x.data), 3 * x.data**2)
    _, vjp_fn = func.vjp(Cube.apply, x.data)
    np.testing.assert_allclose(vjp_fn(np.ones(3))[0], 3 * x.data**2)
    jac = func.jacobian(Cube.apply)(x.data)
    np.testing.assert_allclose(jac, np.diag(3 * x.data**2))


def test_a_none_gradient_under_create_graph(x):
    s = tape.tensor([2.0, 3.0, 4.0], requires_grad=True)
    gx, gs = tape.grad(ScaleBy.apply(x, s).sum(), [x, s], create_graph=True, allow_unused=True)
    np.testing.assert_allclose(gx.data, s.data)
    assert gs is None  # the Function said None: no gradient, and no record


# ---- a second pass raises, naming the Function -----------------------------------------------


def test_second_pass_with_tape_grad_raises_naming_the_function(x):
    (g,) = tape.grad(Cube.apply(x).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match=ONCE):
        tape.grad(g.sum(), [x])


def test_second_pass_raises_even_for_a_linear_function(x):
    # Double's true second derivative is 0, but the engine cannot tell that from
    # an array backward, so it refuses rather than guess
    (g,) = tape.grad(Double.apply(x * x).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match=r"Double.*differentiable once"):
        tape.grad(g.sum(), [x])


def test_a_gradient_penalty_through_a_function_raises_in_backward_and_commits_nothing():
    rng = np.random.default_rng(0)
    xin = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = tape.tensor(np.zeros(2), requires_grad=True)
    w.grad = np.ones((3, 2))
    out = Lin.apply(xin, w, b).tanh().sum()
    (gx,) = tape.grad(out, [xin], create_graph=True)
    loss = out + (gx**2).sum()
    with pytest.raises(RuntimeError, match=r"Lin.*second backward pass"):
        loss.backward()
    np.testing.assert_array_equal(w.grad, np.ones((3, 2)))  # untouched
    assert xin.grad is None and b.grad is None


@pytest.mark.parametrize(
    "second_order",
    [
        lambda f, x: func.hessian(f)(x),
        lambda f, x: func.grad(lambda t: func.grad(f)(t).sum())(x),
        lambda f, x: func.hvp(f, x, np.ones_like(x)),
        lambda f, x: func.jvp(lambda t: Cube.apply(t), (x,), (np.ones_like(x),)),
        lambda f, x: tape.gradgradcheck(Cube.apply, [tape.tensor(x, requires_grad=True)]),
    ],
    ids=["hessian", "grad-of-grad", "hvp", "jvp", "gradgradcheck"],
)
def test_every_second_order_road_raises_naming_the_function(second_order, x):
    # jvp is in the list because it differentiates a recorded VJP (the double-VJP trick)
    with pytest.raises(RuntimeError, match=ONCE):
        second_order(lambda t: Cube.apply(t).sum(), x.data)


def test_no_false_alarm_when_the_second_pass_avoids_the_function(x):
    y = tape.tensor([1.0, 2.0], requires_grad=True)
    f = Cube.apply(y).sum() + (x**3).sum()  # the first pass runs Cube's backward (for y)
    (gx,) = tape.grad(f, [x], create_graph=True)
    (hx,) = tape.grad(gx.sum(), [x])  # but ∂/∂x never went through it
    np.testing.assert_allclose(hx, 6 * x.data)


def test_the_error_says_what_to_do_instead(x):
    (g,) = tape.grad(Cube.apply(x).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError) as caught:
        tape.grad(g.sum(), [x])
    assert "tape ops" in str(caught.value)
    # the same function written with tape ops has a second derivative
    (g,) = tape.grad((x**3).sum(), [x], create_graph=True)
    np.testing.assert_allclose(tape.grad(g.sum(), [x])[0], 6 * x.data)
