"""Every error a user can cause: the right exception, a helpful message, and no damage.

API.md: "Bad input never corrupts state: after any exception — a user
``Function`` failing half-way through backward included — the tape, existing
tensors and every ``.grad`` are as they were." Each test here runs the failing
call inside :func:`unchanged`, which compares a snapshot from before and after.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import tape


class Snapshot:
    """The live records of this thread's tape, and each tensor's data, grad, flags and node."""

    def __init__(self, tensors: list[tape.Tensor]) -> None:
        current = tape.get_tape()
        self.length = len(current)
        self.nodes = list(current)
        self.tensors = [
            (
                t,
                t.data,
                t.data.copy(),
                t.grad if t.is_leaf else None,  # a non-leaf's .grad is not kept
                None if not t.is_leaf or t.grad is None else t.grad.copy(),
                t.requires_grad,
                t.node,
            )
            for t in tensors
        ]

    def assert_same(self, other: Snapshot) -> None:
        assert other.length == self.length, "the tape's length changed"
        assert len(other.nodes) == len(self.nodes)
        assert all(a is b for a, b in zip(other.nodes, self.nodes)), "the live records changed"
        for (t, data, values, grad, grad_values, requires, node), after in zip(
            self.tensors, other.tensors
        ):
            _, data2, values2, grad2, grad_values2, requires2, node2 = after
            assert data2 is data and np.array_equal(values2, values, equal_nan=True)
            assert requires2 == requires and node2 is node
            assert grad2 is grad, f".grad of {t!r} was replaced"
            if grad_values is not None:
                assert np.array_equal(grad_values2, grad_values), f".grad of {t!r} changed"


@contextmanager
def unchanged(*tensors: tape.Tensor) -> Iterator[None]:
    """Assert that the block leaves the tape and these tensors exactly as they were."""
    gc.collect()  # no leftover garbage may die in the middle and drop records
    before = Snapshot(list(tensors))
    yield
    before.assert_same(Snapshot(list(tensors)))


def raises_unchanged(
    exc: type[BaseException] | tuple, call: Callable[[], object], *tensors: tape.Tensor
) -> str:
    """Run ``call``, expect ``exc``, check nothing changed; return the message."""
    with unchanged(*tensors), pytest.raises(exc) as info:
        call()
    return str(info.value)


def shape_text(shape: tuple) -> str:
    """A pattern matching a shape written as ``(4, 3)``, ``[4, 3]`` or ``4x3``."""
    return r"[\(\[]?" + r"\s*[,x×]\s*".join(map(str, shape)) + r",?[\)\]]?"


@pytest.fixture
def graph():
    """Leaves with gradients from an earlier pass, and a live graph on the tape."""
    rng = np.random.default_rng(0)
    x = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
    w = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="w")
    (x @ w).sum().backward()  # both leaves now have a .grad
    hidden = (x @ w).tanh()  # live records
    loss = hidden.sum()
    return x, w, hidden, loss


# ---- shapes and axes: ValueError -----------------------------------------------------------------


def test_add_shape_mismatch(graph):
    x, w, hidden, loss = graph
    b = tape.tensor(np.ones(2), requires_grad=True)
    message = raises_unchanged(ValueError, lambda: x + b, x, w, hidden, loss, b)
    assert "add" in message
    assert re.search(shape_text((4, 3)), message) and "float64" in message
    assert re.search(shape_text((2,)), message)
    assert any(fix in message for fix in ("reshape", "transpose", "[:, None]"))


def test_add_mismatch_with_an_ndarray_on_the_left(graph):
    x, w, hidden, loss = graph
    message = raises_unchanged(ValueError, lambda: np.ones((5, 5)) + x, x, w, hidden, loss)
    assert "add" in message and re.search(shape_text((4, 3)), message)


def test_matmul_shape_mismatch(graph):
    x, w, hidden, loss = graph
    message = raises_unchanged(ValueError, lambda: x @ x, x, w, hidden, loss)
    assert "matmul" in message
    assert re.search(shape_text((4, 3)), message) and "float64" in message
    assert "transpose" in message or ".T" in message


def test_matmul_mismatch_names_both_dtypes(graph):
    x, w, hidden, loss = graph
    v = tape.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    message = raises_unchanged(ValueError, lambda: x @ v, x, w, hidden, loss, v)
    assert "float64" in message and "float32" in message


@pytest.mark.parametrize(
    ("label", "call"),
    [
        ("sum", lambda t: t.sum(axis=2)),
        ("mean", lambda t: t.mean(axis=-3)),
        ("max", lambda t: t.max(axis=5)),
        ("softmax", lambda t: t.softmax(axis=2)),
        ("log_softmax", lambda t: t.log_softmax(axis=-4)),
        ("reshape", lambda t: t.reshape(5, 5)),
    ],
    ids=["sum", "mean", "max", "softmax", "log_softmax", "reshape"],
)
def test_bad_axis_or_shape(graph, label, call):
    x, w, hidden, loss = graph
    message = raises_unchanged(ValueError, lambda: call(x), x, w, hidden, loss)
    assert label in message


@pytest.mark.parametrize(
    ("label", "call"),
    [
        ("transpose", lambda t: t.transpose(0, 0)),
        ("transpose", lambda t: t.transpose(0, 1, 2)),
        ("swapaxes", lambda t: t.swapaxes(0, 5)),
    ],
    ids=["repeated", "too-many", "out-of-range"],
)
def test_bad_axes_name_the_op_the_shape_and_the_rule(graph, label, call):
    x, w, hidden, loss = graph
    message = raises_unchanged(ValueError, lambda: call(x), x, w, hidden, loss)
    assert message.startswith(f"{label}(float64[4, 3]") and "range(2)" in message


def test_a_dtype_error_gives_no_broadcasting_hint(graph):
    # the hint once compared the shapes with np.shape(()), which is (0,), not ()
    x, w, hidden, loss = graph
    message = raises_unchanged(TypeError, lambda: x + "a", x, w, hidden, loss)
    assert message.startswith("add('x' float64[4, 3], str)") and "broadcast" not in message


def test_a_forward_error_names_named_operands():
    # an nn parameter's qualified name is what the user can find in their model
    net = tape.nn.Sequential(tape.nn.Linear(4, 2))
    x = tape.tensor(np.ones((3, 5)), name="batch")
    W = dict(net.named_parameters())["0.weight"]
    message = raises_unchanged(ValueError, lambda: x @ W, x, W)
    shape = ", ".join(map(str, W.shape))
    assert message.startswith(f"matmul('batch' float64[3, 5], '0.weight' {W.dtype}[{shape}])")


@pytest.mark.parametrize("transform", ["grad", "hessian", "value_and_grad"])
def test_a_transform_error_names_the_transform_called(transform):
    f = getattr(tape.func, transform)(lambda z: z * z)  # not a scalar
    with pytest.raises(ValueError, match=rf"^func\.{transform}: f must return a scalar"):
        f(np.ones(3))


def test_backward_with_a_wrongly_shaped_grad(graph):
    x, w, hidden, loss = graph
    message = raises_unchanged(
        ValueError, lambda: hidden.backward(np.ones((2, 4))), x, w, hidden, loss
    )
    assert re.search(shape_text((2, 4)), message) and re.search(shape_text((4, 2)), message)


def test_grad_setter_with_a_wrong_shape(graph):
    x, w, hidden, loss = graph

    def assign() -> None:
        x.grad = np.ones((3, 4))

    raises_unchanged(ValueError, assign, x, w, hidden, loss)


# ---- dtypes: TypeError ---------------------------------------------------------------------------


def test_requires_grad_on_int_data(graph):
    x, w, hidden, loss = graph
    message = raises_unchanged(
        TypeError, lambda: tape.tensor([1, 2], requires_grad=True), x, w, hidden, loss
    )
    assert "int64" in message and "requires_grad" in message
    raises_unchanged(TypeError, lambda: tape.arange(3, requires_grad=True), x, w, hidden, loss)


def test_requires_grad_set_later_on_int_data_fails_at_backward(graph):
    """Setting the flag by hand bypasses tape.tensor's check; backward must not truncate."""
    x, w, hidden, loss = graph
    n = tape.tensor([1, 2, 3])
    n.requires_grad = True
    y = (n * 1.5).sum()  # d/dn = 1.5: an int64 .grad would silently hold 1
    message = raises_unchanged(TypeError, y.backward, x, w, hidden, loss, n, y)
    assert "int64" in message and "floating" in message
    assert n.grad is None


def test_unsupported_numpy_function(graph):
    x, w, hidden, loss = graph
    raises_unchanged(TypeError, lambda: np.cumprod(x), x, w, hidden, loss)


# ---- graph state: RuntimeError -------------------------------------------------------------------


def test_backward_of_a_non_scalar_without_grad(graph):
    x, w, hidden, loss = graph
    message = raises_unchanged(RuntimeError, hidden.backward, x, w, hidden, loss)
    assert re.search(shape_text((4, 2)), message)
    assert "grad" in message


def test_backward_of_a_tensor_that_does_not_require_grad(graph):
    x, w, hidden, loss = graph
    c = tape.tensor([1.0]) * 2.0
    raises_unchanged(RuntimeError, c.sum().backward, x, w, hidden, loss)


def test_second_backward_without_retain_graph(graph):
    x, w, hidden, loss = graph
    loss.backward()
    # the records of this graph are released now; the tape has no live ones left
    message = raises_unchanged(RuntimeError, loss.backward, x, w, hidden, loss)
    assert "sum" in message and __file__ in message


def test_second_pass_reaching_a_released_record_after_fresh_ones(graph):
    x, w, hidden, loss = graph
    loss.backward()
    fresh = (hidden * 2.0 + x.sum()).sum()  # new records first, then the released tanh
    message = raises_unchanged(RuntimeError, fresh.backward, x, w, hidden, loss, fresh)
    assert "tanh" in message
    # the fresh records were not released by the failed pass
    x.zero_grad()
    with pytest.raises(RuntimeError, match="tanh"):
        tape.grad(fresh, [x])


def test_backward_after_clear(graph):
    x, w, hidden, loss = graph
    tape.get_tape().clear()
    message = raises_unchanged(RuntimeError, loss.backward, x, w, hidden, loss)
    assert "clear" in message


def test_tape_grad_without_allow_unused(graph):
    x, w, hidden, loss = graph
    other = tape.tensor([1.0], requires_grad=True)
    message = raises_unchanged(
        ValueError, lambda: tape.grad(loss, [x, other]), x, w, hidden, loss, other
    )
    assert "allow_unused" in message
    # the failed call released nothing: the same graph still differentiates
    (dw,) = tape.grad(loss, [w])
    np.testing.assert_allclose(dw, x.data.T @ (1 - np.tanh(x.data @ w.data) ** 2), rtol=1e-12)


def test_tape_grad_with_an_input_that_does_not_require_grad(graph):
    x, w, hidden, loss = graph
    c = tape.tensor([1.0])
    raises_unchanged(RuntimeError, lambda: tape.grad(loss, [c]), x, w, hidden, loss, c)


def test_in_place_update_while_recording(graph):
    x, w, hidden, loss = graph

    def update() -> None:
        nonlocal w
        w += 1.0

    raises_unchanged(RuntimeError, update, x, w, hidden, loss)


def test_writing_a_tensor_that_requires_grad_into_another(graph):
    # the write would copy the values and lose their gradient, as c += x would
    x, w, hidden, loss = graph
    c, doubled = tape.zeros((4, 3)), x[0:2] * 2

    def write() -> None:
        c[0:2] = doubled

    message = raises_unchanged(RuntimeError, write, x, w, hidden, loss, c, doubled)
    assert "item assignment" in message and "requires grad" in message
    assert "tape.where" in message and ".detach()" in message
    assert not c.data.any()
    c[0:2] = doubled.detach()  # no gradient wanted: allowed
    with tape.no_grad():
        c[2:] = x[2:]  # nothing records: allowed
    assert np.array_equal(c.data, np.concatenate([x.data[:2] * 2, x.data[2:]]))


def test_a_complex_result_that_would_require_grad_is_refused_at_the_op(graph):
    # tape differentiates real numbers only: refused where it is made, not at backward
    x, w, hidden, loss = graph
    message = raises_unchanged(TypeError, lambda: x * 1j, x, w, hidden, loss)
    assert message.startswith("mul: its result would be complex128[4, 3]")
    assert "x.detach()" in message
    assert (x.detach() * 1j).data.dtype == np.complex128  # nothing to differentiate: fine
    with tape.no_grad():
        assert (x * 1j).data.dtype == np.complex128


def test_a_list_operand_holding_a_tensor_that_requires_grad(graph):
    # a list is read as a constant array, which would silently drop the gradient
    x, w, hidden, loss = graph
    y = tape.tensor(3.0, requires_grad=True, name="y")
    message = raises_unchanged(TypeError, lambda: x * [[y, 1.0, 1.0]], x, w, hidden, loss, y)
    assert message.startswith("mul: a list holds 'y' float64[]")
    assert "tape.stack" in message
    for op, call in [("exp", lambda: tape.exp([y, y])), ("clamp", lambda: x.clamp(min=[y, 0, 0]))]:
        message = raises_unchanged(TypeError, call, x, w, hidden, loss, y)
        assert message.startswith(f"{op}: a list holds 'y' float64[]")
    c = tape.zeros(3)

    def write() -> None:
        c[0:2] = [y, y]

    message = raises_unchanged(RuntimeError, write, x, w, hidden, loss, y, c)
    assert message.startswith("item assignment: cannot write 'y' float64[], which requires grad")
    assert np.array_equal((x * [[y.detach(), 1.0, 1.0]]).data[:, 0], 3 * x.data[:, 0])
    with tape.no_grad():
        assert np.array_equal((x * [y, 1.0, 1.0]).data[:, 0], 3 * x.data[:, 0])


def test_in_place_update_with_a_bad_shape_under_no_grad(graph):
    x, w, hidden, loss = graph

    def update() -> None:
        nonlocal w
        with tape.no_grad():
            w += np.ones(5)

    raises_unchanged(ValueError, update, x, w, hidden, loss)
    assert tape.is_grad_enabled()


def test_in_place_update_that_numpy_cannot_cast():
    # NumPy raises its own subclass of TypeError here, which takes other arguments
    counts = tape.tensor([1, 2])

    def update() -> None:
        nonlocal counts
        counts += 0.5

    message = raises_unchanged(TypeError, update, counts)
    assert message.startswith("+=: cannot update int64[2] with float[]")


# ---- user Functions that fail --------------------------------------------------------------------


class Boom(Exception):
    pass


class FailingBackward(tape.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2.0

    @staticmethod
    def backward(ctx, grad):
        raise Boom("backward failed")


class FailingForward(tape.Function):
    @staticmethod
    def forward(ctx, x):
        raise Boom("forward failed")

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover
        return (grad,)


class WrongShape(tape.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, grad):
        return (np.ones(grad.size + 2),)


class WrongCount(tape.Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * y

    @staticmethod
    def backward(ctx, grad):
        return (grad,)  # one gradient for two inputs


class WrongDtype(tape.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, grad):
        return (np.array(["a"] * grad.size).reshape(grad.shape),)


def _half_way(fn_class: type, x: tape.Tensor, w: tape.Tensor) -> tape.Tensor:
    # the walk runs sum, add, mul and the tanh branch before it reaches fn_class
    h = fn_class.apply(x @ w)
    return (h * 3.0 + (x @ w).tanh()).sum()


def test_function_backward_raising_half_way(graph):
    x, w, hidden, loss = graph
    out = _half_way(FailingBackward, x, w)
    raises_unchanged(Boom, out.backward, x, w, hidden, loss, out)
    raises_unchanged(Boom, lambda: tape.grad(out, [x, w]), x, w, hidden, loss, out)
    # nothing was released: the untouched graph still works
    (dw,) = tape.grad(loss, [w])
    np.testing.assert_allclose(dw, x.data.T @ (1 - np.tanh(x.data @ w.data) ** 2), rtol=1e-12)


def test_function_forward_raising(graph):
    x, w, hidden, loss = graph
    raises_unchanged(Boom, lambda: FailingForward.apply(x), x, w, hidden, loss)


def test_function_backward_returning_a_wrong_shape(graph):
    x, w, hidden, loss = graph
    out = _half_way(WrongShape, x, w)
    message = raises_unchanged(ValueError, out.backward, x, w, hidden, loss, out)
    assert "WrongShape" in message
    assert re.search(shape_text((4, 2)), message)


def test_function_backward_returning_too_few_gradients(graph):
    x, w, hidden, loss = graph
    out = (WrongCount.apply(x @ w, hidden) * 3.0).sum()
    message = raises_unchanged((TypeError, ValueError), out.backward, x, w, hidden, loss, out)
    assert "WrongCount" in message
    assert "2" in message and "1" in message


def test_function_backward_returning_a_non_numeric_gradient(graph):
    x, w, hidden, loss = graph
    out = _half_way(WrongDtype, x, w)
    message = raises_unchanged(TypeError, out.backward, x, w, hidden, loss, out)
    assert "WrongDtype" in message


@pytest.mark.parametrize(
    "seed", [np.array(1 + 2j), np.ones(1, dtype=complex), "one", np.array(["a"]), [None]]
)
def test_a_seed_that_is_not_real_numbers_is_refused_and_changes_nothing(seed):
    x = tape.tensor([2.0], requires_grad=True)
    y = x * x
    with pytest.raises(TypeError, match=r"backward: grad has dtype .* real numbers only"):
        y.backward(seed)
    assert x.grad is None
    y.backward(np.ones(1))  # the graph was not released by the refused call
    np.testing.assert_array_equal(x.grad, [4.0])


def _backward(x: tape.Tensor) -> Callable[[object], object]:
    y = x * x
    return y.backward


def _grad_outputs(x: tape.Tensor) -> Callable[[object], object]:
    y = x * x
    return lambda v: tape.grad(y, [x], grad_outputs=[v])


def _hook(x: tape.Tensor) -> Callable[[object], object]:
    y = x * 2.0
    loss = y.sum()

    def run(v: object) -> None:
        y.register_hook(lambda g: v)
        loss.backward()

    return run


def _setter(x: tape.Tensor) -> Callable[[object], object]:
    def run(v: object) -> None:
        x.grad = v

    return run


# Every place a user hands tape a gradient (or a direction) of their own. Each entry takes the
# float64[3] leaf x, records what it needs, and returns the call that hands the value in.
HANDED_IN = {
    "backward's grad": _backward,
    "tape.grad's grad_outputs": _grad_outputs,
    "func.vjp's cotangent": lambda x: tape.func.vjp(lambda t: t * t, x.data)[1],
    "func.jvp's tangent": lambda x: lambda v: tape.func.jvp(lambda t: t * t, (x.data,), (v,)),
    "func.hvp's v": lambda x: lambda v: tape.func.hvp(lambda t: (t**3).sum(), x.data, v),
    "a hook's new gradient": _hook,
    "the .grad setter": _setter,
}


@pytest.mark.parametrize(
    "value", [1j * np.ones(3), np.array(["a", "b", "c"])], ids=["complex", "str"]
)
@pytest.mark.parametrize("route", HANDED_IN)
def test_a_handed_in_gradient_that_is_not_real_numbers_is_refused(route, value):
    # casting it would drop a complex value's imaginary part with only a ComplexWarning
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    hand_in = HANDED_IN[route](x)
    message = raises_unchanged(TypeError, lambda: hand_in(value), x)
    assert f"has dtype {value.dtype}" in message and "real numbers only" in message
    assert "shape (3,)" in message  # the fix: what to pass instead


WRITES_INTO = {
    "out=": lambda w: np.add(tape.tensor([5.0, 5.0]), 1.0, out=w),
    "np.copyto": lambda w: np.copyto(w, np.zeros(2)),
    "np.put": lambda w: np.put(w, [0], [9.0]),
}


@pytest.mark.parametrize("route", WRITES_INTO)
def test_a_numpy_write_into_a_tensor_that_requires_grad_names_the_write(route):
    # not "np.add has no gradient rule": the trouble is the in-place write into w
    w = tape.tensor([1.0, 2.0], requires_grad=True, name="w")
    message = raises_unchanged(TypeError, lambda: WRITES_INTO[route](w), w)
    assert "write into 'w' float64[2] in place" in message and "tape.no_grad()" in message


@pytest.mark.parametrize(
    ("call", "kind", "match"),
    [
        (lambda: tape.tensor([[1.0], [2.0, 3.0]]), ValueError, r"^tensor: .*rectangular"),
        (lambda: tape.tensor([1.0], dtype="nope"), TypeError, r"^tensor: .*'nope'"),
        (lambda: tape.nn.Linear(3.5, 2), TypeError, r"^Linear: .*\(3\.5, 2\); pass ints"),
        (lambda: tape.nn.Linear(True, 2), TypeError, r"^Linear: .*pass ints"),
    ],
)
def test_making_a_tensor_or_a_layer_from_bad_arguments_names_the_maker(call, kind, match):
    with pytest.raises(kind, match=match):
        call()


@pytest.mark.parametrize("key", [np.arange(300), (np.arange(300), np.arange(300) + 5)])
def test_a_forward_error_shows_an_index_array_by_its_shape(key):
    # logits[arange(N), labels] with a bad label: the message must not print N numbers
    x = tape.tensor(np.ones((3, 4)), requires_grad=True)
    message = raises_unchanged(IndexError, lambda: x[key], x)
    assert "int64[300]" in message and len(message) < 200
