"""NumPy called on Tensors: it records like the Tensor method or refuses, never drops the graph."""

from __future__ import annotations

import numpy as np
import pytest

import tape


def op_name(node: tape.Node) -> str:
    return node.op


A = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B = np.array([[2.0, 1.0, -0.5], [0.5, 3.0, 1.25]])


def test_asarray_gives_the_data_and_records_nothing(fresh_tape):
    x = tape.tensor(A, requires_grad=True)
    arr = np.asarray(x)
    assert type(arr) is np.ndarray
    assert np.shares_memory(arr, x.data)
    np.testing.assert_array_equal(arr, A)
    assert np.asarray(x, dtype=np.float32).dtype == np.float32
    assert np.array(x).dtype == np.float64
    assert len(fresh_tape) == 0


# (numpy call, the same through tape, op name, gradient of sum(out) w.r.t. x by hand)
UNARY = [
    ("np.exp", np.exp, lambda x: x.exp(), "exp", lambda a: np.exp(a)),
    ("np.tanh", np.tanh, lambda x: x.tanh(), "tanh", lambda a: 1 - np.tanh(a) ** 2),
    ("np.negative", np.negative, lambda x: -x, "neg", lambda a: -np.ones_like(a)),
    ("np.abs", np.abs, lambda x: abs(x), "abs", lambda a: np.sign(a)),
    ("np.sum", np.sum, lambda x: x.sum(), "sum", lambda a: np.ones_like(a)),
    ("np.mean", np.mean, lambda x: x.mean(), "mean", lambda a: np.full_like(a, 1 / a.size)),
    (
        "np.sum axis",
        lambda t: np.sum(t, axis=0),
        lambda x: x.sum(axis=0),
        "sum",
        lambda a: np.ones_like(a),
    ),
    (
        "np.square via power",
        lambda t: np.power(t, 2),
        lambda x: x**2,
        "pow",
        lambda a: 2 * a,
    ),
    (
        "np.maximum with scalar",
        lambda t: np.maximum(t, 0.3),
        lambda x: tape.maximum(x, 0.3),
        "maximum",
        lambda a: (a > 0.3).astype(float),
    ),
    (
        "np.reshape",
        lambda t: np.reshape(t, (3, 2)),
        lambda x: x.reshape(3, 2),
        "reshape",
        lambda a: np.ones_like(a),
    ),
    (
        "np.transpose",
        np.transpose,
        lambda x: x.transpose(),
        "transpose",
        lambda a: np.ones_like(a),
    ),
]


@pytest.mark.parametrize(
    ("label", "numpy_call", "tape_call", "name", "dsum"), UNARY, ids=[u[0] for u in UNARY]
)
def test_numpy_unary_calls_record_like_the_method(
    fresh_tape, label, numpy_call, tape_call, name, dsum
):
    x = tape.tensor(A, requires_grad=True)
    out = numpy_call(x)
    assert isinstance(out, tape.Tensor)
    assert len(fresh_tape) == 1
    assert op_name(out.node) == name
    assert out.node.inputs[0] is x
    same = tape_call(tape.tensor(A, requires_grad=True))
    np.testing.assert_array_equal(out.data, same.data)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, dsum(A), rtol=1e-14)


def test_np_matmul_and_the_at_operator_with_ndarray_on_either_side():
    x = tape.tensor(A, requires_grad=True)  # 2×3
    w = tape.tensor(B.T, requires_grad=True)  # 3×2
    out = np.matmul(x, w)
    assert isinstance(out, tape.Tensor) and op_name(out.node) == "matmul"
    out.sum().backward()
    ones = np.ones((2, 2))
    np.testing.assert_allclose(x.grad, ones @ B, rtol=1e-15)
    np.testing.assert_allclose(w.grad, A.T @ ones, rtol=1e-15)

    left = np.arange(4.0).reshape(2, 2)
    y = tape.tensor(A, requires_grad=True)
    out = left @ y  # ndarray @ Tensor
    assert isinstance(out, tape.Tensor) and op_name(out.node) == "matmul"
    assert out.node.inputs[1] is y
    np.testing.assert_array_equal(out.data, left @ A)
    out.sum().backward()
    np.testing.assert_allclose(y.grad, left.T @ np.ones((2, 3)), rtol=1e-15)


@pytest.mark.parametrize(
    ("expr", "name", "dx"),
    [
        (lambda arr, x: arr + x, "add", lambda arr, a: np.ones_like(a)),
        (lambda arr, x: arr - x, "sub", lambda arr, a: -np.ones_like(a)),
        (lambda arr, x: arr * x, "mul", lambda arr, a: arr),
        (lambda arr, x: arr / x, "div", lambda arr, a: -arr / a**2),
        (lambda arr, x: np.add(arr, x), "add", lambda arr, a: np.ones_like(a)),
        (lambda arr, x: np.multiply(x, arr), "mul", lambda arr, a: arr),
    ],
    ids=["ndarray+T", "ndarray-T", "ndarray*T", "ndarray/T", "np.add", "np.multiply"],
)
def test_ndarray_on_the_left_gives_a_recorded_tensor(fresh_tape, expr, name, dx):
    arr = np.array([[2.0, -1.0, 0.5]])
    x = tape.tensor(A, requires_grad=True)
    out = expr(arr, x)
    assert isinstance(out, tape.Tensor), type(out)  # not an object array of Tensors
    assert out.shape == (2, 3)
    assert len(fresh_tape) == 1 and op_name(out.node) == name
    out.sum().backward()
    np.testing.assert_allclose(x.grad, dx(arr, A) * np.ones_like(A), rtol=1e-14)


def test_np_maximum_of_two_tensors_splits_ties():
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = tape.tensor([3.0, 2.0, 1.0], requires_grad=True)
    out = np.maximum(x, y)
    assert op_name(out.node) == "maximum"
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(y.grad, [1.0, 0.5, 0.0])


def test_np_where_records_where():
    x = tape.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = tape.tensor([10.0, 20.0, 30.0], requires_grad=True)
    cond = np.array([True, False, True])
    out = np.where(cond, x, y)
    assert isinstance(out, tape.Tensor) and op_name(out.node) == "where"
    np.testing.assert_array_equal(out.data, [1.0, 20.0, 3.0])
    (out * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(y.grad, [0.0, 2.0, 0.0])


def test_np_where_with_a_tensor_condition():
    x = tape.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = np.where(x > 0, x, 0.0)
    assert op_name(out.node) == "where"
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])


def test_np_where_with_only_a_condition_is_np_nonzero():
    x = tape.tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True)
    found = np.where(x > 0)
    assert all(type(i) is np.ndarray for i in found)
    np.testing.assert_array_equal(np.stack(found), np.stack(np.nonzero(x.data > 0)))


# NumPy's own spelling of a call, which tape's function of the same op must accept:
# (the call, its result on plain arrays is the reference, the op it must record)
NUMPY_SPELLINGS = [
    (lambda a: np.clip(a, a_min=0.0, a_max=1.0), "clamp"),
    (lambda a: np.clip(a, 0.0, None), "clamp"),
    (lambda a: np.reshape(a, shape=(3, 2)), "reshape"),
    (lambda a: np.reshape(a, (3, 2), order="C"), "reshape"),
    (lambda a: np.sum(a, 0, None), "sum"),  # the third positional is dtype
    (lambda a: np.max(a, 0, None), "max"),  # ... and here out
    (lambda a: np.std(a, 0, None, None, 1), "std"),  # ddof by position
    (lambda a: np.mean(a, axis=1, keepdims=True), "mean"),
    (lambda a: np.einsum("ij->j", a, optimize=True), "einsum"),  # a speed hint: ignored
    (lambda a: np.transpose(a, (1, 0)), "transpose"),
    (lambda a: np.concatenate([a, a], 1), "concatenate"),
]


@pytest.mark.parametrize(("call", "op"), NUMPY_SPELLINGS)
def test_numpy_spellings_of_a_call_bind_as_numpy_binds_them(call, op):
    data = np.arange(6.0).reshape(2, 3) - 2
    x = tape.tensor(data, requires_grad=True)
    out = call(x)
    assert op_name(out.node) == op
    np.testing.assert_allclose(out.data, call(data))


def test_numpy_calls_numpy_refuses_are_refused():
    x = tape.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"np\.clip: a_min and min are one parameter"):
        np.clip(x, 1.0, 2.0, min=0.0)
    with pytest.raises(ValueError, match=r"np\.where: give both x and y, or neither"):
        np.where(x > 1, x)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda a: np.mean(a, 1, np.float32), "dtype"),
        (lambda a: np.reshape(a, (3, 2), order="F"), "order"),
        (lambda a: np.sum(a, where=np.ones((2, 3), bool)), "where"),
    ],
)
def test_a_numpy_parameter_tape_cannot_honour_is_refused_by_name(call, parameter):
    x = tape.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(TypeError, match=rf"no '{parameter}' \(got .*\); leave it out"):
        call(x)


def test_np_concatenate_and_stack_record_once():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = tape.tensor([3.0], requires_grad=True)
    c = np.concatenate([x, y])
    assert isinstance(c, tape.Tensor) and op_name(c.node) == "concatenate"
    np.testing.assert_array_equal(c.data, [1.0, 2.0, 3.0])
    (c * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])
    np.testing.assert_array_equal(y.grad, [3.0])
    s = np.stack([x, x])
    assert op_name(s.node) == "stack" and s.shape == (2, 2)
    x.zero_grad()
    s.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_np_concatenate_mixing_arrays_and_tensors():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    c = np.concatenate([np.zeros(2), x], axis=0)
    assert isinstance(c, tape.Tensor) and c.requires_grad
    (c * np.arange(4.0)).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])


# ---- unsupported functions -----------------------------------------------------------------------


UNSUPPORTED = [
    ("np.cumprod", lambda t: np.cumprod(t)),
    ("np.arcsinh", lambda t: np.arcsinh(t)),
    ("np.sort", lambda t: np.sort(t)),
    ("np.median", lambda t: np.median(t)),
    ("np.add.reduce", lambda t: np.add.reduce(t)),
    ("np.exp with out=", lambda t: np.exp(t, out=np.empty(3))),
]


@pytest.mark.parametrize(("label", "call"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_numpy_on_a_requires_grad_tensor_is_a_clear_type_error(fresh_tape, label, call):
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError) as info:
        call(x)
    message = str(info.value)
    name = label.split()[0].removeprefix("np.").split(".")[0]
    assert name in message  # names the function
    assert "grad" in message  # says why
    assert len(fresh_tape) == 0
    np.testing.assert_array_equal(x.data, [0.5, -1.0, 2.0])


@pytest.mark.parametrize(("label", "call"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_numpy_on_a_plain_tensor_just_computes(label, call):
    data = np.array([0.5, -1.0, 2.0])
    result = call(tape.tensor(data))
    np.testing.assert_allclose(np.asarray(result), call(data), rtol=1e-15)


def test_unsupported_numpy_under_no_grad_just_computes():
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    with tape.no_grad():
        np.testing.assert_array_equal(np.asarray(np.cumprod(x)), [0.5, -0.5, -1.0])


def test_detach_is_the_way_around():
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(np.asarray(np.cumprod(x.detach())), [0.5, -0.5, -1.0])


def test_functions_without_a_gradient_are_allowed_on_requires_grad_tensors(fresh_tape):
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    assert int(np.asarray(np.argmax(x))) == 2
    np.testing.assert_array_equal(np.asarray(np.floor(x)), [0.0, -1.0, 2.0])
    for rounding in (np.round, np.around, np.rint, np.trunc, np.fix, np.ceil):  # all alike
        np.testing.assert_array_equal(np.asarray(rounding(x)), rounding(x.data))
    assert np.asarray(np.isfinite(x)).all()
    assert np.shape(x) == (3,)
    assert len(fresh_tape) == 0
