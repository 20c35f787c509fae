"""tape.nn: layers and losses, checked against NumPy, hand-derived gradients and gradcheck.

Every layer is built from recorded ops, so these tests are about the
bookkeeping a module adds (shapes, init, names, save/load) and about the
gradients coming out right: each layer goes through ``tape.gradcheck``, and
the seed network Linear → ReLU → MSE is compared with the formulas derived by
hand, ``dZ = 2/N (a − y) ⊙ (z > 0)``, ``dW = Xᵀ dZ``, ``db = Σ_rows dZ``,
``dX = dZ Wᵀ``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tape
from tape import nn


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _away_from_zero(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random values with |x| ≥ 0.1, so ReLU's kink is never inside a finite difference."""
    x = _rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.1, 0.5, x)


# ---- Linear ------------------------------------------------------------------------------


def test_linear_shapes_follow_the_seed_math() -> None:
    layer = nn.Linear(3, 2, seed=0)
    assert layer.weight.shape == (3, 2)  # (in, out): y = x @ W + b, no transpose
    assert layer.bias.shape == (2,)
    assert layer.weight.dtype == layer.bias.dtype == np.float64
    assert layer.weight.requires_grad and layer.bias.requires_grad
    assert layer.weight.is_leaf and layer.bias.is_leaf


def test_linear_forward_is_x_at_w_plus_b() -> None:
    layer = nn.Linear(3, 2, seed=0)
    x = _rng(1).standard_normal((4, 3))
    out = layer(x)
    np.testing.assert_allclose(out.data, x @ layer.weight.data + layer.bias.data)
    assert out.shape == (4, 2)
    assert out.requires_grad  # parameters need grad, so the output is on the tape


def test_linear_init_is_uniform_within_one_over_sqrt_in() -> None:
    layer = nn.Linear(100, 200, seed=0)
    bound = 1 / np.sqrt(100)
    for p in (layer.weight.data, layer.bias.data):
        assert np.all(np.abs(p) <= bound)
    w = layer.weight.data
    # 20,000 uniform draws: they fill the interval, with mean ≈ 0 and var ≈ bound²/3
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound
    assert abs(w.mean()) < 0.01 * bound
    np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.05)


def test_linear_seed_reproduces_and_distinguishes() -> None:
    a, b, c = nn.Linear(4, 3, seed=7), nn.Linear(4, 3, seed=7), nn.Linear(4, 3, seed=8)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)


def test_linear_float32_and_no_bias() -> None:
    layer = nn.Linear(3, 2, bias=False, dtype=np.float32, seed=0)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((5, 3), dtype=np.float32)
    out = layer(x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert layer.weight.grad.dtype == np.float32
    np.testing.assert_allclose(layer.weight.grad, np.full((3, 2), 5.0))  # Xᵀ 1 = column sums


def test_linear_gradients_are_the_hand_derived_ones() -> None:
    layer = nn.Linear(3, 2, seed=0)
    X = tape.tensor(_rng(1).standard_normal((4, 3)), requires_grad=True)
    dZ = _rng(2).standard_normal((4, 2))  # an arbitrary upstream gradient
    layer(X).backward(dZ)
    W = layer.weight.data
    np.testing.assert_allclose(layer.weight.grad, X.data.T @ dZ)  # dW = Xᵀ dZ
    np.testing.assert_allclose(layer.bias.grad, dZ.sum(axis=0))  # db: b fed every row
    np.testing.assert_allclose(X.grad, dZ @ W.T)  # dX = dZ Wᵀ


def test_linear_gradcheck() -> None:
    layer = nn.Linear(3, 2, seed=0)

    def f(x: tape.Tensor, w: tape.Tensor, b: tape.Tensor) -> tape.Tensor:
        layer.weight, layer.bias = w, b  # gradcheck hands in float64 copies
        return layer(x)

    x = tape.tensor(_rng(1).standard_normal((4, 3)), requires_grad=True)
    assert tape.gradcheck(f, [x, layer.weight, layer.bias])


def test_linear_rejects_wrong_feature_count_and_dtype() -> None:
    layer = nn.Linear(3, 2, seed=0)
    with pytest.raises(ValueError, match=r"Linear\(3, 2\).*float64\[4, 5\].*3 features"):
        layer(np.ones((4, 5)))
    with pytest.raises(TypeError, match="floating dtype"):
        nn.Linear(3, 2, dtype=np.int64)
    with pytest.raises(ValueError, match="positive"):
        nn.Linear(0, 2)


# ---- activations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "reference"),
    [
        (nn.ReLU(), lambda x: np.maximum(x, 0)),
        (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
        (nn.Tanh(), np.tanh),
    ],
    ids=["ReLU", "Sigmoid", "Tanh"],
)
def test_activation_forward_and_gradcheck(module: nn.Module, reference) -> None:
    x = tape.tensor(_away_from_zero((4, 3)), requires_grad=True)
    np.testing.assert_allclose(module(x).data, reference(x.data))
    assert tape.gradcheck(module, [x])
    assert module.parameters() == []


def test_relu_gradient_at_zero_is_zero() -> None:
    x = tape.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    nn.ReLU()(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])  # relu'(0) = 0, as in PyTorch


# ---- losses -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_value_and_gradient(reduction: str) -> None:
    a = tape.tensor(_rng(0).standard_normal((4, 2)), requires_grad=True)
    y = _rng(1).standard_normal((4, 2))
    loss = nn.MSELoss(reduction)(a, y)
    squared = (a.data - y) ** 2
    np.testing.assert_allclose(
        loss.item(), squared.mean() if reduction == "mean" else squared.sum()
    )
    loss.backward()
    scale = 2 / a.size if reduction == "mean" else 2.0  # the 2/N of the seed formula
    np.testing.assert_allclose(a.grad, scale * (a.data - y))
    assert tape.gradcheck(lambda t: nn.MSELoss(reduction)(t, y), [a])


def test_mse_none_keeps_each_entry() -> None:
    loss = nn.MSELoss("none")(tape.tensor([1.0, 2.0]), np.array([0.0, 0.0]))
    np.testing.assert_array_equal(loss.data, [1.0, 4.0])


def test_mse_refuses_to_broadcast_mismatched_shapes() -> None:
    # (4, 1) against (4,) would broadcast to (4, 4): sixteen wrong comparisons
    with pytest.raises(ValueError, match=r"float64\[4, 1\].*float64\[4\].*same shape"):
        nn.MSELoss()(tape.tensor(np.zeros((4, 1))), np.zeros(4))


def test_loss_rejects_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="reduction must be one of mean, sum, none"):
        nn.MSELoss("average")
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="batchmean")


def _cross_entropy_reference(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row −log softmax[label], computed with log-sum-exp in plain NumPy."""
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return lse - logits[np.arange(len(labels)), labels]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_value(reduction: str) -> None:
    logits = _rng(0).standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    per_row = _cross_entropy_reference(logits, labels)
    expected = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    loss = nn.CrossEntropyLoss(reduction)(tape.tensor(logits), labels)
    np.testing.assert_allclose(loss.data, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_is_softmax_minus_onehot(reduction: str) -> None:
    logits = tape.tensor(_rng(0).standard_normal((5, 4)), requires_grad=True)
    labels = np.array([0, 3, 1, 1, 2])
    nn.CrossEntropyLoss(reduction)(logits, labels).backward()
    e = np.exp(logits.data - logits.data.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    onehot = np.eye(4)[labels]
    scale = 1 / 5 if reduction == "mean" else 1.0
    np.testing.assert_allclose(logits.grad, scale * (softmax - onehot))
    fresh = tape.tensor(logits.data, requires_grad=True)
    assert tape.gradcheck(lambda t: nn.CrossEntropyLoss(reduction)(t, labels), [fresh])


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    # a naive softmax would compute exp(1000) = inf and give nan
    logits = tape.tensor([[1000.0, -1000.0, 0.0], [0.0, 1000.0, 1000.0]], requires_grad=True)
    loss = nn.CrossEntropyLoss()(logits, np.array([0, 1]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), np.log(2) / 2)  # row 1: 0, row 2: log 2
    assert np.all(np.isfinite(logits.grad))
    np.testing.assert_allclose(logits.grad, [[0, 0, 0], [0, -0.25, 0.25]], atol=1e-12)


def test_cross_entropy_accepts_integer_tensor_targets() -> None:
    logits = tape.tensor(_rng(0).standard_normal((3, 4)))
    labels = np.array([1, 0, 3])
    a = nn.CrossEntropyLoss()(logits, tape.tensor(labels)).item()
    b = nn.CrossEntropyLoss()(logits, labels.astype(np.int32)).item()
    assert a == pytest.approx(_cross_entropy_reference(logits.data, labels).mean())
    assert a == b


def test_cross_entropy_rejects_bad_targets() -> None:
    logits = tape.tensor(np.zeros((3, 4)))
    loss = nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="integer class indices"):
        loss(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="integer class indices"):
        loss(logits, np.eye(4)[[0, 1, 2]])  # one-hot rows are not class indices
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        loss(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="4 classes"):
        loss(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="4 classes"):
        loss(logits, np.array([0, -1, 2]))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        loss(tape.tensor(np.zeros(4)), np.array([1]))


# ---- the seed network, as modules ---------------------------------------------------------


def test_seed_network_with_modules_matches_the_hand_derived_gradients() -> None:
    rng = _rng(3)
    X = rng.standard_normal((4, 3))
    y = rng.standard_normal((4, 2))
    lin = nn.Linear(3, 2, seed=0)
    loss = nn.MSELoss()(nn.ReLU()(lin(X)), y)
    loss.backward()

    W, b = lin.weight.data, lin.bias.data
    z = X @ W + b
    a = np.maximum(z, 0)
    dZ = 2 / a.size * (a - y) * (z > 0)
    np.testing.assert_allclose(loss.item(), np.mean((a - y) ** 2))
    np.testing.assert_allclose(lin.weight.grad, X.T @ dZ)
    np.testing.assert_allclose(lin.bias.grad, dZ.sum(axis=0))


def test_sequential_applies_in_order_and_gradchecks() -> None:
    net = nn.Sequential(nn.Linear(3, 5, seed=0), nn.Tanh(), nn.Linear(5, 2, seed=1))
    x = _rng(1).standard_normal((4, 3))
    manual = np.tanh(x @ net[0].weight.data + net[0].bias.data)
    manual = manual @ net[2].weight.data + net[2].bias.data
    np.testing.assert_allclose(net(x).data, manual)
    assert len(net) == 3 and list(net) == net.layers

    params = net.parameters()

    def f(*ps: tape.Tensor) -> tape.Tensor:
        net[0].weight, net[0].bias, net[2].weight, net[2].bias = ps
        return net(x)

    assert tape.gradcheck(f, params)


def test_sequential_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="argument 1 is a function"):
        nn.Sequential(nn.ReLU(), lambda x: x.tanh())


# ---- Module bookkeeping -------------------------------------------------------------------


class _TwoTower(nn.Module):
    """A module with a parameter of its own, a list of sub-modules and a tied weight."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = tape.tensor(1.0, requires_grad=True)
        self.towers = [nn.Linear(2, 2, seed=0), nn.Linear(2, 2, seed=1)]
        self.head = nn.Sequential(nn.Linear(2, 1, seed=2), nn.Sigmoid())
        self.constant = tape.tensor(np.ones(2))  # no grad: not a parameter
        self.towers[1].weight = self.towers[0].weight  # tied

    def forward(self, x: object) -> tape.Tensor:
        return self.head((self.towers[0](x) + self.towers[1](x)) * self.scale)


def test_named_parameters_order_names_and_tied_weights() -> None:
    m = _TwoTower()
    names = [name for name, _ in m.named_parameters()]
    assert names == [
        "scale",
        "towers.0.weight",
        "towers.0.bias",
        "towers.1.bias",  # towers.1.weight is towers.0.weight: listed once
        "head.0.weight",
        "head.0.bias",
    ]
    assert [id(p) for p in m.parameters()] == [id(p) for _, p in m.named_parameters()]
    assert len({id(p) for p in m.parameters()}) == len(names)


def test_tied_weight_collects_both_uses() -> None:
    m = _TwoTower()
    x = _rng(0).standard_normal((3, 2))
    m(x).sum().backward()
    w = m.towers[0].weight

    def f(w: tape.Tensor) -> tape.Tensor:
        m.towers[0].weight = m.towers[1].weight = w
        return m(x).sum()

    grad = tape.grad(f(tape.tensor(w.data, requires_grad=True)), [m.towers[0].weight])[0]
    np.testing.assert_allclose(w.grad, grad)
    assert tape.gradcheck(f, [tape.tensor(w.data, requires_grad=True)])


def test_zero_grad_sets_every_grad_to_none() -> None:
    m = _TwoTower()
    m(np.ones((1, 2))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_train_and_eval_set_the_flag_everywhere() -> None:
    m = _TwoTower()
    assert all(sub.training for sub in m.modules())
    assert m.eval() is m
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())
    assert len(list(m.modules())) == 6  # itself, 2 towers, the Sequential and its 2 layers


def test_module_without_forward_says_so() -> None:
    # refused when the module is made, before anything is called
    with pytest.raises(
        TypeError, match=r"^Empty is a tape\.nn\.Module without forward: define forward\(self, "
    ):
        type("Empty", (nn.Module,), {})()


def test_repr_shows_the_structure() -> None:
    net = nn.Sequential(nn.Linear(3, 2, seed=0), nn.ReLU(), nn.MSELoss("sum"))
    text = repr(net)
    assert "(0): Linear(in_features=3, out_features=2, bias=True)" in text
    assert "(1): ReLU()" in text
    assert "(2): MSELoss(reduction='sum')" in text


# ---- saving and loading ----------------------------------------------------------------------


def _mlp(seed: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8, seed=seed), nn.ReLU(), nn.Linear(8, 3, seed=seed + 1))


def test_save_then_load_reproduces_the_model(tmp_path: Path) -> None:
    path = tmp_path / "params.npz"
    source, target = _mlp(0), _mlp(10)
    x = _rng(0).standard_normal((5, 4))
    assert not np.allclose(source(x).data, target(x).data)
    source.save(path)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays: no pickle needed
        assert sorted(archive.files) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    weight_before = target[0].weight
    target.load(path)
    np.testing.assert_array_equal(source(x).data, target(x).data)
    assert target[0].weight is weight_before  # copied in place: optimizers keep working


def test_load_rejects_a_mismatched_file_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    nn.Sequential(nn.Linear(4, 8, seed=0), nn.ReLU(), nn.Linear(8, 2, seed=1)).save(path)
    target = _mlp(0)
    before = [p.data.copy() for p in target.parameters()]
    with pytest.raises(ValueError, match=r"'2.weight' is float64\[8, 2\].*float64\[8, 3\]"):
        target.load(path)
    for p, old in zip(target.parameters(), before):
        np.testing.assert_array_equal(p.data, old)  # 0.weight was not overwritten first
    with pytest.raises(ValueError, match=r"missing: \['2.bias'\]"):
        target.load_state_dict({k: v for k, v in target.state_dict().items() if k != "2.bias"})


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, **{"0.weight": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        _mlp(0).load(path)
