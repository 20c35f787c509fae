"""Optimizers: turn the gradients in ``.grad`` into in-place updates of the parameters.

An optimizer owns everything that carries over from one step to the next
(a momentum buffer, Adam's running averages). The engine owns none of it:
``backward`` only ever adds this batch's gradient into ``.grad``. That split
is why ``opt.zero_grad()`` comes before each ``backward``: momentum lives in
the optimizer's state, not in a ``.grad`` left to pile up.

Updates run under ``tape.no_grad()``: changing a parameter is not part of the
function being differentiated, so nothing is recorded.

>>> w = tape.tensor([1.0, -2.0], requires_grad=True)
>>> opt = tape.optim.SGD([w], lr=0.1)
>>> (w * w).sum().backward()        # grad = 2w = [2, -4]
>>> opt.step()                      # w ← w − 0.1 · grad
>>> w.data
array([ 0.8, -1.6])
>>> opt.zero_grad(); w.grad is None
True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import describe, label
from .record import no_grad
from .tensors import Tensor


class Optimizer(ABC):
    """The common part: the parameter list, ``zero_grad``, and a per-parameter ``state``.

    A subclass writes ``_update(p, grad, state)`` for one parameter; ``step``
    calls it, under ``no_grad``, for each parameter that has a gradient
    (a parameter no backward pass reached is left alone, as in PyTorch).
    """

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params: list[Tensor] = list(params)
        if not self.params:
            raise ValueError(
                f"{type(self).__name__}: got an empty parameter list; pass model.parameters() "
                "(a generator that was already consumed gives nothing the second time)"
            )
        seen: set[int] = set()
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a Tensor"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} ({describe(p)}) does not require grad, "
                    "so it would never get a gradient; create it with requires_grad=True"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} ({describe(p)}) was computed by "
                    f"{p.node.op!r}; only leaves get .grad, so pass the tensors you "
                    "created (model.parameters()), not results computed from them"
                )
            if id(p) in seen:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} ({describe(p)}) appears twice in "
                    "the list, so each step would update it twice; pass each tensor once"
                )
            seen.add(id(p))
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        """Set ``.grad = None`` on every parameter, so the next backward starts afresh."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place, recording nothing.

        Every parameter is checked before any is changed, so a step that raises
        changes no parameter and no state.
        """
        due = [(i, p, p.grad, state) for i, (p, state) in enumerate(zip(self.params, self.state))]
        due = [entry for entry in due if entry[2] is not None]
        for i, p, grad, state in due:
            kept = [v for v in state.values() if isinstance(v, np.ndarray)]
            if p.data.dtype.kind != "f" or not p.data.flags.writeable:
                raise TypeError(
                    f"{type(self).__name__}.step: parameter {i} is {label(p)}, which a step "
                    "cannot update in place (it needs a writeable float array); was its .data "
                    "replaced? Give it float data, e.g. p.data = p.data.astype(np.float64) "
                    "(nothing was updated)"
                )
            if grad.shape != p.shape or any(v.shape != p.shape for v in kept):
                found = (
                    f"its .grad is {describe(grad)}"
                    if grad.shape != p.shape
                    else "its optimizer state was made for another shape"
                )
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {i} is {label(p)} but {found}; "
                    "was its .data replaced by an array of another shape? Set p.grad = None "
                    "and make a new optimizer for the new shape (nothing was updated)"
                )
        with no_grad():
            for _, p, grad, state in due:
                self._update(p, grad, state)

    @abstractmethod
    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        """Change ``p`` in place by one step of this optimizer's rule."""

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if k not in ("params", "state")
        )
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"


def _check(name: str, value: float, low: float, high: float = math.inf) -> float:
    if not (low <= value < high):
        upper = "" if high == math.inf else f" and below {high}"
        raise ValueError(f"{name} must be at least {low}{upper}, got {value!r}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay (PyTorch's rule).

    For each parameter ``p`` with gradient ``g``::

        g ← g + weight_decay · p            (L2 penalty ½·wd·‖p‖², differentiated)
        v ← momentum · v + g                (v starts at g on the first step)
        p ← p − lr · v                      (p ← p − lr · g without momentum)

    The velocity ``v`` is state of the optimizer, kept between steps; it is
    the reason ``.grad`` can be zeroed every step without losing momentum.

    >>> w = tape.tensor([1.0], requires_grad=True)
    >>> opt = tape.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad()
    ...     (3 * w).sum().backward()    # g = 3 every step
    ...     opt.step()
    >>> w.data                          # 1 − 0.1·3 − 0.1·(0.9·3 + 3)
    array([0.13])
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = _check("SGD: lr", lr, 0.0)
        self.momentum = _check("SGD: momentum", momentum, 0.0)
        self.weight_decay = _check("SGD: weight_decay", weight_decay, 0.0)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        g = grad + self.weight_decay * p.data if self.weight_decay else grad
        if self.momentum:
            v = state.get("momentum_buffer")
            if v is None:
                v = state["momentum_buffer"] = np.array(g, dtype=p.dtype)
            else:
                v *= self.momentum
                v += g
            g = v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): steps scaled by running averages of ``g`` and ``g²``.

    For each parameter, at step ``t = 1, 2, ...``::

        m ← β₁ m + (1 − β₁) g               (m, v start at 0)
        v ← β₂ v + (1 − β₂) g²
        m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   (bias correction)
        p ← p − lr · m̂ / (√v̂ + ε)

    Without the correction the first steps would be tiny, because ``m`` and
    ``v`` start at zero; with it the very first step is ``lr · g / (|g| + ε)``,
    about ``lr`` in size whatever the scale of ``g``. ``weight_decay`` adds
    ``weight_decay · p`` to ``g`` first (PyTorch's ``Adam``, not ``AdamW``).

    >>> w = tape.tensor([1.0, 1.0], requires_grad=True)
    >>> opt = tape.optim.Adam([w], lr=0.1)
    >>> (w * tape.tensor([100.0, 0.01])).sum().backward()
    >>> opt.step()                      # both move by ≈ lr, despite grads 100 and 0.01
    >>> np.round(w.data, 4)
    array([0.9, 0.9])
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = _check("Adam: lr", lr, 0.0)
        beta1, beta2 = betas
        self.betas = (
            _check("Adam: betas[0]", beta1, 0.0, 1.0),
            _check("Adam: betas[1]", beta2, 0.0, 1.0),
        )
        self.eps = _check("Adam: eps", eps, 0.0)
        self.weight_decay = _check("Adam: weight_decay", weight_decay, 0.0)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        g = grad + self.weight_decay * p.data if self.weight_decay else grad
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


__all__ = ["SGD", "Adam", "Optimizer"]
