"""What the op table (tests/op_specs.py) cannot say in one row.

``split`` returns a list with one record per piece; ``einsum`` normalises the
implicit form and refuses what it does not support; ``clamp``'s bounds may be
Tensors that learn; ``prod`` stays right to second order at zeros; ``norm``
refuses the orders it cannot differentiate; NumPy's own functions record the
ops; and every public op keeps NumPy's signature and a docstring that teaches.
"""

from __future__ import annotations

import doctest
import inspect
import re

import numpy as np
import pytest

import tape
from tape import ops
from tape.ops import OPS

NEW_OPS = (
    "sin cos tan arcsin arccos arctan sinh cosh log1p expm1 log2 log10 exp2 square "
    "reciprocal sign prod var std logsumexp cumsum norm squeeze expand_dims flip "
    "broadcast_to split einsum dot outer clamp"
).split()


def _leaf(data, dtype=np.float64) -> tape.Tensor:
    return tape.tensor(np.asarray(data, dtype=dtype), requires_grad=True)


# ---- split ----------------------------------------------------------------------------------


def test_split_returns_a_list_with_one_record_per_piece(fresh_tape) -> None:
    x = _leaf(np.arange(12.0).reshape(3, 4))
    pieces = tape.split(x, [1, 3], axis=1)
    assert isinstance(pieces, list) and len(pieces) == 3
    assert [p.shape for p in pieces] == [(3, 1), (3, 2), (3, 1)]
    assert len(fresh_tape) == 3
    for p in pieces:
        assert p.node.op == "split" and p.node.inputs[0] is x and len(p.node.inputs) == 1


def test_split_gradient_lands_in_each_pieces_slice() -> None:
    x = _leaf([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    a, _unused, c = tape.split(x, 3)
    (a * 10 + c * c).sum().backward()  # the middle piece unused: zeros
    np.testing.assert_array_equal(x.grad, [10.0, 10.0, 0.0, 0.0, 10.0, 12.0])


def test_split_to_second_order() -> None:
    x = _leaf(np.random.default_rng(0).standard_normal((4, 3)))
    w = np.random.default_rng(1).standard_normal((4, 3))

    def f(t):
        a, b = tape.split(t * t, [1], axis=0)
        return (a.sin().sum() + (b * w[1:]).exp().sum()) * t.sum()

    assert tape.gradcheck(f, [x])
    assert tape.gradgradcheck(f, [x])


@pytest.mark.parametrize("where", [[-2], [3, 1], [10], [0, 0, 5]])
def test_split_at_any_indices_matches_numpy(where) -> None:
    data = np.arange(6.0)
    got = tape.split(_leaf(data), where)
    expected = np.split(data, where)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.data, e)


def test_np_split_on_a_tensor_records_split() -> None:
    pieces = np.split(_leaf(np.ones((2, 4))), 2, axis=1)
    assert [p.node.op for p in pieces] == ["split", "split"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (((4, 6), 4, 1), r"split\(float64\[4, 6\], 4, axis=1\).*6.*4 equal pieces.*divides 6"),
        (((4,), 0, 0), r"split.*0 equal pieces"),
        (((4,), 2, 1), r"split\(float64\[4\], axis=1\).*out of bounds.*pick an axis"),
    ],
)
def test_split_errors_name_the_op_the_shape_and_the_fix(args, match) -> None:
    shape, sections, axis = args
    with pytest.raises(ValueError, match=match):
        tape.split(_leaf(np.ones(shape)), sections, axis=axis)


# ---- einsum ---------------------------------------------------------------------------------


def test_einsum_implicit_form_is_recorded_as_numpys_explicit_one() -> None:
    a, b = _leaf(np.ones((2, 3))), _leaf(np.ones((3, 4)))
    assert tape.einsum("ij,jk", a, b).node.params["subscripts"] == "ij,jk->ik"
    assert tape.einsum("ba", a).shape == (3, 2)  # implicit: output letters sorted, ab
    assert tape.einsum("i j , j k -> i k", a, b).shape == (2, 4)


def test_einsum_vjp_is_itself_an_einsum() -> None:
    a, b = _leaf(np.ones((2, 3))), _leaf(np.ones((3, 4)))
    ga, gb = tape.grad(tape.einsum("ij,jk->ik", a, b).sum(), [a, b], create_graph=True)
    assert ga.node.op == "einsum" and gb.node.op == "einsum"


def test_einsum_with_a_constant_operand_and_size_one_broadcasting() -> None:
    a = _leaf(np.random.default_rng(2).standard_normal((3, 1)))
    b = np.random.default_rng(3).standard_normal((3, 4))
    out = tape.einsum("ij,ij->j", a, b)
    np.testing.assert_allclose(out.data, np.einsum("ij,ij->j", a.data, b))
    assert tape.gradcheck(lambda t: tape.einsum("ij,ij->j", t, b), [a])


@pytest.mark.parametrize(
    ("subscripts", "shapes"),
    [
        ("iij->i", [(2, 2, 3)]),  # a trace, and a letter summed in that operand alone
        ("iij->", [(2, 2, 3)]),
        ("jii->", [(3, 2, 2)]),
        ("ij,j->i", [(2, 1), (3,)]),  # j has size 1 in the first operand: it broadcasts
        ("ij,ij->", [(2, 1), (2, 3)]),
        ("ij,jk->ik", [(2, 1), (3, 4)]),
    ],
)
def test_einsum_gradients_of_traces_and_size_one_broadcasting(subscripts, shapes) -> None:
    rng = np.random.default_rng(4)
    operands = [_leaf(rng.standard_normal(shape)) for shape in shapes]
    assert tape.gradcheck(lambda *xs: tape.einsum(subscripts, *xs), operands)
    assert tape.gradgradcheck(lambda *xs: tape.einsum(subscripts, *xs), operands)


@pytest.mark.parametrize(("subscripts", "shape"), [("i->", (0,)), ("ij->i", (2, 0))])
def test_einsum_over_an_empty_axis_gives_an_empty_gradient(subscripts, shape) -> None:
    x = _leaf(np.ones(shape))
    tape.einsum(subscripts, x).sum().backward()
    assert x.grad.shape == shape


@pytest.mark.parametrize(
    ("subscripts", "n", "kind", "match"),
    [
        ("...ij,jk->...ik", 2, ValueError, r"einsum\('\.\.\.ij.*ellipsis.*name every axis"),
        ("ij,jk->ik", 1, ValueError, r"einsum\('ij,jk->ik'\).*2 operand\(s\) but 1"),
        ("i1,jk->ik", 2, ValueError, r"einsum.*letters.*\['1'\]"),
        (3, 1, TypeError, r"einsum: the first argument is the subscripts string.*int"),
    ],
)
def test_einsum_refuses_what_it_does_not_support(subscripts, n, kind, match) -> None:
    operands = [_leaf(np.ones((2, 2)))] * n
    with pytest.raises(kind, match=match):
        tape.einsum(subscripts, *operands)


def test_einsum_shape_mismatch_names_the_op_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"einsum\(float64\[2, 3\], float64\[2, 3\]"):
        tape.einsum("ij,jk->ik", _leaf(np.ones((2, 3))), _leaf(np.ones((2, 3))))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda x: tape.einsum("ij,jk->ik", x, x),
            r"einsum\(float64\[3, 4\], float64\[3, 4\].*letter 'j' names axes of lengths \[3, 4\]",
        ),
        (lambda x: tape.einsum("ijk,jk->ik", x, x), r"einsum.*'ijk' names 3 axes.*has 2"),
        (
            lambda x: tape.dot(x, x),
            r"dot\(float64\[3, 4\], float64\[3, 4\]\).*last axis \(4\).*\.T",
        ),
        (lambda x: x.squeeze(0), r"squeeze\(float64\[3, 4\], axis=0\).*length 1.*reshape"),
        (lambda x: x.broadcast_to((2, 3)), r"broadcast_to\(float64\[3, 4\].*expand_dims"),
        (
            lambda x: x.clamp(min=tape.tensor(np.ones(3))),
            r"clamp\(float64\[3, 4\], float64\[3\].*lo\[:, None\]",
        ),
        (lambda x: x.var(axis=2), r"var\(float64\[3, 4\], axis=2"),
    ],
)
def test_shape_errors_name_the_op_the_shapes_and_the_fix(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(_leaf(np.ones((3, 4))))


# ---- dot and outer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xs", "ys"), [((2, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,))]
)
def test_dot_of_n_d_operands_is_numpys(xs, ys) -> None:
    rng = np.random.default_rng(4)
    x, y = _leaf(rng.standard_normal(xs)), _leaf(rng.standard_normal(ys))
    out = np.dot(x, y)  # NumPy's function on Tensors records tape's dot
    assert out.node.op == "dot"
    np.testing.assert_allclose(out.data, np.dot(x.data, y.data), rtol=1e-12)
    assert tape.gradcheck(tape.dot, [x, y])
    assert tape.gradgradcheck(tape.dot, [x, y])


# ---- clamp with Tensor bounds ---------------------------------------------------------------


def test_clamp_records_its_tensor_bounds_as_inputs() -> None:
    x, lo, hi = _leaf([0.0, 1.0]), _leaf([0.5, 0.5]), _leaf(2.0)
    out = np.clip(x, lo, hi)
    assert out.node.op == "clamp"
    assert all(a is b for a, b in zip(out.node.inputs, (x, lo, hi)))
    assert len(tape.clamp(x, 0.0, hi).node.inputs) == 2  # a number stays a parameter


def test_clamp_with_only_a_tensor_max() -> None:
    x, hi = _leaf([-1.0, 0.5, 2.0, 1.0]), _leaf([1.0, 1.0, 1.0, 1.0])
    x.clamp(max=hi).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(hi.grad, [0.0, 0.0, 1.0, 0.0])


def test_clamp_with_a_bound_that_needs_no_gradient() -> None:
    x, lo = _leaf([-1.0, 2.0]), tape.tensor([0.0, 0.0])
    x.clamp(min=lo, max=1.5).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    assert lo.grad is None


def test_clamp_tensor_bounds_to_second_order_and_in_float32() -> None:
    rng = np.random.default_rng(5)
    x, lo, hi = (_leaf(rng.standard_normal((3, 4))) for _ in range(3))
    f = lambda a, b, c: tape.clamp(a, b, c) * a
    assert tape.gradcheck(f, [x, lo, hi])
    assert tape.gradgradcheck(f, [x, lo, hi])
    x32, lo32 = _leaf(x.data, np.float32), _leaf(lo.data, np.float32)
    tape.clamp(x32, min=lo32).sum().backward()
    assert x32.grad.dtype == lo32.grad.dtype == np.float32


def test_clamp_with_only_a_tensor_max_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    data, bound = rng.standard_normal((3, 4)), rng.standard_normal(4)
    x, hi = _leaf(data), _leaf(bound)
    tx, thi = (torch.tensor(a, requires_grad=True) for a in (data, bound))
    (x.clamp(max=hi) * data).sum().backward()
    (torch.clamp(tx, max=thi) * torch.tensor(data)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(hi.grad, thi.grad.numpy(), rtol=1e-12)


# ---- prod at zeros --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        [[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [1.5, -2.0, 0.5]],
        [[0.0, 4.0, -1.0, 0.0]],
    ],
)
@pytest.mark.parametrize("axis", [None, 1, -1])
def test_prod_with_zeros_is_right_to_second_order(data, axis) -> None:
    x = _leaf(data)
    w = np.random.default_rng(7).standard_normal(np.shape(np.prod(x.data, axis=axis)))
    f = lambda t: t.prod(axis=axis) * w
    assert tape.gradcheck(f, [x])
    assert tape.gradgradcheck(f, [x])


# ---- pow by a Python number ------------------------------------------------------------------


@pytest.mark.parametrize("y", [2, 2.0, 3, 1, 0.5, -1, -2.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_by_a_python_number_gives_numpys_power_and_y_x_to_the_y_minus_1(y, dtype) -> None:
    # x ** 2 takes a short road in forward and VJP: every exponent must give np.power's values
    x = _leaf(np.random.default_rng(3).uniform(0.5, 2.0, (3, 4)), dtype)
    out = x**y
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.data, np.power(x.data, y))
    out.sum().backward()
    assert x.grad.dtype == dtype
    np.testing.assert_allclose(x.grad, y * np.power(x.data, y - 1), rtol=1e-6)
    if dtype == np.float64:
        assert tape.gradcheck(lambda t: t**y, [x])
        assert tape.gradgradcheck(lambda t: t**y, [x])


def test_pow_by_two_and_by_zero_at_zero_and_below_zero() -> None:
    x = _leaf([-1.5, -0.0, 0.0, 2.0])
    (x**2).sum().backward()
    np.testing.assert_array_equal(x.grad, [-3.0, 0.0, 0.0, 4.0])  # 2x
    x.zero_grad()
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0, 0.0])  # x⁰ is constant, also at 0


# ---- norm -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"ord": 0}, r"norm.*ord=0.*counts nonzero entries"),
        ({"ord": 0.5}, r"norm.*ord=0.5.*p >= 1"),
        ({"ord": -2}, r"norm.*ord=-2.*supported"),
        ({"ord": "nuc"}, r"norm.*matrix norm ord='nuc'.*'fro'"),
        ({"ord": 1, "axis": (0, 1)}, r"norm.*matrix norm ord=1.*x\.abs\(\)\.sum\(axis=-2\)"),
    ],
)
def test_norm_refuses_orders_without_a_clean_gradient(kw, match) -> None:
    x = _leaf(np.ones((2, 3)))
    with pytest.raises(ValueError, match=match):
        x.norm(**kw) if "axis" in kw or kw["ord"] in ("nuc",) else x[0].norm(**kw)


def test_norm_of_a_tensor_by_numpy_and_of_n_d_input() -> None:
    x = _leaf(np.arange(24.0).reshape(2, 3, 4) - 10)
    out = np.linalg.norm(x)
    assert out.node.op == "norm"
    np.testing.assert_allclose(out.data, np.linalg.norm(x.data))
    assert tape.gradcheck(lambda t: t.norm(axis=(0, 2)), [x])


# ---- NumPy dispatch, signatures, docstrings ------------------------------------------------

UFUNCS = {
    np.sin: "sin",
    np.cos: "cos",
    np.tan: "tan",
    np.arcsin: "arcsin",
    np.arccos: "arccos",
    np.arctan: "arctan",
    np.sinh: "sinh",
    np.cosh: "cosh",
    np.log1p: "log1p",
    np.expm1: "expm1",
    np.log2: "log2",
    np.log10: "log10",
    np.exp2: "exp2",
    np.square: "square",
    np.reciprocal: "reciprocal",
    np.sign: "sign",
}


@pytest.mark.parametrize("ufunc", UFUNCS, ids=lambda u: u.__name__)
def test_numpy_ufuncs_on_tensors_record_the_op(ufunc) -> None:
    x = _leaf([0.25, 0.5])
    out = ufunc(x)
    assert out.node.op == UFUNCS[ufunc]
    np.testing.assert_allclose(out.data, ufunc(x.data), rtol=1e-15)


FUNCTIONS = [
    (lambda t: np.prod(t, axis=0), "prod"),
    (lambda t: np.var(t, axis=1, ddof=1), "var"),
    (lambda t: np.std(t, keepdims=True), "std"),
    (lambda t: np.cumsum(t, axis=1), "cumsum"),
    (lambda t: np.linalg.norm(t, axis=0), "norm"),
    (lambda t: np.squeeze(t[:1]), "squeeze"),
    (lambda t: np.expand_dims(t, 0), "expand_dims"),
    (lambda t: np.flip(t, 1), "flip"),
    (lambda t: np.broadcast_to(t, (2, 2, 3)), "broadcast_to"),
    (lambda t: np.einsum("ij->j", t), "einsum"),
    (lambda t: np.outer(t, t), "outer"),
    (lambda t: np.clip(t, 0.2, 0.4), "clamp"),
]


@pytest.mark.parametrize(("call", "name"), FUNCTIONS, ids=[n for _, n in FUNCTIONS])
def test_numpy_functions_on_tensors_record_the_op(call, name) -> None:
    x = _leaf(np.linspace(0.1, 0.6, 6).reshape(2, 3))
    out = call(x)
    assert out.node.op == name
    np.testing.assert_allclose(out.data, call(x.data), rtol=1e-15)


def test_public_ops_show_numpys_parameters() -> None:
    for name in OPS:
        params = inspect.signature(getattr(tape, name)).parameters.values()
        assert not any(p.kind is p.VAR_KEYWORD for p in params), f"tape.{name} shows **kwargs"
    expected = {
        "sum": ["x", "axis", "keepdims"],
        "var": ["x", "axis", "ddof", "keepdims"],
        "norm": ["x", "ord", "axis", "keepdims"],
        "cumsum": ["x", "axis"],
        "clamp": ["x", "min", "max"],
        "split": ["x", "indices_or_sections", "axis"],
        "broadcast_to": ["x", "shape"],
        "expand_dims": ["x", "axis"],
    }
    for name, names in expected.items():
        assert list(inspect.signature(getattr(tape, name)).parameters) == names, name


@pytest.mark.parametrize("name", sorted(OPS))
def test_docstrings_teach_with_an_example_that_runs(name) -> None:
    fn = getattr(tape, name)
    assert ">>>" in fn.__doc__ and ".grad" in fn.__doc__, f"tape.{name}: no example"
    assert fn is getattr(ops, name)
    prose = fn.__doc__.split(">>>")[0]
    assert re.search(r"∂|gradient|\bg\b|VJP", prose), (
        f"tape.{name}: the docstring gives no derivative"
    )
    (test,) = doctest.DocTestFinder().find(fn, name, globs={"tape": tape, "np": np})
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    assert runner.run(test).failed == 0, f"tape.{name}'s example does not give what it shows"


# ---- reductions over an empty axis -------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (lambda t: tape.softmax(t, axis=0), np.empty((0, 3))),
        (lambda t: tape.log_softmax(t, axis=0), np.empty((0, 3))),
        (lambda t: tape.logsumexp(t, axis=0), np.full(3, -np.inf)),  # log 0, as in PyTorch
    ],
)
def test_stabilised_ops_over_an_empty_axis(op, expected) -> None:
    # their shift by the max once asked NumPy for the max of nothing, and raised
    x = _leaf(np.empty((0, 3)))
    with np.errstate(all="raise"):  # no log-of-zero warning either
        out = op(x)
    np.testing.assert_array_equal(out.data, expected)
    out.sum().backward()
    assert x.grad.shape == (0, 3)
    value, grad = tape.compile(lambda t: op(t).sum())(np.empty((0, 3)))
    assert value == expected.sum() and grad.shape == (0, 3)


@pytest.mark.parametrize("op", [tape.softmax, tape.log_softmax, tape.logsumexp])
def test_stabilised_ops_on_integers_compute_in_floats(op) -> None:
    # an integer has no -inf to shift an empty axis by: its max shifts as before
    x = np.array([1, 2, 3])
    out = op(tape.tensor(x))
    reference = op(tape.tensor(x.astype(float)))
    np.testing.assert_allclose(out.data, reference.data)


@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("ddof", [2, 5])
def test_var_and_std_without_degrees_of_freedom_have_no_finite_gradient(op, ddof) -> None:
    # NumPy's forward is inf when ddof >= N; a finite gradient (N - ddof < 0 flipped its sign)
    # would be a number for a value that is not one
    x = _leaf(np.array([1.0, 3.0]))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        out = getattr(x, op)(ddof=ddof)
        out.backward()
    assert np.isinf(out.data) and not np.isfinite(x.grad).any()
