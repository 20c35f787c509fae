"""Why backward adds (``+=``) into gradients instead of assigning them.

1. A tensor used twice. ``y = x * x + 3 * x`` uses ``x`` three times (twice in
   ``x * x``, once in ``3 * x``). The multivariable chain rule says the
   derivative is the *sum* over uses: dy/dx = x + x + 3 = 2x + 3. The engine
   gets that sum by letting each use add its contribution: the ledger below
   (from ``tape.trace_backward``) shows every ``+=``. Replaying the same ledger
   with ``=`` keeps only the last contribution: wrong.
2. Across backward calls. ``.grad`` is added to, so two calls give twice the
   gradient, until ``zero_grad``.
3. Across micro-batches. That is what makes the second point useful: four
   backward passes on quarters of a batch (each loss scaled by 1/4) leave
   exactly the gradient of the whole batch, so a big batch fits in small memory.

Momentum is a different thing, kept by the optimizer (``SGD(momentum=...)``),
not by a ``.grad`` left un-zeroed; see docs/why-accumulate.md.

    python examples/why_accumulate.py
"""

from __future__ import annotations

import numpy as np

import tape
from tape import nn


def used_twice() -> None:
    x = tape.tensor(2.0, requires_grad=True, name="x")
    square, triple = x * x, 3 * x
    square.name, triple.name = "x*x", "3*x"  # names label the ledger (and diagrams)
    y = square + triple
    with tape.trace_backward() as steps:
        y.backward()
    print("1. y = x * x + 3 * x at x = 2; dy/dx = 2x + 3 = 7")
    print("   the ledger of the backward pass, str(steps): one line per +=, newest record first")
    print("   " + str(steps).replace("\n", "\n   "))
    into_x = [float(step.contribution) for step in steps if step.target is x]
    print(f"   contributions into x: {' + '.join(f'{c:g}' for c in into_x)} = {sum(into_x):g}")
    print(f"   x.grad with +=: {float(x.grad):g}  (dy/dx = 7)")
    print(f"   x.grad with  =: {into_x[-1]:g}  (only the last contribution survives: wrong)")
    print()


def across_calls() -> None:
    w = tape.tensor([1.0, 2.0], requires_grad=True)
    print("2. backward twice without zeroing: gradients add up")
    (w * w).sum().backward()
    print(f"   after one backward:  w.grad = {w.grad}")
    (w * w).sum().backward()
    print(f"   after two backwards: w.grad = {w.grad}  (twice 2w)")
    w.zero_grad()
    print(f"   after zero_grad:     w.grad = {w.grad}")
    print()


def micro_batches() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    whole, pieces = nn.Linear(3, 2, seed=0), nn.Linear(3, 2, seed=0)
    loss_fn = nn.MSELoss()

    loss_fn(whole(X), y).backward()  # one batch of 8
    for part in np.split(np.arange(8), 4):  # four micro-batches of 2, no zero_grad between
        (loss_fn(pieces(X[part]), y[part]) / 4).backward()  # / 4: a mean of 4 means

    same = all(
        np.allclose(a.grad, b.grad, rtol=1e-12)
        for a, b in zip(whole.parameters(), pieces.parameters())
    )
    print("3. gradient accumulation across micro-batches")
    print(f"   accumulated over 4 micro-batches of 2 == one batch of 8: {same}")


def main() -> None:
    used_twice()
    across_calls()
    micro_batches()


if __name__ == "__main__":
    main()
