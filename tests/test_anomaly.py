"""``tape.detect_anomaly()``: the first NaN or Inf, in forward or backward, names its op.

API.md: inside the block a NaN or Inf produced by an op in forward, or by a
VJP in ``backward`` or ``tape.grad``, raises ``FloatingPointError`` naming the
op and the line of user code that recorded it.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import tape


def next_line() -> int:
    """The line number just after the caller's line."""
    return sys._getframe(1).f_lineno + 1


def here(line: int) -> str:
    return re.escape(f"{__file__}:{line}")


@pytest.fixture(autouse=True)
def quiet_numpy():
    """NumPy's own RuntimeWarnings for 0/0 and log(−1) are not what is under test."""
    with np.errstate(all="ignore"):
        yield


# ---- forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("log", lambda x: x.log()),
        ("sqrt", lambda x: x.sqrt()),
        ("div", lambda x: x / 0.0),
        ("mul", lambda x: x * np.inf),
        ("pow", lambda x: x**0.5),
    ],
)
def test_forward_nan_or_inf_names_the_op(name, make):
    x = tape.tensor([1.0, -1.0], requires_grad=True)
    with tape.detect_anomaly(), pytest.raises(FloatingPointError, match=rf"\b{name}\(.*forward"):
        make(x)


def test_forward_check_covers_tensors_without_grad_too():
    with tape.detect_anomaly(), pytest.raises(FloatingPointError, match=r"log\("):
        tape.log(tape.tensor([-1.0]))


def test_forward_anomaly_names_the_users_line():
    x = tape.tensor([1.0, -1.0], requires_grad=True)
    with tape.detect_anomaly(), pytest.raises(FloatingPointError) as caught:
        line = next_line()
        x.log()
    assert re.search(here(line), str(caught.value)), str(caught.value)


def test_no_check_outside_the_block():
    x = tape.tensor([-1.0, 0.0], requires_grad=True)
    y = x.log()  # NaN and -inf, silently, as in NumPy
    assert np.isnan(y.data[0]) and np.isneginf(y.data[1])
    y.sum().backward()
    assert np.isneginf(x.grad[0]) or np.isnan(x.grad[0]) or x.grad[0] == -1.0


# ---- backward --------------------------------------------------------------------------------


def test_backward_inf_from_sqrt_at_zero_names_sqrt_and_its_line():
    x = tape.tensor([0.0, 4.0], requires_grad=True)
    with tape.detect_anomaly():
        line = next_line()
        y = x.sqrt()  # sqrt(0) = 0 is fine in forward; its derivative 1/(2√0) is not
        loss = (y * 3).sum()
        with pytest.raises(FloatingPointError) as caught:
            loss.backward()
    message = str(caught.value)
    assert "'sqrt'" in message and "input 0" in message
    assert re.search(here(line), message), message


def test_backward_anomaly_names_the_first_bad_vjp_not_a_later_one():
    x = tape.tensor([0.0, 1.0], requires_grad=True)
    with tape.detect_anomaly():
        a = x * 2.0
        line = next_line()
        b = a**0.5  # the inf is born here, in pow's VJP; mul's VJP would only pass it on
        c = b.exp().sum()
        with pytest.raises(FloatingPointError, match=rf"'pow'.*{here(line)}"):
            c.backward()


def test_tape_grad_anomaly_names_the_op_and_line():
    x = tape.tensor([0.0, 4.0], requires_grad=True)
    with tape.detect_anomaly():
        line = next_line()
        loss = x.sqrt().sum()
        with pytest.raises(FloatingPointError, match=rf"'sqrt'.*{here(line)}"):
            tape.grad(loss, [x])


def test_create_graph_anomaly_names_the_op_whose_vjp_failed():
    x = tape.tensor([0.0, 4.0], requires_grad=True)
    with tape.detect_anomaly():
        line = next_line()
        loss = x.sqrt().sum()
        with pytest.raises(FloatingPointError, match=rf"'sqrt'.*{here(line)}"):
            tape.grad(loss, [x], create_graph=True)


def test_a_failed_backward_commits_nothing():
    x = tape.tensor([0.0, 4.0], requires_grad=True)
    w = tape.tensor([1.0, 1.0], requires_grad=True)
    w.grad = np.array([5.0, 5.0])
    with tape.detect_anomaly():
        loss = (x.sqrt() * w).sum()
        with pytest.raises(FloatingPointError):
            loss.backward()
    assert x.grad is None
    np.testing.assert_array_equal(w.grad, [5.0, 5.0])
    # the records were not released: outside the block the same pass runs (to inf)
    loss.backward()
    assert np.isinf(x.grad[0])


def test_custom_function_backward_anomaly_names_the_function():
    class Reciprocal(tape.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return np.ones_like(x)  # a constant forward with a bad backward

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved
            return (grad / x,)

    x = tape.tensor([0.0, 1.0], requires_grad=True)
    with tape.detect_anomaly():
        line = next_line()
        loss = Reciprocal.apply(x).sum()
        with pytest.raises(FloatingPointError, match=rf"'Reciprocal'.*{here(line)}"):
            loss.backward()


# ---- the context manager ---------------------------------------------------------------------


def test_detect_anomaly_restores_the_previous_state_even_after_an_error():
    x = tape.tensor([-1.0], requires_grad=True)
    with pytest.raises(FloatingPointError), tape.detect_anomaly():
        x.log()
    x.log()  # off again: no error
    with tape.detect_anomaly():
        with tape.detect_anomaly():
            pass
        with pytest.raises(FloatingPointError):  # the inner exit left the outer one on
            x.log()
