"""Backprop written by hand, module by module, then the same network on the engine.

The classic way to learn backprop (the fastai course does it this way) is to
give every layer a ``backward`` that receives the gradient of its output and
returns the gradient of its input, storing its parameters' gradients on the
way. Here that is done in plain NumPy for Linear → ReLU → Linear → MSE; then
the same network, with the same weights, is built from ``tape.nn`` modules and
differentiated by the engine. The gradients must agree to rounding error.

The hand-written rules are the seed formulas:

    MSE:    d loss / d pred = 2/N (pred − y)          (N entries of pred)
    ReLU:   d loss / d z    = d loss / d a ⊙ (z > 0)
    Linear: dW = Xᵀ dout,  db = dout.sum(0),  dX = dout Wᵀ

    python examples/fastai_backprop.py
"""

from __future__ import annotations

import numpy as np

import tape
from tape import nn

# ---- by hand: each layer remembers its input and undoes itself ---------------------------


class HandLinear:
    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b = W, b

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.X = X  # the backward needs the input it saw
        return X @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = self.X.T @ dout  # each W[i, j] met X[n, i] in every row n
        self.db = dout.sum(axis=0)  # b was added to every row
        return dout @ self.W.T  # the gradient for the layer below


class HandReLU:
    def __call__(self, z: np.ndarray) -> np.ndarray:
        self.z = z
        return np.maximum(z, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (self.z > 0)  # passes where the unit was on; relu'(0) = 0


class HandMSE:
    def __call__(self, pred: np.ndarray, y: np.ndarray) -> float:
        self.pred, self.y = pred, y
        return float(np.mean((pred - y) ** 2))

    def backward(self) -> np.ndarray:
        return 2 / self.pred.size * (self.pred - self.y)  # the loss is the start: no dout


class HandModel:
    def __init__(self, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray) -> None:
        self.layers = [HandLinear(W1, b1), HandReLU(), HandLinear(W2, b2)]
        self.loss = HandMSE()

    def __call__(self, X: np.ndarray, y: np.ndarray) -> float:
        for layer in self.layers:
            X = layer(X)
        return self.loss(X, y)

    def backward(self) -> None:
        grad = self.loss.backward()
        for layer in reversed(self.layers):  # the reverse walk, written out
            grad = layer.backward(grad)
        self.dX = grad


def main() -> None:
    rng = np.random.default_rng(42)
    n, n_in, n_hidden = 64, 10, 16
    X = rng.standard_normal((n, n_in))
    y = X[:, :1] * X[:, 1:2] + np.sin(X[:, 2:3])  # any target of shape (n, 1)

    # The engine's network; its initial weights are copied into the hand-written one.
    lin1, lin2 = nn.Linear(n_in, n_hidden, seed=0), nn.Linear(n_hidden, 1, seed=1)
    model = nn.Sequential(lin1, nn.ReLU(), lin2)
    hand = HandModel(
        lin1.weight.data.copy(),
        lin1.bias.data.copy(),
        lin2.weight.data.copy(),
        lin2.bias.data.copy(),
    )

    hand_loss = hand(X, y)
    hand.backward()

    Xt = tape.tensor(X, requires_grad=True)  # ask for dX too, to compare the whole chain
    loss = nn.MSELoss()(model(Xt), y)
    loss.backward()

    print(f"Linear({n_in}→{n_hidden}) → ReLU → Linear({n_hidden}→1) → MSE, batch of {n}")
    print(f"loss: by hand {hand_loss:.12f}   engine {loss.item():.12f}")
    pairs = [
        ("W1", hand.layers[0].dW, lin1.weight.grad),
        ("b1", hand.layers[0].db, lin1.bias.grad),
        ("W2", hand.layers[2].dW, lin2.weight.grad),
        ("b2", hand.layers[2].db, lin2.bias.grad),
        ("X", hand.dX, Xt.grad),
    ]
    all_equal = np.isclose(hand_loss, loss.item(), rtol=1e-12)
    for name, by_hand, engine in pairs:
        diff = np.abs(by_hand - engine).max()
        equal = by_hand.shape == engine.shape and np.allclose(by_hand, engine, rtol=1e-10)
        all_equal = all_equal and equal
        shape = str(by_hand.shape)
        print(f"d loss/d{name:3} {shape:9} max |hand − engine| = {diff:.1e}  equal: {equal}")
    print(f"all gradients equal: {all_equal}")


if __name__ == "__main__":
    main()
