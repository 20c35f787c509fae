"""The gradients of a Linear layer, derived by hand and checked against the engine.

A Linear layer computes ``out = X @ W + b`` for a batch ``X`` of B rows. Given
the gradient ``dout = d loss / d out`` that arrives from whatever follows the
layer, the chain rule gives

    dW = X.T @ dout        each W[i, j] multiplies X[n, i] in every row n
    db = dout.sum(axis=0)  b is added to every row, so its B gradients add up
    dX = dout @ W.T        each X[n, i] feeds out[n, j] through W[i, j]

This script computes all three by hand, asks the engine for them with
``out.backward(dout)``, and compares; then it shows the "broadcast form" of the
same dW: a sum over the batch of one outer product per sample.

    python examples/linear_backward.py
"""

from __future__ import annotations

import numpy as np

import tape


def shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def main() -> None:
    rng = np.random.default_rng(0)
    n, n_in, n_out = 4, 3, 2
    X = tape.tensor(rng.standard_normal((n, n_in)), requires_grad=True, name="X")
    W = tape.tensor(rng.standard_normal((n_in, n_out)), requires_grad=True, name="W")
    b = tape.tensor(rng.standard_normal(n_out), requires_grad=True, name="b")

    out = X @ W + b  # two records on the tape: matmul, then add (b broadcast over rows)
    print(f"Linear layer: out = X @ W + b   X {X.shape}  W {W.shape}  b {b.shape}  -> {out.shape}")

    # Any upstream gradient will do: backward(dout) is what the next layer would send.
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    print(f"upstream gradient dout = d loss / d out: {shape(dout)}")
    print()

    # The three formulas, by hand, with the shapes that make them the only possible products.
    x, w = X.data, W.data
    dW = x.T @ dout  # (3, 4) @ (4, 2) -> (3, 2): the shape of W
    db = dout.sum(axis=0)  # (4, 2) -> (2,): the shape of b
    dX = dout @ w.T  # (4, 2) @ (2, 3) -> (4, 3): the shape of X
    rows = [
        ("dW = X.T @ dout", f"{shape(x.T)} @ {shape(dout)} -> {shape(dW)}", dW, W.grad),
        ("db = dout.sum(0)", f"{shape(dout)} summed over rows -> {shape(db)}", db, b.grad),
        ("dX = dout @ W.T", f"{shape(dout)} @ {shape(w.T)} -> {shape(dX)}", dX, X.grad),
    ]
    for formula, shapes, by_hand, engine in rows:
        agrees = by_hand.shape == engine.shape and np.allclose(by_hand, engine, rtol=1e-12)
        print(f"{formula:18} {shapes:32} engine agrees: {agrees}")
    print()

    # One entry spelled out: dW[i, j] = Σ_n X[n, i] · dout[n, j], a sum over the batch.
    i, j = 2, 1
    entry = sum(x[row, i] * dout[row, j] for row in range(n))
    print(f"dW[{i}, {j}] = sum over the {n} rows of X[n, {i}] * dout[n, {j}] = {entry:.6f}")
    print(f"           engine: W.grad[{i}, {j}] = {W.grad[i, j]:.6f}")
    print()

    # The broadcast form of lin_grad: one outer product X[n]ᵀ dout[n] per sample, summed.
    # It is X.T @ dout written out; it builds a (B, in, out) array, which the matmul avoids.
    outer = x[:, :, None] * dout[:, None, :]
    dW_broadcast = outer.sum(axis=0)
    same = np.allclose(dW_broadcast, dW, rtol=1e-12)
    print("lin_grad, broadcast form: dW = (X[:, :, None] * dout[:, None, :]).sum(0)")
    print(
        f"  per-sample outer products {shape(outer)} summed over the batch -> "
        f"{shape(dW_broadcast)}; equals X.T @ dout: {same}"
    )


if __name__ == "__main__":
    main()
