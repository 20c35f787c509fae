"""Making tensors: ``tensor()`` and the factories, with NumPy's dtype rules."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tensors import Tensor


def tensor(
    data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None
) -> Tensor:
    """Make a Tensor from anything ``np.array`` accepts (the data is copied).

    Python floats give float64 and ints int64, as in NumPy; only floating
    tensors can require grad.

    >>> x = tape.tensor([[1.0, 2.0]], requires_grad=True, name="x")
    >>> (x * 3).sum().backward()
    >>> x.grad
    array([[3., 3.]])
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def _shape(shape: tuple) -> tuple:
    # zeros(2, 3) and zeros((2, 3)) both work, as in PyTorch and NumPy
    if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
        return tuple(shape[0])
    return shape


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``."""
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``shape`` filled with ``fill_value`` (dtype as NumPy infers it)."""
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of ``t``."""
    return Tensor(np.zeros_like(np.asarray(t), dtype=dtype), requires_grad=requires_grad)


def ones_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape (and dtype, unless given) of ``t``."""
    return Tensor(np.ones_like(np.asarray(t), dtype=dtype), requires_grad=requires_grad)


def randn(
    *shape: Any, seed: int | None = None, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    """Standard normal samples from ``np.random.default_rng(seed)``."""
    data = np.random.default_rng(seed).standard_normal(_shape(shape))
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def arange(*args: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Evenly spaced values as ``np.arange``: ``arange(5)`` is int64, ``arange(5.0)`` float64."""
    return Tensor(np.arange(*args, dtype=dtype), requires_grad=requires_grad)
