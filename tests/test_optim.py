"""tape.optim: first steps against the published update rules, computed by hand.

Each rule is written out in NumPy next to the optimizer it checks (PyTorch's
SGD with momentum and weight decay; Adam as in Kingma & Ba, with bias
correction), then a training loop must make its loss fall, and the
``zero_grad`` tests show what accumulation means for a training loop: grads
add up until zeroed, and forgetting to zero turns plain SGD into a momentum
method whose velocity never decays, which oscillates instead of converging.
"""

from __future__ import annotations

import numpy as np
import pytest

import tape
from tape import nn, optim


def _quadratic_problem(seed: int = 0) -> tuple[tape.Tensor, np.ndarray, np.ndarray]:
    """A parameter and the data of ``loss(w) = Σ (A w − c)²``, whose gradient changes with w."""
    rng = np.random.default_rng(seed)
    w = tape.tensor(rng.standard_normal(3), requires_grad=True)
    return w, rng.standard_normal((5, 3)), rng.standard_normal(5)


def _loss(w: tape.Tensor, A: np.ndarray, c: np.ndarray) -> tape.Tensor:
    r = A @ w - c
    return (r * r).sum()


def _grad(w: np.ndarray, A: np.ndarray, c: np.ndarray) -> np.ndarray:
    return 2 * A.T @ (A @ w - c)  # the same gradient, by hand


def _steps(opt: optim.Optimizer, w: tape.Tensor, A: np.ndarray, c: np.ndarray, n: int) -> list:
    seen = []
    for _ in range(n):
        opt.zero_grad()
        _loss(w, A, c).backward()
        opt.step()
        seen.append(w.data.copy())
    return seen


# ---- SGD -------------------------------------------------------------------------------------


def test_sgd_first_step_is_w_minus_lr_grad() -> None:
    w, A, c = _quadratic_problem()
    w0 = w.data.copy()
    (w1,) = _steps(optim.SGD([w], lr=0.01), w, A, c, 1)
    np.testing.assert_allclose(w1, w0 - 0.01 * _grad(w0, A, c))


def test_sgd_momentum_matches_the_rule_by_hand() -> None:
    # v ← μ v + g (v₁ = g₁);  p ← p − lr v
    w, A, c = _quadratic_problem()
    lr, mu = 0.01, 0.9
    p, v = w.data.copy(), None
    expected = []
    for _ in range(4):
        g = _grad(p, A, c)
        v = g if v is None else mu * v + g
        p = p - lr * v
        expected.append(p)
    got = _steps(optim.SGD([w], lr=lr, momentum=mu), w, A, c, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_sgd_weight_decay_adds_wd_times_p_to_the_gradient() -> None:
    w, A, c = _quadratic_problem()
    w0 = w.data.copy()
    (w1,) = _steps(optim.SGD([w], lr=0.01, weight_decay=0.1), w, A, c, 1)
    np.testing.assert_allclose(w1, w0 - 0.01 * (_grad(w0, A, c) + 0.1 * w0))


def test_sgd_momentum_and_weight_decay_together() -> None:
    w, A, c = _quadratic_problem()
    lr, mu, wd = 0.01, 0.5, 0.2
    p, v = w.data.copy(), None
    expected = []
    for _ in range(3):
        g = _grad(p, A, c) + wd * p  # decay enters before the velocity
        v = g if v is None else mu * v + g
        p = p - lr * v
        expected.append(p)
    got = _steps(optim.SGD([w], lr=lr, momentum=mu, weight_decay=wd), w, A, c, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# ---- Adam ------------------------------------------------------------------------------------


def test_adam_matches_the_published_rule_by_hand() -> None:
    w, A, c = _quadratic_problem()
    lr, (b1, b2), eps = 0.05, (0.9, 0.999), 1e-8
    p = w.data.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    expected = []
    for t in range(1, 6):
        g = _grad(p, A, c)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        expected.append(p)
    got = _steps(optim.Adam([w], lr=lr, betas=(b1, b2), eps=eps), w, A, c, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_adam_first_step_is_about_lr_whatever_the_gradient_scale() -> None:
    # bias correction: m̂₁ = g and v̂₁ = g², so the first step is lr · g / (|g| + ε)
    w = tape.tensor([1.0, 1.0, 1.0], requires_grad=True)
    scales = np.array([1e3, 1.0, -1e-3])
    opt = optim.Adam([w], lr=0.01)
    (w * scales).sum().backward()
    opt.step()
    np.testing.assert_allclose(w.data, 1 - 0.01 * np.sign(scales), rtol=1e-5)
    # without the correction the first step would be lr·(1 − β₁)g / √((1 − β₂)g²) ≈ 3.16·lr
    uncorrected = 0.01 * 0.1 / np.sqrt(0.001)
    assert uncorrected == pytest.approx(0.0316, rel=1e-2)
    assert opt.state[0]["step"] == 1


def test_adam_weight_decay_is_l2_added_to_the_gradient() -> None:
    w, A, c = _quadratic_problem()
    w0 = w.data.copy()
    (w1,) = _steps(optim.Adam([w], lr=0.1, weight_decay=0.5), w, A, c, 1)
    g = _grad(w0, A, c) + 0.5 * w0
    np.testing.assert_allclose(w1, w0 - 0.1 * g / (np.abs(g) + 1e-8))


# ---- what every optimizer promises -----------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1)]
)
def test_step_updates_in_place_and_records_nothing(make, fresh_tape: tape.Tape) -> None:
    w = tape.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    buffer = w.data
    opt = make([w])
    (w * w).sum().backward()
    before = len(fresh_tape)
    opt.step()
    assert len(fresh_tape) == before
    assert w.data is buffer  # same array: views and other holders see the update
    assert w.is_leaf and w.requires_grad and w.node is None
    assert w.dtype == np.float32  # float64 hyper-parameters do not promote the parameter
    assert not np.allclose(w.data, 1.0)
    assert tape.is_grad_enabled()  # no_grad was left again


@pytest.mark.parametrize(
    "make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1)]
)
@pytest.mark.parametrize("mismatch", [".grad", "state", "int data", "read-only data"])
def test_a_step_that_raises_changes_no_parameter_and_no_state(make, mismatch) -> None:
    a = tape.tensor([1.0, 2.0], requires_grad=True, name="a")
    b = tape.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, name="b")
    opt = make([a, b])
    if mismatch == "state":  # one good step makes the state, then b changes shape
        (a.sum() + b.sum()).backward()
        opt.step()
        b.grad = None
        b.data = b.data.reshape(4)
        (a.sum() + b.sum()).backward()
    elif mismatch == ".grad":  # b changes shape while its .grad is still the old one
        (a.sum() + b.sum()).backward()
        b.data = b.data.reshape(4)
    else:  # same shape, but a step cannot write into it
        (a.sum() + b.sum()).backward()
        b.data = np.ones(4, dtype=np.int64) if mismatch == "int data" else np.ones(4)
        b.data.flags.writeable = mismatch == "int data"
    a_before = a.data.copy()
    state_before = [{k: np.copy(v) for k, v in s.items()} for s in opt.state]
    kind = ValueError if mismatch in (".grad", "state") else TypeError
    with pytest.raises(kind, match=r"step: parameter 1 is 'b' \w+\[4\]"):
        opt.step()
    np.testing.assert_array_equal(a.data, a_before)  # parameter 0 came first, and was not updated
    for before, after in zip(state_before, opt.state):
        assert before.keys() == after.keys()
        assert all(np.array_equal(before[k], after[k]) for k in before)


def test_step_skips_parameters_without_a_gradient() -> None:
    used = tape.tensor([1.0], requires_grad=True)
    unused = tape.tensor([1.0], requires_grad=True)
    opt = optim.Adam([used, unused], lr=0.1)
    (used * 2).sum().backward()
    opt.step()
    assert unused.data[0] == 1.0 and opt.state[1] == {}
    assert used.data[0] != 1.0


def test_optimizer_zero_grad_sets_none() -> None:
    w = tape.tensor([1.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    (w * 3).sum().backward()
    opt.zero_grad()
    assert w.grad is None


def test_optimizers_reject_bad_parameters_and_settings() -> None:
    w = tape.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([tape.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match=r"computed by 'mul'.*only leaves"):
        optim.SGD([w * 2], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        optim.Adam([w, w])
    with pytest.raises(TypeError, match="ndarray, not a Tensor"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="lr must be at least 0"):
        optim.SGD([w], lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([w], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"betas\[1\] must be at least 0.0 and below 1.0"):
        optim.Adam([w], betas=(0.9, 1.0))


# ---- training loops --------------------------------------------------------------------------


def test_training_a_small_regression_net_makes_the_loss_fall() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (64, 1))
    y = np.sin(X)
    model = nn.Sequential(nn.Linear(1, 16, seed=0), nn.Tanh(), nn.Linear(16, 1, seed=1))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    assert losses[-1] < 0.01


def test_training_a_classifier_with_adam_separates_the_classes() -> None:
    rng = np.random.default_rng(1)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = np.repeat(np.arange(3), 30)
    X = centers[labels] + 0.5 * rng.standard_normal((90, 2))
    model = nn.Sequential(nn.Linear(2, 8, seed=0), nn.ReLU(), nn.Linear(8, 3, seed=1))
    opt = optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(model(X), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    with tape.no_grad():
        predicted = model(X).data.argmax(axis=1)
    assert (predicted == labels).mean() >= 0.97


# ---- zero_grad: grads accumulate until zeroed ------------------------------------------------


def test_grads_accumulate_until_zeroed() -> None:
    model = nn.Linear(3, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3))
    model(x).sum().backward()
    once = model.weight.grad.copy()
    model(x).sum().backward()
    np.testing.assert_allclose(model.weight.grad, 2 * once)  # the second pass was added
    model.zero_grad()
    assert model.weight.grad is None
    model(x).sum().backward()
    np.testing.assert_allclose(model.weight.grad, once)


def test_micro_batches_accumulate_to_the_full_batch_gradient() -> None:
    # the useful side of +=: four backward passes on quarters of a batch, each loss scaled by
    # 1/4, leave the same .grad as one pass on the whole batch, so one step is the same step
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    whole, pieces = nn.Linear(3, 2, seed=0), nn.Linear(3, 2, seed=0)
    nn.MSELoss()(whole(X), y).backward()
    for part in np.split(np.arange(8), 4):
        (nn.MSELoss()(pieces(X[part]), y[part]) / 4).backward()
    for a, b in zip(whole.parameters(), pieces.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12)


def _minimise_half_w_squared(zero_grad: bool, momentum: float = 0.0) -> np.ndarray:
    """Run SGD on ``½ w²`` (gradient ``w``) from w = 1 and return w after each step."""
    w = tape.tensor([1.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=momentum)
    path = []
    for _ in range(60):
        if zero_grad:
            opt.zero_grad()
        (0.5 * w * w).sum().backward()
        opt.step()
        path.append(w.data[0])
    return np.array(path)


def test_forgetting_zero_grad_breaks_training() -> None:
    right = _minimise_half_w_squared(zero_grad=True)
    np.testing.assert_allclose(right, 0.9 ** np.arange(1, 61))  # w ← 0.9 w: converges
    assert abs(right[-1]) < 0.01

    # without zero_grad, .grad at step k is the sum of every gradient so far, so the
    # step keeps pushing in old directions: w overshoots, swings back, and never settles
    wrong = _minimise_half_w_squared(zero_grad=False)
    assert np.abs(wrong[-20:]).max() > 0.9
    assert np.any(wrong < 0) and np.any(wrong[-20:] > 0)  # it oscillates around 0

    # that is exactly SGD with momentum 1: a velocity that never decays. Real momentum
    # (0 < μ < 1) is the optimizer's own buffer, kept while .grad is zeroed every step
    np.testing.assert_allclose(wrong, _minimise_half_w_squared(zero_grad=True, momentum=1.0))
    assert abs(_minimise_half_w_squared(zero_grad=True, momentum=0.5)[-1]) < 0.01
