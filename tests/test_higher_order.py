"""Higher order: ``tape.grad(..., create_graph=True)``, Hessians, gradgradcheck, memory.

Every public op is checked to second order with ``tape.gradgradcheck`` on the
inputs of the op table (tests/op_specs.py). Hessians are compared with
formulas derived by hand and with central differences of the gradient.
"""

from __future__ import annotations

import doctest
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from finite_differences import numeric_jacobian
from op_specs import BY_NAME

import tape
from tape import func
from tape.function import Op, apply
from tape.ops import OPS

ROOT = Path(__file__).resolve().parents[1]
EPS = 1e-6


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


# ---- every op to second order ----------------------------------------------------------------


def test_every_public_op_has_a_row_for_the_order_2_check():
    missing = sorted(set(OPS) - set(BY_NAME))
    assert not missing, f"ops with no row in tests/op_specs.py, so no order-2 check: {missing}"


ORDER2 = [
    pytest.param(name, kw, id=f"{name}-{i}")
    for name in OPS
    if name in BY_NAME
    for i, kw in enumerate(BY_NAME[name].grid)
]


@pytest.mark.parametrize(("name", "kw"), ORDER2)
def test_gradgradcheck_every_op(name, kw):
    spec = BY_NAME[name]
    rng = np.random.default_rng(sum(map(ord, name)) + 7 * len(kw))
    xs = [tape.tensor(a, requires_grad=True) for a in spec.sample(rng, kw=kw)]
    assert tape.gradgradcheck(lambda *t: spec.call(*t, **kw), xs)


def _toy_op(name: str, forward, vjp) -> Op:
    op = Op(name, forward)
    op.defvjp(vjp)
    return op


def test_gradgradcheck_catches_a_vjp_whose_second_derivative_is_wrong():
    # d sin = g·cos(x), but with cos evaluated on the raw data the recorded VJP
    # treats cos(x) as a constant: first order right, second order missing −g·sin(x)
    sin = _toy_op(
        "toy_sin",
        lambda x: np.sin(x),  # a ufunc has no signature an Op can read on Python 3.10
        lambda g, out, x: g * np.cos(x.data if isinstance(x, tape.Tensor) else x),
    )
    x = tape.tensor([0.3, 1.1, -0.8], requires_grad=True)
    f = lambda t: apply(sin, (t,))
    assert tape.gradcheck(f, [x])
    with pytest.raises(tape.GradcheckError, match="second order"):
        tape.gradgradcheck(f, [x])


def test_gradgradcheck_catches_a_vjp_that_drops_the_upstream_gradient_from_the_graph():
    # np.asarray(g) cuts g out of the recorded backward: the dependence on x is
    # still recorded (through x**2), but not the one on the cotangent u
    cube = _toy_op("toy_cube", lambda x: x**3, lambda g, out, x: np.asarray(g) * 3 * x**2)
    x = tape.tensor([0.3, 1.1, -0.8], requires_grad=True)
    f = lambda t: apply(cube, (t,))
    assert tape.gradcheck(f, [x])
    with pytest.raises(tape.GradcheckError, match=r"input 1 below is the cotangent"):
        tape.gradgradcheck(f, [x])


def test_gradgradcheck_leaves_the_callers_inputs_alone():
    x = tape.tensor([0.5, 2.0], requires_grad=True)
    before = x.data.copy()
    assert tape.gradgradcheck(lambda t: (t.log() * t).sum(), [x])
    assert np.array_equal(x.data, before) and x.grad is None


# ---- create_graph=True -----------------------------------------------------------------------


def test_create_graph_returns_recorded_tensors_and_otherwise_arrays():
    x = tape.tensor([1.0, -2.0], requires_grad=True)
    (g,) = tape.grad((x**3).sum(), [x], create_graph=True)
    assert isinstance(g, tape.Tensor) and g.requires_grad and g.node is not None
    (plain,) = tape.grad((x**3).sum(), [x])
    assert type(plain) is np.ndarray
    np.testing.assert_allclose(g.data, plain)


def test_derivatives_to_the_fourth_order():
    x = tape.tensor(0.7, requires_grad=True)
    y = x**5
    expected = [5 * 0.7**4, 20 * 0.7**3, 60 * 0.7**2, 120 * 0.7]
    for k, value in enumerate(expected):
        (y,) = tape.grad(y, [x], create_graph=k < 3)
        assert float(y.data if isinstance(y, tape.Tensor) else y) == pytest.approx(value)


def test_second_pass_through_a_fan_out_counts_every_path():
    # f = x·e^x used twice; f'' = (x + 2) e^x
    x = tape.tensor(np.array([-1.0, 0.5]), requires_grad=True)
    y = x * x.exp()
    (g,) = tape.grad((y + y * 0).sum(), [x], create_graph=True)
    (h,) = tape.grad(g.sum(), [x])
    np.testing.assert_allclose(h, (x.data + 2) * np.exp(x.data), rtol=1e-14)


def test_gradient_of_the_gradient_norm_matches_differences():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((3, 4))
    a = rng.standard_normal((5, 3))

    def penalty(t):
        (g,) = tape.grad((tape.tensor(a) @ t).softmax().log().sum(), [t], create_graph=True)
        return (g * g).sum()

    leaf = tape.tensor(w, requires_grad=True)
    (analytic,) = tape.grad(penalty(leaf), [leaf])
    numeric = numeric_jacobian(lambda d: penalty(tape.tensor(d, requires_grad=True)).data, w)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


# ---- Hessians: by hand, by differences of gradients ------------------------------------------


A = np.array([[2.0, 1.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 2.0, 1.0]])
B = np.array([0.5, -1.0, 2.0])
FEATURES = np.array([[1.0, 0.5, -1.0], [0.3, -0.2, 0.8], [-1.2, 1.0, 0.1], [0.4, 0.4, 0.4]])
LABELS = np.array([1.0, -1.0, 1.0, -1.0])


def _logistic_hessian(w: np.ndarray) -> np.ndarray:
    z = LABELS * (FEATURES @ w)
    s = sigmoid(z)
    return (FEATURES.T * (s * (1 - s))) @ FEATURES  # Σᵢ σ(zᵢ)(1 − σ(zᵢ)) aᵢaᵢᵀ


def _softmax_hessian(x: np.ndarray) -> np.ndarray:
    s = np.exp(x) / np.exp(x).sum()
    return np.diag(s) - np.outer(s, s)  # of log Σ eˣ, and of −log softmax(x)[k] for any k


def _matmul_sum_hessian(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    eye = np.eye(n)
    # ∂/∂X_ij Σ(XX) = Σ_b X_jb + Σ_a X_ai, so H[i, j, p, q] = δ_jp + δ_iq
    return np.einsum("jp,iq->ijpq", eye, np.ones((n, n))) + np.einsum(
        "iq,jp->ijpq", eye, np.ones((n, n))
    )


HAND = [
    pytest.param(
        lambda x: (x**3).sum(), np.array([0.5, -1.0, 2.0]), lambda x: np.diag(6 * x), id="cubic"
    ),
    pytest.param(
        lambda x: 0.5 * (x * (tape.tensor(A) @ x)).sum() + (tape.tensor(B) * x).sum(),
        np.array([0.2, -0.4, 1.0]),
        lambda x: (A + A.T) / 2,
        id="quadratic-form",
    ),
    pytest.param(
        lambda x: x.exp().sum().log(),
        np.array([0.1, -0.7, 1.3, 0.0]),
        _softmax_hessian,
        id="logsumexp",
    ),
    pytest.param(
        lambda x: -x.log_softmax()[2],
        np.array([0.1, -0.7, 1.3, 0.0]),
        _softmax_hessian,
        id="cross-entropy",
    ),
    pytest.param(
        lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2,
        np.array([-1.2, 1.0]),
        lambda x: np.array(
            [[2 - 400 * x[1] + 1200 * x[0] ** 2, -400 * x[0]], [-400 * x[0], 200.0]]
        ),
        id="rosenbrock",
    ),
    pytest.param(
        lambda x: x[0] * x[1] * x[2],
        np.array([2.0, -3.0, 0.5]),
        lambda x: np.array([[0, x[2], x[1]], [x[2], 0, x[0]], [x[1], x[0], 0]]),
        id="triple-product",
    ),
    pytest.param(
        lambda x: (x * x).sum().sqrt(),
        np.array([3.0, -4.0, 1.0]),
        lambda x: (np.eye(3) - np.outer(x, x) / (x @ x)) / np.sqrt(x @ x),
        id="norm",
    ),
    pytest.param(
        lambda w: -(tape.tensor(LABELS) * (tape.tensor(FEATURES) @ w)).sigmoid().log().sum(),
        np.array([0.3, -0.5, 0.8]),
        _logistic_hessian,
        id="logistic-loss",
    ),
    pytest.param(
        lambda x: (x @ x).sum(),
        np.array([[1.0, 2.0], [-0.5, 0.3]]),
        _matmul_sum_hessian,
        id="sum-of-matrix-square",
    ),
]


@pytest.mark.parametrize(("f", "x", "hand"), HAND)
def test_hessian_matches_the_hand_derived_one(f, x, hand):
    h = func.hessian(f)(x)
    assert h.shape == x.shape + x.shape
    np.testing.assert_allclose(h, hand(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("f", "x", "hand"), HAND)
def test_hessian_matches_differences_of_gradients(f, x, hand):
    fd = numeric_jacobian(func.grad(f), x)
    np.testing.assert_allclose(func.hessian(f)(x), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("f", "x", "hand"), HAND)
def test_hessian_by_hand_via_tape_grad_create_graph(f, x, hand):
    """The engine road without tape.func: one recorded pass, then one pass per entry."""
    leaf = tape.tensor(x, requires_grad=True)
    (g,) = tape.grad(f(leaf), [leaf], create_graph=True)
    rows = [tape.grad(g.reshape(-1)[k], [leaf], retain_graph=True)[0] for k in range(x.size)]
    h = np.stack(rows).reshape(x.shape + x.shape)
    np.testing.assert_allclose(h, hand(x), rtol=1e-12, atol=1e-12)


# ---- Hessians of network expressions ---------------------------------------------------------


@pytest.fixture
def layer():
    """Data and parameters of a small layer, with every pre-activation well away from 0."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3))
    w = rng.standard_normal((3, 2))
    b = rng.standard_normal(2)
    y = rng.standard_normal((6, 2))
    z = x @ w + b
    assert np.abs(z).min() > 1e-3  # no kink within reach of the finite differences
    return x, w, b, y


def test_hessian_of_relu_mse_is_the_hand_derived_gauss_newton_block(layer):
    x, w, b, y = layer
    n, k = y.shape
    mask = (x @ w + b > 0).astype(float)

    def loss(w_, b_):
        return ((tape.tensor(x) @ w_ + b_).relu() - y).pow(2).mean()

    (hww, hwb), (hbw, hbb) = func.hessian(loss, argnums=(0, 1))(w, b)
    # ∂²L/∂w_ik∂w_jl = δ_kl · 2/(NK) Σ_n m_nk x_ni x_nj, and likewise for b
    expect_ww = np.einsum("kl,nk,ni,nj->ikjl", np.eye(k), mask, x, x) * 2 / (n * k)
    expect_wb = np.einsum("kl,nk,ni->ikl", np.eye(k), mask, x) * 2 / (n * k)
    expect_bb = np.diag(mask.sum(0)) * 2 / (n * k)
    assert hww.shape == (3, 2, 3, 2) and hwb.shape == (3, 2, 2) and hbw.shape == (2, 3, 2)
    np.testing.assert_allclose(hww, expect_ww, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hwb, expect_wb, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hbw, expect_wb.transpose(2, 0, 1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hbb, expect_bb, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "expression",
    [
        lambda x, w, b, y: (x @ w + b).relu().mean(),
        lambda x, w, b, y: ((x @ w + b).relu() - y).pow(2).mean(),
        lambda x, w, b, y: ((x @ w + b).tanh() - y).pow(2).sum(),
        lambda x, w, b, y: (x @ w + b).log_softmax(axis=1).mean(),
        lambda x, w, b, y: tape.maximum(x @ w + b, 0.1 * (x @ w + b)).sigmoid().mean(),
    ],
    ids=["relu-mean", "relu-mse", "tanh-sse", "log-softmax", "leaky-sigmoid"],
)
def test_hessian_of_layer_expressions_matches_differences_of_gradients(layer, expression):
    x, w, b, y = layer
    f = lambda w_: expression(tape.tensor(x), w_, tape.tensor(b), tape.tensor(y))
    h = func.hessian(f)(w)
    fd = numeric_jacobian(func.grad(f), w)
    np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)


def test_piecewise_linear_relu_mean_has_an_exactly_zero_hessian(layer):
    x, w, b, _ = layer
    h = func.hessian(lambda w_: (tape.tensor(x) @ w_ + b).relu().mean())(w)
    assert np.array_equal(h, np.zeros((3, 2, 3, 2)))


# ---- memory: a loss that contains a gradient, 1,000 times ------------------------------------


def _penalty_step_tape_grad(x, y, w, v):
    xt = tape.tensor(x, requires_grad=True)
    pred = (xt @ w).tanh() @ v
    (gx,) = tape.grad(pred.sum(), [xt], create_graph=True)
    return ((pred - y) ** 2).mean() + 0.1 * (gx**2).sum()


def _penalty_step_func_grad(x, y, w, v):
    gx = func.grad(lambda t: ((t @ w).tanh() @ v).sum())(x)  # closes over w, v: recorded
    pred = (tape.tensor(x) @ w).tanh() @ v
    return ((pred - y) ** 2).mean() + 0.1 * (gx**2).sum()


@pytest.mark.parametrize("step", [_penalty_step_tape_grad, _penalty_step_func_grad])
def test_memory_stays_flat_over_1000_gradient_penalty_steps(fresh_tape, step):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    w = tape.tensor(0.5 * rng.standard_normal((3, 4)), requires_grad=True)
    v = tape.tensor(0.5 * rng.standard_normal((4, 1)), requires_grad=True)
    lengths, memory = [], []
    tracemalloc.start()
    try:
        for i in range(1000):
            loss = step(x, y, w, v)
            loss.backward()
            with tape.no_grad():
                for p in (w, v):
                    p -= 0.01 * p.grad
                    p.zero_grad()
            del loss
            lengths.append(len(fresh_tape))
            if i % 200 == 199:
                gc.collect()
                memory.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # the backward released every record it visited, and nothing else was recorded
    assert max(lengths) == 0, f"live records after a step: {sorted(set(lengths))}"
    # a leaked graph per step would cost tens of kB a step: megabytes by the end; the
    # tape's list of weak references is compacted, so what remains is bounded
    growth = max(memory) - min(memory)
    assert growth < 256 * 1024, f"memory at every 200 steps: {memory}"


# ---- engine behaviour found while writing these tests ----------------------------------------


def test_tape_grad_stops_at_the_inputs_it_was_asked_about():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = (y**2).sum()
    tape.grad(z, [y])  # only ∂z/∂y: the record of y = x·2 is not needed
    (y * 3).sum().backward()  # so it must still be there, as in PyTorch
    np.testing.assert_allclose(x.grad, [6.0, 6.0])


# ---- the example -----------------------------------------------------------------------------


def test_the_newton_example_runs_and_converges():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hessian.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "converged" in done.stdout


def test_the_higher_order_page_runs_as_written():
    failed, attempted = doctest.testfile(
        str(ROOT / "docs" / "higher-order.md"),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert attempted >= 40 and failed == 0
