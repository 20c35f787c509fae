"""tape: a small tape-based automatic-differentiation engine on NumPy.

>>> import numpy as np, tape
>>> w = tape.tensor(np.ones((3, 2)), requires_grad=True)
>>> loss = (tape.tensor(np.ones((4, 3))) @ w).relu().mean()
>>> loss.backward()
>>> w.grad.shape
(3, 2)
"""

from .autodiff import backward, grad
from .check import gradcheck
from .creation import arange, full, ones, ones_like, randn, tensor, zeros, zeros_like
from .errors import GradcheckError
from .function import Context, Function
from .ops import (
    abs,
    add,
    clamp,
    concatenate,
    div,
    exp,
    getitem,
    log,
    log_softmax,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    pow,
    relu,
    reshape,
    sigmoid,
    softmax,
    sqrt,
    stack,
    sub,
    sum,
    swapaxes,
    tanh,
    transpose,
    where,
)
from .record import Node, Tape, detect_anomaly, enable_grad, get_tape, is_grad_enabled, no_grad
from .tensor import Tensor

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Function",
    "GradcheckError",
    "Node",
    "Tape",
    "Tensor",
    "abs",
    "add",
    "arange",
    "backward",
    "clamp",
    "concatenate",
    "detect_anomaly",
    "div",
    "enable_grad",
    "exp",
    "full",
    "get_tape",
    "getitem",
    "grad",
    "gradcheck",
    "is_grad_enabled",
    "log",
    "log_softmax",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mul",
    "neg",
    "no_grad",
    "ones",
    "ones_like",
    "pow",
    "randn",
    "relu",
    "reshape",
    "sigmoid",
    "softmax",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "swapaxes",
    "tanh",
    "tensor",
    "transpose",
    "where",
    "zeros",
    "zeros_like",
]

# -- diagrams, teaching and the command line (issue 3) --

# -- higher order and functional transforms (issue 4) --
from . import func
from .check import gradgradcheck

__all__ = [*__all__, "func", "gradgradcheck"]  # keeps later sections' imports E402-clean

# -- nn and optim (issue 5) --
