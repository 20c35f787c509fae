"""``tape.gradcheck`` says what is wrong, not only that something is.

Each test writes the seed layer ``Z = X @ W + b`` as a custom ``tape.Function``
called ``Linear`` with one deliberate bug in its backward, the way a learner
would, and reads the message: which input, which entry, both values, and the
mistake in words. The expected gradients are the seed formulas
(``dX = dZ Wᵀ``, ``dW = Xᵀ dZ``, ``db = Σ_rows dZ``), never the engine's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

import tape
from tape.function import Op, apply


def linear(backward: Callable) -> type[tape.Function]:
    """A ``Linear`` Function whose backward is ``backward(X, W, dZ) -> (dX, dW, db)``."""

    class Linear(tape.Function):
        @staticmethod
        def forward(ctx, X, W, b):
            ctx.save_for_backward(X, W)
            return X @ W + b

        @staticmethod
        def backward(ctx, dZ):
            X, W = ctx.saved
            return backward(X, W, dZ)

    return Linear


def inputs(n_in: int = 3, n_out: int = 2, batch: int = 4) -> list[tape.Tensor]:
    rng = np.random.default_rng(7)
    return [
        tape.tensor(rng.standard_normal((batch, n_in)), requires_grad=True, name="X"),
        tape.tensor(rng.standard_normal((n_in, n_out)), requires_grad=True, name="W"),
        tape.tensor(rng.standard_normal(n_out), requires_grad=True, name="b"),
    ]


def failure(Linear: type[tape.Function], xs: list[tape.Tensor]) -> tape.GradcheckError:
    with pytest.raises(tape.GradcheckError) as info:
        tape.gradcheck(Linear.apply, xs)
    return info.value


def words(error: Exception) -> str:
    """The message with its line wrapping undone, to search for phrases in it."""
    return " ".join(str(error).split())


def test_the_correct_layer_passes():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X.T @ dZ, dZ.sum(0)))
    assert tape.gradcheck(Linear.apply, inputs()) is True


def check_worst_entry(error: tape.GradcheckError, line: str, i: int) -> None:
    """The line names an index whose two values are the carried arrays' entries there."""
    found = re.search(r"at index \(([\d, ]+)\):\s+analytic\s+(\S+)\s+vs\s+numeric\s+(\S+)\s", line)
    assert found, line
    index = tuple(int(k) for k in found.group(1).split(",") if k.strip())
    np.testing.assert_allclose(float(found.group(2)), error.analytic[i][index], rtol=1e-9)
    np.testing.assert_allclose(float(found.group(3)), error.numeric[i][index], rtol=1e-9)


def test_transposed_square_dW_is_called_transposed():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, dZ.T @ X, dZ.sum(0)))  # bug: dZᵀ X
    xs = inputs(n_in=3, n_out=3)
    error = failure(Linear, xs)
    message = words(error)
    assert message.startswith("gradcheck: input 1 'W' (float64[3, 3]) at index")
    assert "transpose" in message and "X.T @ dZ" in message
    check_worst_entry(error, message, 1)
    np.testing.assert_allclose(error.analytic[1], error.numeric[1].T, rtol=1e-6)


def test_transposed_non_square_dW_names_the_function_not_numpy():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, dZ.T @ X, dZ.sum(0)))  # (2, 3) for W (3, 2)
    message = words(failure(Linear, inputs()))
    assert "Linear (recorded at" in message and "test_check.py" in message
    assert "shape (2, 3) for input 1 'W' (float64[3, 2])" in message
    assert "transposed" in message and "X.T @ dZ" in message


def test_a_backward_that_numpy_refuses_gives_our_message():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X @ dZ, dZ.sum(0)))  # (4,3) @ (4,2): no product
    message = words(failure(Linear, inputs()))
    assert message.startswith("gradcheck: Linear (recorded at")
    assert "dZ of shape (4, 2)" in message
    assert "(float64[4, 3], float64[3, 2], float64[2])" in message
    assert "must have its input's shape: (4, 3), (3, 2), (2,)" in message


def test_dW_scaled_by_one_over_N_says_so():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X.T @ dZ / 8, dZ.sum(0)))  # a 1/N too many
    error = failure(Linear, inputs())
    message = words(error)
    assert message.startswith("gradcheck: input 1 'W'")
    assert "× 1/8 (0.125)" in message and "mean where a sum belongs" in message
    check_worst_entry(error, message, 1)


def test_a_sign_error_says_so():
    Linear = linear(lambda X, W, dZ: (-(dZ @ W.T), X.T @ dZ, dZ.sum(0)))
    error = failure(Linear, inputs())
    message = words(error)
    assert message.startswith("gradcheck: input 0 'X' (float64[4, 3])")
    assert "opposite sign" in message
    np.testing.assert_allclose(error.analytic[0], -error.numeric[0], rtol=1e-6)


def test_db_without_the_batch_sum_fails_gradcheck_though_backward_sums_it():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X.T @ dZ, dZ))  # db = dZ: shape (4, 2)
    X, W, b = inputs()
    Linear.apply(X, W, b).sum().backward()  # the engine sums it back, as PyTorch does
    np.testing.assert_allclose(b.grad, [4.0, 4.0])
    b.zero_grad()
    error = failure(Linear, [X, W, b])
    message = words(error)
    assert "Linear (recorded at" in message
    assert "shape (4, 2) for input 2 'b' (float64[2])" in message
    assert "missing the sum over the batch" in message and "`dZ.sum(0)`" in message
    assert "at index" not in message  # the values agree: only the shape is wrong
    assert [r["function"] for r in error.rows] == ["Linear"]


def test_db_averaged_over_the_batch_is_a_factor_of_one_over_the_batch():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X.T @ dZ, dZ.mean(0)))
    message = words(failure(Linear, inputs(batch=5)))
    assert message.startswith("gradcheck: input 2 'b' (float64[2])")
    assert "× 1/5 (0.2)" in message


def test_every_wrong_input_is_named_with_its_own_worst_entry():
    Linear = linear(lambda X, W, dZ: (-(dZ @ W.T), 2 * (X.T @ dZ), dZ.mean(0)))
    xs = inputs()
    error = failure(Linear, xs)
    head, *problems = str(error).split("\n- ")
    assert head == "gradcheck: 3 problems among the 3 input(s) checked:"
    lines = [" ".join(p.split()) for p in problems]
    assert [line.split(" at index")[0] for line in lines] == [
        "input 0 'X' (float64[4, 3])",
        "input 1 'W' (float64[3, 2])",
        "input 2 'b' (float64[2])",
    ]
    assert all(len(line) <= 92 for line in str(error).splitlines())
    assert "opposite sign" in lines[0] and "× 2" in lines[1] and "× 1/4" in lines[2]
    for i, line in enumerate(lines):
        check_worst_entry(error, line, i)
    assert [a.shape for a in error.analytic] == [x.shape for x in xs]
    assert [n.shape for n in error.numeric] == [x.shape for x in xs]
    X, W = xs[0].data, xs[1].data
    v_dX = error.numeric[0]  # the check's projection v, read back from dX = v Wᵀ
    v = np.linalg.lstsq(W, v_dX.T, rcond=None)[0].T  # W has full column rank
    np.testing.assert_allclose(error.numeric[1], X.T @ v, rtol=1e-6)
    np.testing.assert_allclose(error.numeric[2], v.sum(0), rtol=1e-6)


def test_inputs_not_checked_are_none_in_the_arrays():
    Linear = linear(lambda X, W, dZ: (None, -(X.T @ dZ), dZ.sum(0)))
    X, W, b = inputs()
    error = failure(Linear, [X.detach(), W, b])
    assert error.analytic[0] is None and error.numeric[0] is None
    assert error.analytic[1].shape == (3, 2)


def test_a_wrong_layer_inside_a_bigger_function_is_still_diagnosed():
    Linear = linear(lambda X, W, dZ: (dZ @ W.T, X.T @ dZ, dZ))
    with pytest.raises(tape.GradcheckError) as info:
        tape.gradcheck(lambda X, W, b: Linear.apply(X, W, b).tanh().mean(), inputs())
    message = words(info.value)
    assert "`dZ.sum(0)`" in message and "input 2 'b'" in message


def test_the_error_shows_as_a_table_in_jupyter():
    Linear = linear(lambda X, W, dZ: (-(dZ @ W.T), 2 * (X.T @ dZ), dZ))
    html = failure(Linear, inputs())._repr_html_()
    assert html.count("<tr>") == 1 + 3  # a header and one row per problem
    for expected in (
        "input 0 &#x27;X&#x27;",
        "input 1 &#x27;W&#x27;",
        "opposite sign",
        "dZ.sum(0)",
    ):
        assert expected in html
    assert "<script" not in html


def test_gradgradcheck_keeps_the_arrays():
    # cos read from the raw data: first order right, the recorded VJP misses −g·sin(x)
    sin = Op("toy_sin", lambda x: np.sin(x)).defvjp(  # a ufunc has no signature on 3.10
        lambda g, out, x: g * np.cos(x.data if isinstance(x, tape.Tensor) else x)
    )
    x = tape.tensor([0.3, 1.1, -0.8], requires_grad=True)
    f = lambda t: apply(sin, (t,))
    assert tape.gradcheck(f, [x])
    with pytest.raises(tape.GradcheckError, match="second order") as info:
        tape.gradgradcheck(f, [x])
    assert len(info.value.analytic) == len(info.value.numeric) == 2  # x and the cotangent u
    assert info.value.rows and "input 0" in info.value.rows[0]["input"]
