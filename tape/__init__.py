"""tape: a small tape-based automatic-differentiation engine on NumPy.

>>> import numpy as np, tape
>>> w = tape.tensor(np.ones((3, 2)), requires_grad=True)
>>> loss = (tape.tensor(np.ones((4, 3))) @ w).relu().mean()
>>> loss.backward()
>>> w.grad.shape
(3, 2)
"""

from . import func, nn, optim
from .autodiff import backward, grad
from .check import gradcheck, gradgradcheck
from .compile import code, compile
from .creation import arange, full, ones, ones_like, randn, tensor, zeros, zeros_like
from .errors import GradcheckError, TraceError
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
from .teaching import Step, Steps, render_steps, trace_backward
from .tensor import Tensor
from .viz import render, scope, to_dot, to_networkx

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Function",
    "GradcheckError",
    "Node",
    "Step",
    "Steps",
    "Tape",
    "Tensor",
    "TraceError",
    "abs",
    "add",
    "arange",
    "backward",
    "clamp",
    "code",
    "compile",
    "concatenate",
    "detect_anomaly",
    "div",
    "enable_grad",
    "exp",
    "full",
    "func",
    "get_tape",
    "getitem",
    "grad",
    "gradcheck",
    "gradgradcheck",
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
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "pow",
    "randn",
    "relu",
    "render",
    "render_steps",
    "reshape",
    "scope",
    "sigmoid",
    "softmax",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "swapaxes",
    "tanh",
    "tensor",
    "to_dot",
    "to_networkx",
    "trace_backward",
    "transpose",
    "where",
    "zeros",
    "zeros_like",
]
