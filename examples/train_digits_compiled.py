"""Train the digits MLP with a compiled step, and time it against the eager one.

The same 64 → 64 → 10 network as ``train_mlp.py`` (ReLU, cross-entropy, Adam,
mini-batches of 32 from scikit-learn's 8×8 digits), trained twice from the
same start on the same batches: once eagerly (record the tape, walk it back),
once with ``tape.compile``, which traces the step once per batch shape and
then runs the generated NumPy. Both runs must end with the same parameters;
the script prints the test accuracy, the time per step of each, and the
generated backward pass.

Needs scikit-learn (the ``examples`` extra: ``pip install -e ".[examples]"``).

    python examples/train_digits_compiled.py
    python examples/train_digits_compiled.py --epochs 5 --show-source
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import tape
from tape import nn, optim

TARGET_ACCURACY = 0.95  # as train_mlp.py; tests/test_examples.py reads the printed lines

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError as missing:  # pragma: no cover - the message is the point
    sys.exit(f"train_digits_compiled.py needs {missing.name}: pip install -e '.[examples]'")

cross_entropy = nn.CrossEntropyLoss()


def loss(W1, b1, W2, b2, X, y):
    """Mean cross-entropy of the MLP ``relu(X W1 + b1) W2 + b2`` against class labels ``y``."""
    return cross_entropy((X @ W1 + b1).relu() @ W2 + b2, y)


def make_model(hidden: int, seed: int) -> list[tape.Tensor]:
    layers = [nn.Linear(64, hidden, seed=seed), nn.Linear(hidden, 10, seed=seed + 1)]
    return [p for layer in layers for p in (layer.weight, layer.bias)]


def train(params, data, epochs, batch_size, lr, seed, step) -> float:
    """Adam over shuffled mini-batches; ``step(params, X, y)`` fills each ``.grad``.

    Returns the seconds spent in ``step`` alone (the part compile changes).
    """
    X_train, y_train = data
    opt = optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    spent = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(X_train))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad()
            t0 = time.perf_counter()
            step(params, X_train[batch], y_train[batch])
            spent += time.perf_counter() - t0
            opt.step()
    return spent


def eager_step(params, X, y) -> None:
    loss(*params, X, y).backward()


def compiled_step_for(compiled):
    def compiled_step(params, X, y) -> None:
        _, grads = compiled(*[p.data for p in params], X, y)
        for p, g in zip(params, grads):
            p.grad = g

    return compiled_step


def accuracy(params, X, y) -> float:
    W1, b1, W2, b2 = (p.data for p in params)
    scores = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    return float((scores.argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-source", action="store_true", help="print all generated code")
    args = parser.parse_args(argv)

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=args.seed,
        stratify=digits.target,
    )  # fmt: skip
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8×8 pixels")
    data = (X_train, y_train)
    settings = (args.epochs, args.batch_size, args.lr, args.seed)

    eager = make_model(args.hidden, args.seed)
    eager_time = train(eager, data, *settings, eager_step)
    compiled = tape.compile(loss, argnums=(0, 1, 2, 3))
    fast = make_model(args.hidden, args.seed)
    compiled_time = train(fast, data, *settings, compiled_step_for(compiled))

    steps = args.epochs * -(-len(X_train) // args.batch_size)
    worst = max(float(np.max(np.abs(a.data - b.data))) for a, b in zip(eager, fast))
    print(f"compiled == eager: parameters after {steps} steps differ by at most {worst:.1e}")
    print(f"traces: {compiled.traces} (one per batch shape: full batches and the last one)")
    print(
        f"time per step: eager {1e6 * eager_time / steps:.0f} us, "
        f"compiled {1e6 * compiled_time / steps:.0f} us "
        f"({eager_time / compiled_time:.1f}x faster)"
    )
    test_acc = accuracy(fast, X_test, y_test)
    print(f"test accuracy: {test_acc:.3f} (stated: at least {TARGET_ACCURACY:.2f})")

    source = compiled.source(*[p.data for p in fast], X_train[:32], y_train[:32])
    shown = source if args.show_source else source[source.index("def loss_value_and_grad") :]
    print("\nthe generated step (compiled.source):\n")
    print(shown)
    return 0 if test_acc >= TARGET_ACCURACY and worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
