"""Tensor hooks, retain_grad, and the warning for ``.grad`` of a non-leaf.

API.md: ``fn(grad)`` is called once per backward pass (and per ``tape.grad``)
with the total gradient reaching the tensor, after all its contributions
were summed; it may return a replacement; hooks run in registration order.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tape


def recorder(log: list, tag: str = ""):
    def hook(g):
        log.append((tag, np.array(g.data if isinstance(g, tape.Tensor) else g)))

    return hook


# ---- when hooks run and what they see --------------------------------------------------------


def test_hook_on_a_fan_out_tensor_sees_the_summed_gradient_once_per_backward():
    x = tape.tensor([1.0, -2.0, 0.5], requires_grad=True)
    y = x * 2
    log: list = []
    y.register_hook(recorder(log))
    z = (y * y + y * 3 + y.exp()).sum()  # three uses of y, four contributions
    z.backward()
    assert len(log) == 1
    yd = y.data
    np.testing.assert_allclose(log[0][1], 2 * yd + 3 + np.exp(yd))  # the sum, not a part


def test_hook_runs_once_per_tape_grad_call_and_once_per_backward():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    log: list = []
    y.register_hook(recorder(log))
    loss = (y + y).sum()
    tape.grad(loss, [x], retain_graph=True)
    tape.grad(loss, [x], retain_graph=True)
    loss.backward()
    assert len(log) == 3
    for _, g in log:
        np.testing.assert_allclose(g, [2.0, 2.0])


def test_hook_on_a_leaf_sees_its_total_gradient():
    x = tape.tensor([3.0], requires_grad=True)
    log: list = []
    x.register_hook(recorder(log))
    (x * x + x).sum().backward()
    np.testing.assert_allclose(log[0][1], [7.0])  # 2x + 1, both uses summed
    assert len(log) == 1


def test_hooks_run_in_registration_order_each_seeing_the_previous_result():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    log: list = []
    y.register_hook(lambda g: (log.append(("double", np.array(g))), g * 2)[1])
    y.register_hook(recorder(log, "watch"))  # returns None: keeps the gradient
    y.register_hook(lambda g: (log.append(("plus one", np.array(g))), g + 1)[1])
    y.sum().backward()
    assert [tag for tag, _ in log] == ["double", "watch", "plus one"]
    np.testing.assert_allclose(log[0][1], [1.0, 1.0])
    np.testing.assert_allclose(log[1][1], [2.0, 2.0])
    np.testing.assert_allclose(log[2][1], [2.0, 2.0])
    np.testing.assert_allclose(x.grad, [9.0, 9.0])  # (1·2 + 1)·3


def test_a_replacement_on_an_intermediate_flows_on_to_the_leaves():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    w = tape.tensor([0.5, -1.0], requires_grad=True)
    y = x * w
    y.register_hook(lambda g: np.zeros_like(g))  # cut the gradient through y
    (y + x).sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0])  # only the direct path is left
    np.testing.assert_allclose(w.grad, [0.0, 0.0])


def test_a_replacement_on_a_leaf_is_what_lands_in_grad_and_in_tape_grad():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [20.0, 40.0])
    (g,) = tape.grad((x * x).sum(), [x])
    np.testing.assert_allclose(g, [20.0, 40.0])


def test_remove_unregisters_only_that_hook():
    x = tape.tensor([1.0], requires_grad=True)
    y = x * 1.0
    log: list = []
    first = y.register_hook(recorder(log, "first"))
    y.register_hook(recorder(log, "second"))
    first.remove()
    first.remove()  # twice is harmless
    y.sum().backward()
    assert [tag for tag, _ in log] == ["second"]


def test_removing_a_doubling_hook_restores_the_plain_gradient():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    handle = x.register_hook(lambda g: g * 2)
    (g,) = tape.grad((x * x).sum(), [x])
    np.testing.assert_allclose(g, [4.0, 8.0])
    handle.remove()
    (g,) = tape.grad((x * x).sum(), [x])
    np.testing.assert_allclose(g, [2.0, 4.0])


def test_a_hook_replacement_is_recorded_under_create_graph_and_runs_in_the_second_pass():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x**3
    handle = y.register_hook(lambda g: g * y)  # replaces g by g·y (on the tape)
    (g,) = tape.grad(y.sum(), [x], create_graph=True)  # x³ · 3x² = 3x⁵
    np.testing.assert_allclose(g.data, 3 * x.data**5)
    # the second pass reaches y as well, so the hook runs again (as in PyTorch):
    # ∂Σg/∂y = 3x², replaced by 3x²·y = 3x⁵, times ∂y/∂x = 3x², plus y·6x from g = y·3x²
    (h,) = tape.grad(g.sum(), [x], retain_graph=True)
    np.testing.assert_allclose(h, 9 * x.data**7 + 6 * x.data**4)
    handle.remove()  # without the hook in the second pass: d(3x⁵)/dx = 15x⁴
    (h,) = tape.grad(g.sum(), [x])
    np.testing.assert_allclose(h, 15 * x.data**4)


def test_create_graph_returns_tensors_even_when_a_hook_returns_an_array():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: np.asarray(g) * 2)
    (g,) = tape.grad((x**3).sum(), [x], create_graph=True)
    assert isinstance(g, tape.Tensor)


def test_a_hook_must_keep_the_shape():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: np.ones(3))
    with pytest.raises(ValueError, match=r"hook.*shape"):
        (x * x).sum().backward()
    assert x.grad is None  # the failed pass committed nothing


def test_a_hook_on_a_0d_tensor_may_return_the_scalar_numpy_makes():
    x = tape.tensor(2.0, requires_grad=True)
    y = x * 3.0
    y.register_hook(lambda g: g * 2)  # g is a 0-d array; g * 2 is a NumPy scalar
    y.backward()
    assert x.grad.shape == () and x.grad == 6.0  # dy/dx = 3, doubled by the hook


def test_a_hook_needs_a_tensor_that_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tape.tensor([1.0]).register_hook(lambda g: g)


def test_a_hook_must_be_callable_and_is_refused_at_registration():
    # a non-callable once failed only at backward, with Python's bare "'int' object is not
    # callable"
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"register_hook: .* got int; pass e\.g\. lambda g"):
        x.register_hook(5)
    (x * 2).sum().backward()  # nothing was registered
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


# ---- retain_grad and the non-leaf warning ----------------------------------------------------


def test_retain_grad_keeps_and_accumulates_like_a_leaf():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    z = (y * y).sum()
    z.backward(retain_graph=True)
    np.testing.assert_allclose(y.grad, 2 * y.data)
    assert y.grad.dtype == y.dtype and y.grad.shape == y.shape
    z.backward()
    np.testing.assert_allclose(y.grad, 4 * y.data)  # += like a leaf
    np.testing.assert_allclose(x.grad, 2 * 3 * 2 * y.data)
    y.zero_grad()
    assert y.grad is None


def test_retain_grad_does_not_change_tape_grad():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    tape.grad((y * y).sum(), [x])
    assert y.grad is None  # tape.grad touches no .grad, retained or not


def test_reading_grad_of_a_non_leaf_warns_and_gives_none():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.sum().backward()
    with pytest.warns(UserWarning, match=r"non-leaf.*retain_grad\(\)") as caught:
        assert y.grad is None
    assert caught[0].filename == __file__  # the warning points at the user's line
    # a PyTorch-style `w = w - lr * w.grad` makes w a non-leaf: the warning names the fix
    assert "w -= lr * w.grad" in str(caught[0].message) and "no_grad" in str(caught[0].message)


def test_no_warning_for_leaves_or_retained_non_leaves():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    y.sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is not None and y.grad is not None
        assert tape.tensor([1.0]).grad is None


def test_tape_grad_does_not_run_hooks_beyond_its_inputs():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    log: list = []
    x.register_hook(recorder(log))
    tape.grad((y**2).sum(), [y])  # no gradient of x is asked for, none reaches it
    assert log == []  # as in PyTorch
