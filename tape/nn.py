"""Layers and losses built from tape's ops: ``Module``, ``Linear``, ``Sequential``, losses.

Nothing here has a backward of its own. A layer's forward is written with
recorded ops (``x @ W + b``), so the tape already knows every gradient; a
module only keeps its parameters together so that an optimizer can find them
and ``zero_grad`` can reset them.

>>> from tape import nn
>>> model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 1, seed=1))
>>> x, y = np.ones((5, 3)), np.zeros((5, 1))
>>> loss = nn.MSELoss()(model(x), y)
>>> loss.backward()
>>> [name for name, _ in model.named_parameters()]
['0.weight', '0.bias', '2.weight', '2.bias']
>>> model[0].weight.grad.shape
(3, 4)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .errors import describe
from .ops import log_softmax, relu, sigmoid, tanh
from .record import mark_changed
from .tensors import Tensor
from .viz import scope


class Module(ABC):
    """The base of every layer: holds parameters and sub-modules as plain attributes.

    Any attribute that is a Tensor with ``requires_grad=True`` is a parameter;
    any attribute that is a ``Module`` (or a list or tuple of them) is a
    sub-module whose parameters are collected too, under a dotted name. A
    subclass defines ``forward``; calling the module calls it.

    >>> class Affine(tape.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = tape.tensor(2.0, requires_grad=True)
    ...         self.shift = tape.tensor(0.5, requires_grad=True)
    ...     def forward(self, x):
    ...         return x * self.scale + self.shift
    >>> f = Affine()
    >>> f(tape.tensor([1.0, 3.0])).sum().backward()
    >>> f.scale.grad, f.shift.grad       # d/dscale = Σx, d/dshift = count
    (array(4.), array(2.))
    """

    training: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> Module:
        # Refused here, in tape's words: Python's own message for an abstract class
        # changes between versions.
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(
                f"{cls.__name__} is a tape.nn.Module without {', '.join(missing)}: define "
                f"{missing[0]}(self, ...) to say what calling the module computes"
            )
        return super().__new__(cls)

    def __init__(self) -> None:
        self.training = True

    @abstractmethod
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """What calling the module computes; every subclass defines it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A layer inside another module records its ops in a scope named after it
        # ("0: Linear"), so to_dot(..., collapse=True) can draw each layer as one box.
        name = vars(self).get("_scope_name")
        if name is None:
            return self.forward(*args, **kwargs)
        with scope(name):
            return self.forward(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, Tensor | Module | list | tuple):
            self._name_parameters()

    def _name_parameters(self) -> None:
        """Give parameters their qualified names (``0.weight``), sub-modules their scope names.

        A name the user chose stays; one this naming gave at a lower level
        (``weight`` inside layer 0) is qualified further as modules nest.
        """
        for qualified, p in self.named_parameters():
            if p.name is None or (p.name != qualified and qualified.endswith("." + p.name)):
                p.name = qualified
        for child_name, child in self.named_children():
            object.__setattr__(child, "_scope_name", f"{child_name}: {type(child).__name__}")

    # ---- what the module holds -------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules with their attribute names (``"0"``, ``"1"`` in a list)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Every parameter with its dotted name, in definition order, each tensor once.

        A tensor shared by two layers (tied weights) is one parameter: listing
        it twice would make an optimizer step it twice.
        """
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:  # depth-first, in definition order, without recursion
            path, module = stack.pop()
            children = []
            for name, value in vars(module).items():
                if isinstance(value, Tensor) and value.requires_grad and id(value) not in seen:
                    seen.add(id(value))
                    yield path + name, value
            for name, child in module.named_children():
                children.append((f"{path}{name}.", child))
            stack.extend(reversed(children))

    def parameters(self) -> list[Tensor]:
        """The parameters as a list, the form optimizers take: ``SGD(model.parameters(), lr)``."""
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and every module inside it."""
        stack: list[Module] = [self]
        while stack:
            module = stack.pop()
            yield module
            stack.extend(reversed([child for _, child in module.named_children()]))

    def zero_grad(self) -> None:
        """Set ``.grad = None`` on every parameter.

        Backward *adds* into ``.grad``, so a training step must start from
        nothing; ``None`` (rather than zeros) also says "no gradient yet".
        """
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Set the ``training`` flag here and in every sub-module; returns the module.

        The layers in this file compute the same thing either way; the flag
        is there for layers that do not (dropout, batch norm).
        """
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Same as ``train(False)``."""
        return self.train(False)

    # ---- saving and loading ------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters' data by name (the arrays themselves, not copies)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state``'s arrays into the parameters, in place.

        In place, so an optimizer built on ``model.parameters()`` keeps working
        on the same tensors. Every name must match and every shape agree; the
        check runs before anything is copied, so a bad file changes nothing.
        """
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"load_state_dict: the names do not match {type(self).__name__}'s parameters "
                f"(missing: {missing or 'none'}; unexpected: {unexpected or 'none'}); "
                "load into the same architecture the state was saved from"
            )
        arrays = {name: np.asarray(state[name]) for name in params}
        for name, p in params.items():
            if arrays[name].shape != p.shape:
                raise ValueError(
                    f"load_state_dict: {name!r} is {describe(arrays[name])} in the state but "
                    f"{describe(p)} in the model; the layer sizes differ"
                )
            if not np.can_cast(arrays[name].dtype, p.dtype, "same_kind"):
                raise TypeError(
                    f"load_state_dict: {name!r} is {describe(arrays[name])} in the state, which "
                    f"does not cast to the model's {p.dtype}; save and load real floats"
                )
        for name, p in params.items():
            np.copyto(p.data, arrays[name], casting="same_kind")
            mark_changed(p.data)  # a graph recorded before this must not use the new values

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the parameters to an ``.npz`` file with ``np.savez``, one array per name."""
        np.savez(path, **self.state_dict())

    def load(self, path: str | os.PathLike[str]) -> None:
        """Read parameters written by ``save`` (no pickles: plain arrays only)."""
        with np.load(path, allow_pickle=False) as archive:
            self.load_state_dict({name: archive[name] for name in archive.files})

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            inner = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {inner}")
        return "\n".join([*lines, ")"])

    def extra_repr(self) -> str:
        """What ``repr`` shows between the parentheses of a layer without sub-modules."""
        return ""


class Linear(Module):
    """An affine layer, ``y = x @ W + b``, with ``W`` of shape ``(in_features, out_features)``.

    ``W`` is stored as ``(in, out)`` so the forward is the seed math as written,
    and its gradients come out of the engine as ``dW = xᵀ dy``, ``db = Σ_rows dy``,
    ``dx = dy Wᵀ``. Both ``W`` and ``b`` start uniform in ``±1/√in_features``
    (PyTorch's default), so the output's scale does not grow with the width.
    ``seed`` makes the start reproducible.

    >>> layer = tape.nn.Linear(3, 2, seed=0)
    >>> x = np.ones((4, 3))
    >>> layer(x).sum().backward()
    >>> layer.bias.grad                 # four rows, each sends 1 to each bias entry
    array([4., 4.])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = np.float64,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(
                f"Linear: parameters need a floating dtype, got {np.dtype(dtype)}; "
                "use np.float64 or np.float32"
            )
        sizes = (in_features, out_features)
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in sizes):
            raise TypeError(
                f"Linear: in_features and out_features are whole numbers of features, got "
                f"({in_features!r}, {out_features!r}); pass ints, e.g. Linear(784, 256)"
            )
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear: in_features and out_features must be positive, got "
                f"({in_features}, {out_features})"
            )
        self.in_features = in_features
        self.out_features = out_features
        rng = np.random.default_rng(seed)
        bound = 1 / np.sqrt(in_features)
        self.weight = Tensor(
            rng.uniform(-bound, bound, (in_features, out_features)),
            requires_grad=True,
            dtype=dtype,
        )
        self.bias = (
            Tensor(rng.uniform(-bound, bound, out_features), requires_grad=True, dtype=dtype)
            if bias
            else None
        )

    def forward(self, x: Any) -> Tensor:
        n = np.shape(x)[-1] if np.ndim(x) else None
        if n != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}): the input is {describe(x)}, "
                f"but its last axis must have {self.in_features} features"
            )
        out = x @ self.weight  # an ndarray x works too: NumPy hands the product to Tensor
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class ReLU(Module):
    """``max(x, 0)`` elementwise; the gradient passes where ``x > 0`` (``relu'(0) = 0``)."""

    def forward(self, x: Any) -> Tensor:
        return relu(x)


class Sigmoid(Module):
    """``1 / (1 + e⁻ˣ)`` elementwise; its derivative is ``σ(1 − σ)``."""

    def forward(self, x: Any) -> Tensor:
        return sigmoid(x)


class Tanh(Module):
    """``tanh(x)`` elementwise; its derivative is ``1 − tanh²``."""

    def forward(self, x: Any) -> Tensor:
        return tanh(x)


class Sequential(Module):
    """Modules applied one after another: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Sub-modules are named by position, so parameters read ``"0.weight"``,
    ``"0.bias"``, ``"2.weight"``... as in PyTorch; index with ``model[0]``.

    >>> net = tape.nn.Sequential(tape.nn.Linear(2, 3, seed=0), tape.nn.Tanh())
    >>> net(np.zeros((1, 2))).shape
    (1, 3)
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential: argument {i} is a {type(m).__name__}, not a Module; "
                    "wrap functions in a Module subclass with a forward"
                )
        self.layers = list(modules)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, m in enumerate(self.layers):
            yield str(i), m

    def forward(self, x: Any) -> Any:
        for m in self.layers:
            x = m(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)


_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class Loss(Module):
    """The base of the losses: checks and keeps ``reduction`` (``"mean"``, ``"sum"``, ``"none"``).

    A loss compares a prediction with a target and reduces the per-entry
    values to one scalar to call ``backward`` on: their mean (the default, so
    the gradient's scale does not depend on the batch size) or their sum.
    ``"none"`` keeps them all, for weighting or inspection.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {', '.join(_REDUCTIONS)}; "
                f"got {reduction!r}"
            )
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(Loss):
    """Squared error ``(input − target)²``, averaged (``"mean"``) or summed (``"sum"``).

    With ``"mean"`` over the ``N`` entries, ``d loss / d input = 2/N (input − target)``:
    the first factor of the seed formula ``dZ = 2/N (a − y) ⊙ (z > 0)``.
    The shapes must match exactly: letting ``(N, 1)`` broadcast against
    ``(N,)`` would silently compare every prediction with every target.

    >>> a = tape.tensor([1.0, 3.0], requires_grad=True)
    >>> tape.nn.MSELoss()(a, np.array([0.0, 0.0])).backward()
    >>> a.grad                          # 2/2 · (a − y)
    array([1., 3.])
    """

    def forward(self, input: Any, target: Any) -> Tensor:
        if np.shape(input) != np.shape(target):
            raise ValueError(
                f"MSELoss: input is {describe(input)} but target is {describe(target)}; "
                "they must have the same shape (reshape the target, e.g. y[:, None], "
                "rather than let them broadcast)"
            )
        diff = input - target
        return _reduce(diff * diff, self.reduction)


class CrossEntropyLoss(Loss):
    """``−log softmax(logits)[target]`` per row, for integer class targets.

    ``input`` holds raw scores of shape ``(N, C)`` (no softmax before it);
    ``target`` holds ``N`` class indices in ``[0, C)``. The log-softmax is
    computed stably (shifted by the row maximum), and the gradient reaching
    the logits is ``(softmax − onehot) / N`` with ``"mean"``.

    >>> logits = tape.tensor([[0.0, 0.0]], requires_grad=True)
    >>> tape.nn.CrossEntropyLoss()(logits, np.array([1])).backward()
    >>> logits.grad                     # softmax − onehot = [.5, .5] − [0, 1]
    array([[ 0.5, -0.5]])
    """

    def forward(self, input: Any, target: Any) -> Tensor:
        labels = np.asarray(target.data if isinstance(target, Tensor) else target)
        if np.ndim(input) != 2:
            raise ValueError(
                f"CrossEntropyLoss: input is {describe(input)}; it must be logits of shape "
                "(batch, classes); a single sample is x[None]"
            )
        n, classes = np.shape(input)
        if labels.dtype.kind not in "iu":
            raise TypeError(
                f"CrossEntropyLoss: target is {describe(labels)}; it must hold integer class "
                "indices (e.g. y.astype(np.int64)), not one-hot rows or floats"
            )
        if labels.shape != (n,):
            raise ValueError(
                f"CrossEntropyLoss: input is {describe(input)} so target must have shape "
                f"({n},), one class index per row; got {describe(labels)}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(
                f"CrossEntropyLoss: target holds class {int(labels.min())}..{int(labels.max())}, "
                f"but the input has {classes} classes (0..{classes - 1})"
            )
        picked = log_softmax(input, axis=-1)[np.arange(n), labels]
        return _reduce(-picked, self.reduction)


__all__ = [
    "CrossEntropyLoss",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
