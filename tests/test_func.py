"""tape.func: grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp.

Expected values come from hand-derived formulas or from central finite
differences of the function itself, never from the transform under test.
"""

from __future__ import annotations

import doctest
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from finite_differences import numeric_jacobian

import tape
from tape import func

EPS = 1e-6


def on_arrays(f):
    """Run a Tensor function on arrays, for finite differences."""
    return lambda *xs: f(*[tape.tensor(x) for x in xs]).data


def mlp(x, w, b, v):
    """A scalar of a small tanh network, used across the tests."""
    return ((x @ w + b).tanh() @ v).sum()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(4)


# ---- grad and value_and_grad -----------------------------------------------------------------


def test_grad_of_arrays_is_an_array_of_the_input_shape_and_dtype(rng):
    x = rng.standard_normal((3, 2))
    g = func.grad(lambda t: (t * t).sum())(x)
    assert type(g) is np.ndarray
    np.testing.assert_allclose(g, 2 * x, rtol=1e-15)
    g32 = func.grad(lambda t: (t * t).sum())(x.astype(np.float32))
    assert g32.dtype == np.float32 and g32.shape == (3, 2)


def test_grad_accepts_python_floats_and_tensors_without_grad():
    f = lambda t: t**3
    assert func.grad(f)(2.0) == pytest.approx(12.0)
    t = tape.tensor(2.0)
    g = func.grad(f)(t)
    assert type(g) is np.ndarray and g == pytest.approx(12.0)
    assert t.grad is None  # a transform never touches .grad


def test_grad_of_a_scalar_input_used_three_times():
    g = func.grad(lambda t: t * t + t)(2.0)  # x·x gives two contributions, + x a third
    assert type(g) is np.ndarray and g.shape == ()
    assert g == pytest.approx(5.0)  # 2x + 1


def test_grad_on_a_tensor_that_requires_grad_returns_a_recorded_tensor():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    g = func.grad(lambda t: (t**3).sum())(x)
    assert isinstance(g, tape.Tensor) and g.requires_grad and g.node is not None
    np.testing.assert_allclose(g.data, [3.0, 12.0])
    (gg,) = tape.grad(g.sum(), [x])  # and it can be differentiated again: 6x
    np.testing.assert_allclose(gg, [6.0, 12.0])


def test_grad_argnums_int_negative_and_tuple(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(3)
    f = lambda a, b: (a * a * b).sum()
    np.testing.assert_allclose(func.grad(f)(x, y), 2 * x * y)
    np.testing.assert_allclose(func.grad(f, argnums=1)(x, y), x * x)
    np.testing.assert_allclose(func.grad(f, argnums=-1)(x, y), x * x)
    gx, gy = func.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * x * y)
    np.testing.assert_allclose(gy, x * x)
    single = func.grad(f, argnums=(1,))(x, y)
    assert isinstance(single, tuple) and len(single) == 1


def test_grad_passes_other_arguments_through_as_tensors_or_as_they_are(rng):
    x, data = rng.standard_normal(3), rng.standard_normal(3)
    seen = {}

    def f(t, d, scale):
        seen["d"], seen["scale"] = d, scale
        return (t * d).sum() * scale

    np.testing.assert_allclose(func.grad(f)(x, data, 2.0), 2.0 * data)
    assert isinstance(seen["d"], tape.Tensor) and not seen["d"].requires_grad
    assert seen["scale"] == 2.0


def test_grad_bad_argnums_and_integer_inputs_say_what_to_do():
    f = lambda a, b: (a * b).sum()
    with pytest.raises(ValueError, match="argnums=2"):
        func.grad(f, argnums=2)(np.ones(2), np.ones(2))
    # an argument named twice: one copy would get the gradient, the other zeros (torch.func
    # refuses too); tape.compile reads argnums the same way
    for transform in (func.grad, func.jacobian, func.hessian, tape.compile):
        with pytest.raises(ValueError, match=r"argnums=\(1, -1\) names an argument twice"):
            transform(f, argnums=(1, -1))(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"argument 0 is int64.*floating"):
        func.grad(f)(np.arange(2), np.ones(2))


def test_grad_needs_a_scalar_tensor_output():
    with pytest.raises(ValueError, match=r"shape \(3,\).*jacobian"):
        func.grad(lambda t: t * 2)(np.ones(3))
    with pytest.raises(TypeError, match="must return a Tensor"):
        func.grad(lambda t: 3.0)(np.ones(3))
    # one element is enough, as for backward()
    np.testing.assert_allclose(func.grad(lambda t: t * 2)(np.ones(1)), [2.0])


def test_grad_of_an_unused_argument_or_a_constant_is_zero():
    f = lambda a, b: (a * 2).sum()
    assert np.array_equal(func.grad(f, argnums=1)(np.ones(2), np.ones(3)), np.zeros(3))
    const = func.grad(lambda a: tape.tensor(5.0))(np.ones(2))
    assert np.array_equal(const, np.zeros(2))


def test_grad_has_aux_returns_grad_and_aux_as_arrays(rng):
    x = rng.standard_normal(4)

    def loss_with_stats(t):
        loss = (t * t).sum()
        return loss, {"loss": loss, "max": t.max(), "tag": "ok"}

    g, aux = func.grad(loss_with_stats, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    assert type(aux["loss"]) is np.ndarray and aux["loss"] == pytest.approx(np.sum(x * x))
    assert aux["max"] == pytest.approx(x.max()) and aux["tag"] == "ok"


def test_value_and_grad_layout_with_and_without_aux(rng):
    x = rng.standard_normal(3)
    value, g = func.value_and_grad(lambda t: (t**2).sum())(x)
    assert type(value) is np.ndarray and value == pytest.approx(np.sum(x**2))
    np.testing.assert_allclose(g, 2 * x)
    (value, aux), g = func.value_and_grad(lambda t: ((t**2).sum(), t * 3), has_aux=True)(x)
    assert value == pytest.approx(np.sum(x**2))
    np.testing.assert_allclose(aux, 3 * x)
    np.testing.assert_allclose(g, 2 * x)
    (value, aux), (ga, gb) = func.value_and_grad(
        lambda a, b: ((a * b).sum(), None), argnums=(0, 1), has_aux=True
    )(x, 2 * x)
    assert aux is None
    np.testing.assert_allclose(ga, 2 * x)
    np.testing.assert_allclose(gb, x)


def test_has_aux_needs_a_pair():
    with pytest.raises(TypeError, match=r"has_aux=True.*\(value, aux\)"):
        func.grad(lambda t: t.sum(), has_aux=True)(np.ones(2))


def test_grad_of_grad_is_the_second_derivative():
    f = lambda t: t**3 - 2 * t**2  # f'' = 6t − 4
    d2 = func.grad(func.grad(f))
    for t in (-1.5, 0.0, 2.0):
        assert d2(t) == pytest.approx(6 * t - 4, abs=1e-12)
    assert func.grad(func.grad(func.grad(f)))(0.7) == pytest.approx(6.0)  # third order


def test_grad_of_grad_elementwise_and_mixed_partials():
    x = np.array([0.3, -1.2, 2.0])
    f = lambda t: t.exp().sum() * 0.5 + (t**4).sum()
    second = func.grad(lambda t: func.grad(f)(t).sum())(x)  # diagonal of the Hessian
    np.testing.assert_allclose(second, 0.5 * np.exp(x) + 12 * x**2, rtol=1e-12)
    # ∂²(a²b³)/∂a∂b = 6ab² both ways round
    g = lambda a, b: a**2 * b**3
    ab = func.grad(lambda a, b: func.grad(g, argnums=1)(a, b), argnums=0)(1.5, -0.5)
    ba = func.grad(lambda a, b: func.grad(g, argnums=0)(a, b), argnums=1)(1.5, -0.5)
    assert ab == pytest.approx(6 * 1.5 * 0.25) and ba == pytest.approx(6 * 1.5 * 0.25)


def test_a_transform_closing_over_an_outer_variable_stays_on_the_tape():
    # h(w) = Σ ∂/∂x (x² w)|ₓ₀ = Σ 2 x₀ w, so dh/dw = 2 x₀ — only if the inner
    # gradient is recorded even though it was called on an array
    x0 = np.array([1.0, -2.0, 0.5])
    h = lambda w: func.grad(lambda x: (x**2 * w).sum())(x0).sum()
    np.testing.assert_allclose(func.grad(h)(np.array([0.3, 0.1, -0.7])), 2 * x0)


def test_a_gradient_penalty_built_with_grad_reaches_the_parameters(rng):
    x = rng.standard_normal((5, 3))
    w = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    gx = func.grad(lambda t: (t @ w).tanh().sum())(x)  # closes over w: recorded
    assert isinstance(gx, tape.Tensor) and gx.requires_grad
    (gx**2).sum().backward()

    def penalty(w_data):
        s = 1 - np.tanh(x @ w_data) ** 2  # ∂/∂x Σ tanh(x w) = (1 − tanh²) wᵀ
        return np.sum((s @ w_data.T) ** 2)

    np.testing.assert_allclose(w.grad, numeric_jacobian(penalty, w.data), rtol=1e-6)


def _d_tanh_exp(x, w):  # d/dw Σ_i ∂/∂x_i Σ exp(tanh(x w)) = d/dw Σ e^t (1 − t²) w, t = tanh(x w)
    t = np.tanh(x * w)
    return np.exp(t) * (1 - t**2) * (1 + x * w * (1 - t**2) - 2 * t * x * w)


@pytest.mark.parametrize(
    ("transform", "hand"),
    [
        (lambda w, x: func.grad(lambda x: (x * w).tanh().exp().sum())(x), _d_tanh_exp),
        (lambda w, x: func.hessian(lambda z: (z**3 * w).sum())(x), lambda x, w: 6 * x),
        (
            lambda w, x: func.grad(lambda y: func.grad(lambda z: (z**3 * w).sum())(y).sum())(x),
            lambda x, w: 6 * x,  # Σ ∂/∂y 3y²w = Σ 6 x w
        ),
    ],
    ids=["grad through three ops", "hessian", "grad of grad"],
)
def test_a_parameter_f_closes_over_is_reached_through_any_graph(transform, hand):
    # the walk that looks for it once skipped records: node.inputs makes new stand-ins on
    # each read, and a freed one's id could be taken for a record already seen
    w = tape.tensor([0.5, -1.0], requires_grad=True)
    x = np.array([1.0, 2.0])
    out = transform(w, x)
    assert isinstance(out, tape.Tensor) and out.requires_grad
    (dw,) = tape.grad(out.sum(), [w])
    np.testing.assert_allclose(dw, hand(x, w.data), rtol=1e-12)


def test_grad_works_under_no_grad_and_returns_arrays(rng):
    x = rng.standard_normal(3)
    w = tape.tensor(rng.standard_normal(3), requires_grad=True)
    with tape.no_grad():
        g = func.grad(lambda t: (t * w).sum())(x)
    assert type(g) is np.ndarray
    np.testing.assert_allclose(g, w.data)


def test_under_no_grad_a_transform_leaves_the_callers_graph_usable():
    w = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = w * 2  # the caller's record
    with tape.no_grad():
        g = func.grad(lambda v: (v**2).sum())(y)
        _, hv = func.hvp(lambda v: (v**3).sum(), y, np.ones(3))
        _, jt = func.jvp(lambda v: v**2, y, np.ones(3))
        gc = func.grad(lambda v: (v * y).sum())(np.ones(3))  # f closes over the caller's y
    np.testing.assert_allclose(g, 2 * y.data)
    np.testing.assert_allclose(hv, 6 * y.data)
    np.testing.assert_allclose(jt, 2 * y.data)
    np.testing.assert_allclose(gc, y.data)
    (y * 3).sum().backward()  # the record of y = w·2 was not released by the transforms
    np.testing.assert_allclose(w.grad, [6.0, 6.0, 6.0])


def test_transforms_compose_into_third_derivatives():
    x, t = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, -1.0])
    quartic = lambda v: (v**4).sum()  # H = diag(12v²)
    cube = lambda v: v**3  # J = diag(3v²)
    np.testing.assert_allclose(func.grad(lambda w: func.hessian(quartic)(w).sum())(x), 24 * x)
    np.testing.assert_allclose(func.grad(lambda w: func.hvp(quartic, w, t)[1].sum())(x), 24 * x * t)
    np.testing.assert_allclose(
        func.grad(lambda w: func.jvp(cube, (w,), (t,))[1].sum())(x), 6 * x * t
    )
    np.testing.assert_allclose(func.grad(lambda w: func.vjp(cube, w)[1](t)[0].sum())(x), 6 * x * t)
    np.testing.assert_allclose(func.grad(lambda w: func.jacobian(cube)(w).sum())(x), 6 * x)


def test_calls_that_return_arrays_leave_no_records_behind(fresh_tape, rng):
    x = rng.standard_normal((4, 3))
    for _ in range(50):
        func.grad(lambda t: (t.tanh() ** 2).sum())(x)
        func.hessian(lambda t: (t**3).sum())(x[0])
    assert len(fresh_tape) == 0


# ---- vjp -------------------------------------------------------------------------------------


def test_vjp_returns_the_output_and_a_function_callable_many_times(rng):
    a = rng.standard_normal((4, 3))
    f = lambda x: (a @ x).tanh()
    x = rng.standard_normal(3)
    out, vjp_fn = func.vjp(f, x)
    np.testing.assert_allclose(out, np.tanh(a @ x))
    jac = numeric_jacobian(on_arrays(f), x)
    us = [rng.standard_normal(4) for _ in range(3)]
    for u in [*us, us[0]]:  # four calls, the last repeating the first
        result = vjp_fn(u)
        assert isinstance(result, tuple) and len(result) == 1
        np.testing.assert_allclose(result[0], u @ jac, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(vjp_fn(us[0])[0], vjp_fn(us[0])[0])


def test_one_vjp_fn_called_from_many_threads_at_once_gives_every_row():
    # Jacobian rows on a thread pool: each call makes the primals variables for its walk,
    # and the first call to finish once made them constants under the others' walks
    n = 5
    A = np.arange(n * n, dtype=float).reshape(n, n) / 10
    x0 = np.linspace(0.1, 1.0, n)
    J = np.diag(np.cos(A @ x0)) @ A  # the Jacobian of sin(A x)
    _, vjp_fn = func.vjp(lambda x: (tape.tensor(A) @ x).sin(), x0)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every microsecond: the race shows at once
    try:
        with ThreadPoolExecutor(4) as pool:
            rows = list(pool.map(lambda i: vjp_fn(np.eye(n)[i % n])[0], range(600)))
    finally:
        sys.setswitchinterval(before)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(row, J[i % n], rtol=1e-12)


def test_vjp_several_primals_and_tuple_outputs(rng):
    x, y = rng.standard_normal((2, 3)), rng.standard_normal(3)
    out, vjp_fn = func.vjp(lambda a, b: (a * b, (a @ b).exp()), x, y)
    assert isinstance(out, tuple) and out[0].shape == (2, 3) and out[1].shape == (2,)
    u0, u1 = rng.standard_normal((2, 3)), rng.standard_normal(2)
    gx, gy = vjp_fn((u0, u1))
    e = np.exp(x @ y)
    np.testing.assert_allclose(gx, u0 * y + (u1 * e)[:, None] * y)
    np.testing.assert_allclose(gy, (u0 * x).sum(0) + (u1 * e) @ x)


def test_vjp_cotangent_of_the_wrong_shape_is_a_value_error():
    _, vjp_fn = func.vjp(lambda x: x * 2, np.ones(3))
    with pytest.raises(ValueError, match=r"cotangent 0 has shape \(2,\).*\(3,\)"):
        vjp_fn(np.ones(2))


def test_vjp_with_a_cotangent_that_requires_grad_is_recorded(rng):
    x = rng.standard_normal(3)
    _, vjp_fn = func.vjp(lambda t: t**2, x)
    u = tape.tensor(rng.standard_normal(3), requires_grad=True)
    (g,) = vjp_fn(u)  # 2x ⊙ u, linear in u
    assert isinstance(g, tape.Tensor) and g.requires_grad
    (du,) = tape.grad(g.sum(), [u])
    np.testing.assert_allclose(du, 2 * x)


# ---- jvp -------------------------------------------------------------------------------------


def test_jvp_matches_finite_differences_along_the_direction(rng):
    a = rng.standard_normal((4, 3))
    f = lambda x: (a @ x).sigmoid() * x.sum()
    x, t = rng.standard_normal(3), rng.standard_normal(3)
    out, t_out = func.jvp(f, (x,), (t,))
    np.testing.assert_allclose(out, on_arrays(f)(x))
    along = (on_arrays(f)(x + EPS * t) - on_arrays(f)(x - EPS * t)) / (2 * EPS)
    np.testing.assert_allclose(t_out, along, rtol=1e-6, atol=1e-9)
    assert type(t_out) is np.ndarray and t_out.shape == (4,)


def test_jvp_several_primals_sums_the_directional_derivatives(rng):
    x, y = rng.standard_normal((3, 2)), rng.standard_normal(2)
    f = lambda a, b: (a @ b).exp()
    tx, ty = rng.standard_normal((3, 2)), rng.standard_normal(2)
    _, t_out = func.jvp(f, (x, y), (tx, ty))
    g = lambda a, b: np.exp(a @ b)
    along = (g(x + EPS * tx, y + EPS * ty) - g(x - EPS * tx, y - EPS * ty)) / (2 * EPS)
    np.testing.assert_allclose(t_out, along, rtol=1e-6)


def test_jvp_equals_jacobian_times_tangent_and_accepts_single_arrays(rng):
    f = lambda x: x.softmax() * x
    x, t = rng.standard_normal(5), rng.standard_normal(5)
    _, t_out = func.jvp(f, x, t)
    np.testing.assert_allclose(t_out, func.jacobian(f)(x) @ t, rtol=1e-12, atol=1e-14)


def test_jvp_of_an_output_that_ignores_the_input_is_zero():
    _, t_out = func.jvp(lambda x: tape.tensor([1.0, 2.0]), (np.ones(3),), (np.ones(3),))
    assert np.array_equal(t_out, np.zeros(2))


def test_jvp_tangent_of_the_wrong_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"tangent 0 has shape \(2,\).*\(3,\)"):
        func.jvp(lambda x: x, (np.ones(3),), (np.ones(2),))


# ---- jacobian --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "shape"),
    [
        (lambda x: x.tanh() * x.sum(), (4,)),
        (lambda x: (x @ x.T).log_softmax(axis=0), (3, 2)),
        (lambda x: x.max(axis=1) * x.mean(), (2, 3)),
        (lambda x: (x[[0, 2, 2]] ** 2).exp(), (4,)),
        (lambda x: x.sum(), (2, 2)),
    ],
    ids=["tanh-times-sum", "log-softmax-of-gram", "max-times-mean", "gather-exp", "scalar"],
)
def test_jacobian_matches_finite_differences_and_has_out_shape_plus_in_shape(f, shape, rng):
    x = rng.standard_normal(shape)
    jac = func.jacobian(f)(x)
    out_shape = on_arrays(f)(x).shape
    assert jac.shape == out_shape + shape
    np.testing.assert_allclose(jac, numeric_jacobian(on_arrays(f), x), rtol=1e-6, atol=1e-8)


def test_jacobian_of_softmax_is_diag_s_minus_s_s_transposed(rng):
    x = rng.standard_normal(4)
    s = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(
        func.jacobian(lambda t: t.softmax())(x), np.diag(s) - np.outer(s, s), atol=1e-15
    )


def test_jacobian_tuple_argnums_and_tuple_outputs(rng):
    w, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    x = rng.standard_normal(3)
    jw, jb = func.jacobian(lambda w_, b_: x @ w_ + b_, argnums=(0, 1))(w, b)
    assert jw.shape == (2, 3, 2) and jb.shape == (2, 2)
    # ∂(xW + b)_k/∂W_ij = x_i δ_jk, ∂/∂b_j = δ_jk
    np.testing.assert_allclose(jw, np.einsum("i,jk->kij", x, np.eye(2)))
    np.testing.assert_allclose(jb, np.eye(2))
    j_sq, j_sum = func.jacobian(lambda t: (t**2, t.sum()))(x)
    np.testing.assert_allclose(j_sq, np.diag(2 * x))
    np.testing.assert_allclose(j_sum, np.ones(3))


# ---- hessian and hvp -------------------------------------------------------------------------


def test_hessian_tuple_argnums_gives_blocks_in_jax_layout(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(2)
    f = lambda a, b: (a.sum() * b**2).sum() + (a**3).sum()
    (hxx, hxy), (hyx, hyy) = func.hessian(f, argnums=(0, 1))(x, y)
    assert (hxx.shape, hxy.shape, hyx.shape, hyy.shape) == ((3, 3), (3, 2), (2, 3), (2, 2))
    np.testing.assert_allclose(hxx, np.diag(6 * x))
    np.testing.assert_allclose(hxy, np.tile(2 * y, (3, 1)))
    np.testing.assert_allclose(hyx, hxy.T)
    np.testing.assert_allclose(hyy, 2 * x.sum() * np.eye(2))


def test_hessian_of_a_matrix_input_has_in_shape_twice(rng):
    w = rng.standard_normal((3, 2))
    x, v = rng.standard_normal((4, 3)), rng.standard_normal(2)
    f = lambda w_: ((tape.tensor(x) @ w_).tanh() @ v).sum()
    h = func.hessian(f)(w)
    assert h.shape == (3, 2, 3, 2)
    fd = numeric_jacobian(lambda w_: func.grad(f)(w_), w)  # differences of gradients
    np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, h.transpose(2, 3, 0, 1), atol=1e-12)  # symmetric


def test_hvp_equals_hessian_times_v(rng):
    a = rng.standard_normal((4, 4))
    f = lambda x: ((tape.tensor(a) @ x).tanh() ** 2).sum() + (x**4).sum()
    x, v = rng.standard_normal(4), rng.standard_normal(4)
    out, hv = func.hvp(f, x, v)
    assert out == pytest.approx(on_arrays(f)(x))
    np.testing.assert_allclose(hv, func.hessian(f)(x) @ v, rtol=1e-10, atol=1e-12)
    _, (hv_t,) = func.hvp(f, (x,), (v,))  # a tuple in, a tuple out
    np.testing.assert_allclose(hv_t, hv)


def test_hvp_with_several_primals_uses_the_full_hessian(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(2)
    vx, vy = rng.standard_normal(3), rng.standard_normal(2)
    f = lambda a, b: (a.sum() * b**2).sum() + (a**3).sum()
    (hxx, hxy), (hyx, hyy) = func.hessian(f, argnums=(0, 1))(x, y)
    _, (hvx, hvy) = func.hvp(f, (x, y), (vx, vy))
    np.testing.assert_allclose(hvx, hxx @ vx + hxy @ vy, rtol=1e-12)
    np.testing.assert_allclose(hvy, hyx @ vx + hyy @ vy, rtol=1e-12)


def test_hessian_and_jacobian_agree_with_torch_when_available(rng):
    torch = pytest.importorskip("torch")
    x, w, b, v = (rng.standard_normal(s) for s in ((5, 3), (3, 4), (4,), (4,)))
    ours = func.hessian(mlp, argnums=1)(x, w, b, v)

    def torch_mlp(w_):
        as_t = lambda a: torch.tensor(a, dtype=torch.float64)
        return ((as_t(x) @ w_ + as_t(b)).tanh() @ as_t(v)).sum()

    theirs = torch.autograd.functional.hessian(torch_mlp, torch.tensor(w)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("obj", [func, tape.gradgradcheck], ids=["tape.func", "gradgradcheck"])
def test_docstring_examples_run(obj):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(obj, globs={"tape": tape, "np": np}):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0 and failed == 0
