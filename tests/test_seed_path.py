"""The seed path, Linear → ReLU → MSE, against the gradients derived by hand.

With ``z = X W + b``, ``a = relu(z)`` and ``loss = mean((a − y)²)`` over the
``N`` entries of ``a``, the chain rule gives

    dZ = 2/N (a − y) ⊙ (z > 0)      (relu'(0) = 0)
    dW = Xᵀ dZ,   db = Σ_rows dZ,   dX = dZ Wᵀ

and the engine must reproduce these to rounding error.
"""

from __future__ import annotations

import numpy as np
import pytest

import tape


def _data(dtype: type = np.float64, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, 3)).astype(dtype)
    W = rng.standard_normal((3, 2)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    y = rng.standard_normal((4, 2)).astype(dtype)
    return X, W, b, y


def _hand_derived(X, W, b, y):
    """The seed formulas, in plain NumPy."""
    z = X @ W + b
    a = np.maximum(z, 0)
    N = a.size
    dZ = 2 / N * (a - y) * (z > 0)
    return {
        "loss": np.mean((a - y) ** 2),
        "z": z,
        "dZ": dZ,
        "dW": X.T @ dZ,
        "db": dZ.sum(0),
        "dX": dZ @ W.T,
    }


def _engine(X, W, b, y):
    Xt = tape.tensor(X, requires_grad=True)
    Wt = tape.tensor(W, requires_grad=True)
    bt = tape.tensor(b, requires_grad=True)
    loss = ((Xt @ Wt + bt).relu() - y).pow(2).mean()
    loss.backward()
    return loss, Xt, Wt, bt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_engine_matches_hand_derived_gradients_float64(seed):
    X, W, b, y = _data(np.float64, seed)
    want = _hand_derived(X, W, b, y)
    # both relu branches are exercised, or the mask would go untested
    assert (want["z"] > 0).any() and (want["z"] < 0).any()

    loss, Xt, Wt, bt = _engine(X, W, b, y)

    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), want["loss"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(bt.grad, want["db"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Xt.grad, want["dX"], rtol=0, atol=1e-12)
    assert Wt.grad.shape == (3, 2) and bt.grad.shape == (2,) and Xt.grad.shape == (4, 3)


def test_mean_divides_by_the_number_of_output_entries():
    X, W, b, y = _data()
    _, _, Wt, _ = _engine(X, W, b, y)
    want = _hand_derived(X, W, b, y)
    # N = 8 here: dividing by the batch size 4 instead would double every gradient
    assert want["z"].size == 8
    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=0, atol=1e-12)
    assert not np.allclose(Wt.grad, 2 * want["dW"])


def test_targets_as_tensor_give_the_same_gradients_and_their_own():
    X, W, b, y = _data(seed=3)
    want = _hand_derived(X, W, b, y)
    Xt = tape.tensor(X)
    Wt = tape.tensor(W, requires_grad=True)
    bt = tape.tensor(b, requires_grad=True)
    yt = tape.tensor(y, requires_grad=True)
    ((Xt @ Wt + bt).relu() - yt).pow(2).mean().backward()
    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(bt.grad, want["db"], rtol=0, atol=1e-12)
    # d loss / d y = −2/N (a − y), on every entry (no relu mask on the target)
    a = np.maximum(want["z"], 0)
    np.testing.assert_allclose(yt.grad, -2 / a.size * (a - y), rtol=0, atol=1e-12)
    assert Xt.grad is None  # X did not ask for a gradient


def test_tape_grad_agrees_with_backward_on_the_seed_path():
    X, W, b, y = _data(seed=4)
    want = _hand_derived(X, W, b, y)
    Xt = tape.tensor(X, requires_grad=True)
    Wt = tape.tensor(W, requires_grad=True)
    bt = tape.tensor(b, requires_grad=True)
    loss = ((Xt @ Wt + bt).relu() - y).pow(2).mean()
    dX, dW, db = tape.grad(loss, [Xt, Wt, bt])
    np.testing.assert_allclose(dW, want["dW"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, want["db"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dX, want["dX"], rtol=0, atol=1e-12)


def test_broadcast_form_of_dW_equals_the_matrix_form():
    X, W, b, y = _data(seed=5)
    dZ = _hand_derived(X, W, b, y)["dZ"]
    # dW[i, j] = Σ_n X[n, i] dZ[n, j]: an outer product per row, summed over the batch
    broadcast = (X[:, :, None] * dZ[:, None, :]).sum(0)
    assert broadcast.shape == (3, 2)
    np.testing.assert_allclose(broadcast, X.T @ dZ, rtol=0, atol=1e-12)


def test_engine_finds_dW_through_a_broadcast_product_too():
    """Write ``X @ W`` as a broadcast product; the engine's unbroadcast must sum it back."""
    X, W, b, y = _data(seed=6)
    want = _hand_derived(X, W, b, y)
    Wt = tape.tensor(W, requires_grad=True)
    bt = tape.tensor(b, requires_grad=True)
    z = (X[:, :, None] * Wt[None, :, :]).sum(1) + bt
    ((z.relu() - y) ** 2).mean().backward()
    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Wt.grad, (X[:, :, None] * want["dZ"][:, None, :]).sum(0), atol=1e-12)
    np.testing.assert_allclose(bt.grad, want["db"], rtol=0, atol=1e-12)


def test_relu_gradient_at_exactly_zero_is_zero():
    # small integers keep every product exact, so z hits 0.0 exactly
    X = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [2.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
    W = np.array([[1.0, -1.0], [1.0, 2.0], [-2.0, 1.0]])
    b = np.array([-3.0, -1.0])
    y = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25], [3.0, 1.0]])
    want = _hand_derived(X, W, b, y)
    z = want["z"]
    assert (z == 0).sum() >= 2 and (z > 0).any() and (z < 0).any()

    _, Xt, Wt, bt = _engine(X, W, b, y)

    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(bt.grad, want["db"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Xt.grad, want["dX"], rtol=0, atol=1e-12)
    # and the convention matters here: relu'(0) = 1 would give a different db
    a = np.maximum(z, 0)
    db_if_one = (2 / a.size * (a - y) * (z >= 0)).sum(0)
    assert not np.allclose(bt.grad, db_if_one)


def test_float32_in_gives_float32_gradients_out():
    X, W, b, y = _data(np.float32, seed=7)
    loss, Xt, Wt, bt = _engine(X, W, b, y)
    assert loss.dtype == np.float32
    for t in (Xt, Wt, bt):
        assert isinstance(t.grad, np.ndarray)
        assert t.grad.dtype == np.float32
        assert t.grad.shape == t.shape
    want = _hand_derived(*(a.astype(np.float64) for a in (X, W, b, y)))
    np.testing.assert_allclose(Wt.grad, want["dW"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bt.grad, want["db"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Xt.grad, want["dX"], rtol=1e-5, atol=1e-6)


def test_float32_parameters_with_float64_targets_keep_float32_gradients():
    X, W, b, _ = _data(np.float32, seed=8)
    y = np.random.default_rng(8).standard_normal((4, 2))  # float64 target
    _, Xt, Wt, bt = _engine(X, W, b, y)
    assert Wt.grad.dtype == bt.grad.dtype == Xt.grad.dtype == np.float32


def test_seed_path_records_one_node_per_op(fresh_tape):
    X, W, b, y = _data(seed=9)
    Xt = tape.tensor(X)
    Wt = tape.tensor(W, requires_grad=True)
    bt = tape.tensor(b, requires_grad=True)
    loss = ((Xt @ Wt + bt).relu() - y).pow(2).mean()
    names = [getattr(n.op, "name", n.op) for n in fresh_tape]
    assert names == ["matmul", "add", "relu", "sub", "pow", "mean"]
    assert loss.node is list(fresh_tape)[-1]
