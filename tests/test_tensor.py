"""Construction and attributes of Tensors, as API.md "Tensor" describes them."""

from __future__ import annotations

import numpy as np
import pytest

import tape

# ---- dtype rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "dtype"),
    [
        (1.5, np.float64),
        (3, np.int64),
        ([1, 2, 3], np.int64),
        ([1.0, 2], np.float64),
        ([[1.0], [2.0]], np.float64),
        (True, np.bool_),
        (np.arange(3, dtype=np.float32), np.float32),
        (np.arange(3, dtype=np.int32), np.int32),
    ],
)
def test_dtype_follows_numpy(data, dtype):
    t = tape.tensor(data)
    assert t.dtype == dtype
    assert isinstance(t.data, np.ndarray)
    np.testing.assert_array_equal(t.data, np.asarray(data))
    assert not t.requires_grad and t.grad is None and t.node is None


def test_dtype_argument_converts():
    t = tape.tensor([1, 2], dtype=np.float32, requires_grad=True)
    assert t.dtype == np.float32 and t.requires_grad
    assert tape.tensor([1.7, 2.2], dtype=np.int64).tolist() == [1, 2]


@pytest.mark.parametrize(
    "data",
    [3, [1, 2], np.arange(3), np.array([True, False]), np.array([1 + 2j])],
    ids=["int", "int-list", "int-array", "bool", "complex"],
)
def test_requires_grad_on_non_floating_data_is_a_type_error(data):
    with pytest.raises(TypeError) as info:
        tape.tensor(data, requires_grad=True)
    message = str(info.value)
    assert "requires_grad" in message
    assert str(np.asarray(data).dtype) in message  # says what it got
    assert "float" in message  # and what to do instead


def test_tensor_and_Tensor_are_the_same_constructor():
    a = tape.Tensor([1.0, 2.0], requires_grad=True, name="a")
    b = tape.tensor([1.0, 2.0], requires_grad=True, name="b")
    assert type(a) is type(b) is tape.Tensor
    assert a.requires_grad and b.requires_grad
    assert a.name == "a" and b.name == "b"


def test_tensor_copies_its_data():
    source = np.array([1.0, 2.0])
    t = tape.tensor(source, requires_grad=True)
    source[0] = 100.0
    assert t.data[0] == 1.0


# ---- factories -----------------------------------------------------------------------------------


def test_zeros_ones_full():
    z = tape.zeros((2, 3))
    assert z.shape == (2, 3) and z.dtype == np.float64 and not z.data.any()
    assert tape.zeros(2, 3).shape == (2, 3)
    o = tape.ones((4,), dtype=np.float32, requires_grad=True)
    assert o.dtype == np.float32 and o.requires_grad and o.is_leaf
    np.testing.assert_array_equal(o.data, np.ones(4))
    assert tape.ones(2, 2).shape == (2, 2)
    f = tape.full((2, 2), 7.5, requires_grad=True)
    assert f.dtype == np.float64 and f.requires_grad
    np.testing.assert_array_equal(f.data, np.full((2, 2), 7.5))
    assert tape.full((2,), 3).dtype == np.int64
    with pytest.raises(TypeError, match="requires_grad"):
        tape.full((2,), 3, requires_grad=True)
    assert tape.full((2,), 3, dtype=np.float32, requires_grad=True).dtype == np.float32


def test_like_factories_follow_shape_and_dtype():
    t = tape.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    z = tape.zeros_like(t)
    o = tape.ones_like(t, requires_grad=True)
    assert z.shape == o.shape == (2, 3)
    assert z.dtype == o.dtype == np.float32
    assert not z.requires_grad and o.requires_grad
    assert not z.data.any() and o.data.all()
    assert tape.zeros_like(t, dtype=np.float64).dtype == np.float64
    i = tape.ones_like(tape.tensor([1, 2, 3]))
    assert i.dtype == np.int64
    with pytest.raises(TypeError):
        tape.zeros_like(tape.tensor([1, 2]), requires_grad=True)


def test_randn_is_seeded_standard_normal():
    a = tape.randn(3, 4, seed=0)
    b = tape.randn(3, 4, seed=0)
    c = tape.randn(3, 4, seed=1)
    assert a.shape == (3, 4) and a.dtype == np.float64
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    big = tape.randn(20000, seed=3).data
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    r = tape.randn(2, seed=0, dtype=np.float32, requires_grad=True)
    assert r.dtype == np.float32 and r.requires_grad


def test_arange_dtypes():
    a = tape.arange(5)
    assert a.dtype == np.int64 and a.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(TypeError, match="requires_grad"):
        tape.arange(5, requires_grad=True)
    f = tape.arange(5.0)
    assert f.dtype == np.float64 and f.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert tape.arange(5.0, requires_grad=True).requires_grad
    np.testing.assert_array_equal(tape.arange(0, 1, 0.25).data, [0.0, 0.25, 0.5, 0.75])
    s = tape.arange(3, dtype=np.float32, requires_grad=True)
    assert s.dtype == np.float32 and s.requires_grad


def test_factory_tensors_are_differentiable_leaves():
    w = tape.zeros((2,), requires_grad=True)
    (w * tape.tensor([3.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(w.grad, [3.0, 4.0])


# ---- attributes ----------------------------------------------------------------------------------


def test_shape_ndim_size_dtype():
    t = tape.tensor(np.zeros((2, 3, 4), dtype=np.float32))
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.size == 24 and t.dtype == np.float32
    s = tape.tensor(2.0)
    assert s.shape == () and s.ndim == 0 and s.size == 1


def test_T_transposes_and_records_when_needed():
    m = np.arange(6.0).reshape(2, 3)
    plain = tape.tensor(m)
    np.testing.assert_array_equal(plain.T.data, m.T)
    assert plain.T.node is None
    x = tape.tensor(m, requires_grad=True)
    xt = x.T
    assert xt.shape == (3, 2) and xt.requires_grad and xt.node is not None
    (xt * np.arange(6.0).reshape(3, 2)).sum().backward()
    np.testing.assert_array_equal(x.grad, np.arange(6.0).reshape(3, 2).T)


def test_is_leaf():
    x = tape.tensor([1.0], requires_grad=True)
    c = tape.tensor([1.0])
    assert x.is_leaf and c.is_leaf
    assert not (x * 2.0).is_leaf
    assert (c * 2.0).is_leaf
    with tape.no_grad():
        assert (x * 2.0).is_leaf


def test_name_is_settable():
    t = tape.tensor([1.0], name="w")
    assert t.name == "w"
    t.name = "weights"
    assert t.name == "weights"
    t.name = None
    assert t.name is None
    assert tape.tensor([1.0]).name is None
    r = tape.tensor([1.0], requires_grad=True) * 2.0
    r.name = "double"
    assert r.name == "double"


def test_grad_is_none_until_a_backward_pass_reaches_it():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    assert x.grad is None
    y = x * 3.0
    assert x.grad is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


# ---- methods -------------------------------------------------------------------------------------


def test_numpy_item_tolist():
    t = tape.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert isinstance(t.numpy(), np.ndarray)
    np.testing.assert_array_equal(t.numpy(), [[1.5, 2.0], [3.0, 4.0]])
    assert t.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    s = tape.tensor([2.5], requires_grad=True)
    assert s.item() == 2.5 and type(s.item()) is float
    assert type(tape.tensor(3).item()) is int
    with pytest.raises(ValueError, match="item"):
        t.item()


def test_len():
    assert len(tape.tensor(np.zeros((5, 2)))) == 5
    assert len(tape.tensor([1.0, 2.0, 3.0])) == 3
    with pytest.raises(TypeError):
        len(tape.tensor(1.0))


def test_zero_grad_sets_none():
    x = tape.tensor([1.0], requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad is not None
    x.zero_grad()
    assert x.grad is None


def test_detach():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.node is None and d.grad is None
    np.testing.assert_array_equal(d.data, x.data)


def test_repr_shows_data_requires_grad_and_the_op():
    x = tape.tensor([1.25, -3.5], requires_grad=True)
    rx = repr(x)
    assert "1.25" in rx and "-3.5" in rx and "requires_grad=True" in rx
    y = x * 2.0
    ry = repr(y)
    assert "2.5" in ry and "-7." in ry and "requires_grad=True" in ry and "mul" in ry
    rc = repr(tape.tensor([4.0, 5.0]))
    assert "4." in rc and "requires_grad=True" not in rc
    assert "exp" in repr(x.exp())


# ---- the grad setter -----------------------------------------------------------------------------


def test_grad_setter_accepts_the_right_shape_and_keeps_the_dtype():
    x = tape.tensor(np.zeros((2, 2), dtype=np.float32), requires_grad=True)
    x.grad = np.ones((2, 2))  # float64 in
    assert isinstance(x.grad, np.ndarray)
    assert x.grad.dtype == np.float32 and x.grad.shape == (2, 2)
    np.testing.assert_array_equal(x.grad, np.ones((2, 2)))
    (x * 3.0).sum().backward()  # accumulates onto the set value
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 4.0))
    x.grad = None
    assert x.grad is None


def test_grad_setter_rejects_a_wrong_shape():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    x.grad = np.array([5.0, 6.0])
    with pytest.raises(ValueError) as info:
        x.grad = np.ones(3)
    assert "(3,)" in str(info.value) or "[3]" in str(info.value)
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])


# ---- comparisons ---------------------------------------------------------------------------------


COMPARISONS = [
    (lambda a, b: a < b, np.less),
    (lambda a, b: a <= b, np.less_equal),
    (lambda a, b: a > b, np.greater),
    (lambda a, b: a >= b, np.greater_equal),
    (lambda a, b: a == b, np.equal),
    (lambda a, b: a != b, np.not_equal),
]


@pytest.mark.parametrize(("compare", "reference"), COMPARISONS)
def test_comparisons_return_non_differentiable_bool_tensors(fresh_tape, compare, reference):
    xv = np.array([1.0, 2.0, 3.0])
    yv = np.array([2.0, 2.0, 2.0])
    x = tape.tensor(xv, requires_grad=True)
    y = tape.tensor(yv, requires_grad=True)
    for out, want in [
        (compare(x, y), reference(xv, yv)),
        (compare(x, 2.0), reference(xv, 2.0)),
        (compare(2.0, x), reference(2.0, xv)),
        (compare(x, yv), reference(xv, yv)),
    ]:
        assert isinstance(out, tape.Tensor)
        assert out.dtype == np.bool_
        assert not out.requires_grad and out.node is None
        np.testing.assert_array_equal(out.data, want)
    assert len(fresh_tape) == 0


def test_comparison_masks_work_in_where():
    x = tape.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    y = tape.where(x > 0, x, x * 0.1)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [0.1, 1.0, 0.1], rtol=1e-15)


# ---- in-place updates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        lambda t: t.__iadd__(1.0),
        lambda t: t.__isub__(1.0),
        lambda t: t.__imul__(2.0),
        lambda t: t.__itruediv__(2.0),
    ],
    ids=["+=", "-=", "*=", "/="],
)
def test_in_place_update_of_a_requires_grad_tensor_raises_while_recording(update):
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        update(x)
    np.testing.assert_array_equal(x.data, [1.0, 2.0])


def test_in_place_add_under_no_grad_updates_the_same_data():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    before, data = x, x.data
    with tape.no_grad():
        x += np.array([0.5, 0.5])
        x -= 1.0
        x *= 4.0
        x /= 2.0
    assert x is before and x.data is data
    np.testing.assert_array_equal(x.data, [1.0, 3.0])
    assert x.requires_grad and x.is_leaf and x.grad is None


def test_in_place_on_a_tensor_without_grad_is_allowed():
    c = tape.tensor([1.0, 2.0])
    c += 1.0
    np.testing.assert_array_equal(c.data, [2.0, 3.0])


def test_in_place_with_a_requires_grad_operand_raises():
    c = tape.tensor([1.0, 2.0])
    x = tape.tensor([1.0, 1.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        c += x
    np.testing.assert_array_equal(c.data, [1.0, 2.0])


def test_tape_tensor_is_the_function_and_the_module_has_its_own_name():
    import importlib

    assert tape.tensor.__module__ == "tape.creation"  # no submodule shadows or is shadowed
    assert importlib.import_module("tape.tensors").Tensor is tape.Tensor
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tape.tensor")
