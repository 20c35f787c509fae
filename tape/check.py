"""``gradcheck``: the engine's gradients against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autodiff import grad
from .errors import GradcheckError, describe
from .ops import concatenate
from .tensor import Tensor


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Tensor | Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Check ``fn``'s gradients against central differences in float64.

    The inputs that require grad are copied to float64. For an output of any
    shape, both sides differentiate ``<v, fn(*inputs)>`` for a fixed random
    ``v``, which compares every entry of the Jacobian along ``v``: numerically
    ``(f(x + eps) - f(x - eps)) / (2 eps)`` entry by entry, analytically one
    backward pass. Returns ``True``, or raises ``GradcheckError`` naming
    the input, the index and both values of the worst entry.

    >>> x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    >>> tape.gradcheck(lambda t: (t * t.tanh()).sum(), [x])
    True
    """
    given = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    xs = [
        Tensor(x.data, dtype=np.float64, requires_grad=True)
        if isinstance(x, Tensor) and x.requires_grad
        else x
        for x in given
    ]
    wrt = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    out = fn(*xs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    v = np.random.default_rng(0).standard_normal(out.shape)

    def projected() -> float:
        # not under no_grad: fn may itself take gradients (checking second derivatives)
        return float(np.sum(v * fn(*xs).data))

    if not out.requires_grad:
        analytic = [np.zeros(xs[i].shape) for i in wrt]
    else:
        found = grad(out, [xs[i] for i in wrt], grad_outputs=v, allow_unused=True)
        analytic = [np.zeros(xs[i].shape) if g is None else g for i, g in zip(wrt, found)]
    for i, a in zip(wrt, analytic):
        data = xs[i].data
        numeric = np.empty(data.shape)
        for idx in np.ndindex(data.shape):
            saved = data[idx]
            data[idx] = saved + eps
            up = projected()
            data[idx] = saved - eps
            down = projected()
            data[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        excess = np.where(np.isnan(excess), np.inf, excess)
        if excess.size and excess.max() > 0:
            worst = np.unravel_index(np.argmax(excess), excess.shape)
            name = f" '{given[i].name}'" if given[i].name else ""
            raise GradcheckError(
                f"gradcheck: input {i}{name} ({describe(given[i])}) "
                f"at index {tuple(map(int, worst))}: "
                f"analytic {float(a[worst]):.10g} vs numeric {float(numeric[worst]):.10g} "
                f"(differ by {abs(a[worst] - numeric[worst]):.3g}; allowed "
                f"atol + rtol*|numeric| = {atol + rtol * abs(numeric[worst]):.3g})"
            )
    return True


def gradgradcheck(
    fn: Callable[..., Tensor],
    inputs: Tensor | Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Check ``fn``'s second derivatives: ``gradcheck`` of its recorded gradient.

    For a fixed random cotangent ``u`` (``grad_outputs``), the first gradient
    ``G(x, u) = uᵀ ∂fn/∂x`` is computed with ``tape.grad(..., create_graph=True)``
    and ``gradcheck`` then compares its derivatives, by central differences,
    with ``x`` *and* with ``u``. The ``x`` part checks the second-order terms
    (the VJPs differentiated again); the ``u`` part checks that each VJP stays
    on the tape as a linear function of its upstream gradient. Returns
    ``True`` or raises ``GradcheckError``; a custom ``tape.Function`` on
    the path raises ``RuntimeError`` (it is differentiable once).

    >>> x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    >>> tape.gradgradcheck(lambda t: (t * t.tanh()).sum(), [x])
    True
    """
    given = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    wrt = [i for i, x in enumerate(given) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradgradcheck: no input requires grad, so there is nothing to check")
    xs = [
        Tensor(x.data, dtype=np.float64, requires_grad=True) if i in wrt else x
        for i, x in enumerate(given)
    ]
    out = fn(*xs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradgradcheck: fn must return a Tensor, got {type(out).__name__}")
    u = Tensor(np.random.default_rng(1).standard_normal(out.shape), requires_grad=True)
    n = len(xs)

    def first_gradient(*args: Any) -> Tensor:
        *args_x, cotangent = args
        y = fn(*args_x)
        if not y.requires_grad:
            return Tensor(np.zeros(sum(args_x[i].size for i in wrt)))
        found = grad(
            y,
            [args_x[i] for i in wrt],
            grad_outputs=cotangent,
            create_graph=True,
            allow_unused=True,
        )
        flat = [
            Tensor(np.zeros(args_x[i].size)) if g is None else g.reshape(-1)
            for i, g in zip(wrt, found)
        ]
        return concatenate(flat) if len(flat) > 1 else flat[0]

    try:
        return gradcheck(first_gradient, [*xs, u], eps=eps, atol=atol, rtol=rtol)
    except GradcheckError as e:
        raise GradcheckError(
            f"gradgradcheck (second order; input {n} below is the cotangent u "
            f"that tape.grad received as grad_outputs): {e}"
        ) from None
