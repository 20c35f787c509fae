"""A hand-written Linear layer as a ``tape.Function``, checked with ``gradcheck``.

When you write a layer's backward yourself (to learn it, or because the
engine's version is too slow or too memory-hungry), ``tape.Function`` plugs it
into the tape like a built-in op, and ``tape.gradcheck`` tells you whether you
got it right, by comparing your backward with finite differences.

Here ``Lin`` is the seed layer ``out = x @ w + b`` with its three gradients;
``BadLin`` makes the classic mistake of *averaging* the bias gradient over the
batch instead of summing it, and gradcheck catches it, naming the input.

    python examples/custom_function.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tape
from tape import nn


class Lin(tape.Function):
    """``out = x @ w + b``, with ``dx = dout wᵀ``, ``dw = xᵀ dout``, ``db = Σ_rows dout``."""

    @staticmethod
    def forward(ctx: tape.Context, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x, w)  # b is not needed: its gradient does not depend on it
        return x @ w + b

    @staticmethod
    def backward(ctx: tape.Context, dout: np.ndarray) -> tuple[Any, ...]:
        x, w = ctx.saved
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)


class BadLin(Lin):
    """The same forward, with ``db`` averaged over the batch: 1/B of the right one for B rows."""

    @staticmethod
    def backward(ctx: tape.Context, dout: np.ndarray) -> tuple[Any, ...]:
        x, w = ctx.saved
        return dout @ w.T, x.T @ dout, dout.mean(axis=0)  # wrong: b fed every row, so sum


def main() -> None:
    rng = np.random.default_rng(0)
    x = tape.tensor(rng.standard_normal((5, 3)), requires_grad=True, name="x")
    w = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="w")
    b = tape.tensor(rng.standard_normal(2), requires_grad=True, name="b")

    print(f"gradcheck(Lin.apply):    {tape.gradcheck(Lin.apply, [x, w, b])}")

    try:
        tape.gradcheck(BadLin.apply, [x, w, b])
        print("gradcheck(BadLin.apply): True (the mistake went unnoticed!)")
    except tape.GradcheckError as error:
        print("gradcheck(BadLin.apply): caught the wrong backward:")
        print(f"  {error}")
    v = rng.standard_normal((5, 2))  # compare the two backwards on the same upstream gradient
    (good,) = tape.grad(Lin.apply(x, w, b), [b], grad_outputs=v)
    (bad,) = tape.grad(BadLin.apply(x, w, b), [b], grad_outputs=v)
    print(f"  BadLin's db / Lin's db = {bad / good} = 1/{x.shape[0]}: a mean over the rows")

    # The custom op drops into a model: it agrees with the engine's own Linear layer.
    layer = nn.Linear(3, 2, seed=1)
    y = rng.standard_normal((5, 2))
    nn.MSELoss()(layer(x), y).backward()
    engine = [g.copy() for g in (layer.weight.grad, layer.bias.grad)]
    layer.zero_grad()
    nn.MSELoss()(Lin.apply(x, layer.weight, layer.bias), y).backward()
    same = all(np.allclose(a, b) for a, b in zip(engine, (layer.weight.grad, layer.bias.grad)))
    print(f"Lin inside an MSE loss gives the same gradients as nn.Linear: {same}")


if __name__ == "__main__":
    main()
