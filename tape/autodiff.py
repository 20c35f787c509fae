"""Reverse-mode autodiff: ``backward`` and ``grad``.

One walk serves both. It visits the records the outputs depend on, newest
first: recording order is already a topological order, so a heap of the
tensors waiting for their gradient, keyed by the index of the record that
made them, is all the scheduling it needs (no graph sort, no recursion). For
each record it applies the op's VJP and accumulates each contribution into
the parent with ``+=``. A tensor used twice therefore receives the sum of both
contributions: that sum is the multivariable chain rule.

Compute, then commit: the walk gathers every gradient before ``.grad`` is
written or any record released, so an exception anywhere leaves tensors,
gradients and the tape exactly as they were.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from heapq import heappop, heappush
from typing import Any

import numpy as np

from .errors import add_note, describe, where_recorded
from .function import Op, apply
from .record import LAST_CHANGE, Node, _GradMode, _state
from .tensor import Tensor, _wrap


def unbroadcast(g: Any, shape: tuple, node: Node, position: int) -> Any:
    """Sum ``g`` over the axes that broadcasting added, so it has ``shape``.

    If ``b`` of shape ``(3,)`` was added to ``(4, 3)``, each entry of ``b`` fed
    four outputs, so its gradient is the sum of those four: ``g.sum(axis=0)``.
    """
    lead = g.ndim - len(shape)
    if lead < 0 or any(n != 1 and n != m for n, m in zip(shape, g.shape[lead:])):
        raise ValueError(
            f"{node.op}: its VJP gave input {position} a gradient of shape {g.shape}, "
            f"but the input has shape {shape}; a VJP must return the input's shape, or "
            "the shape the input was broadcast to"
        )
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _conform(g: Any, t: Tensor, node: Node, position: int, graph: bool) -> Any:
    """Make one VJP result a gradient for ``t``: an array (Tensor) of its shape and dtype."""
    if graph:
        if not isinstance(g, Tensor):
            g = _wrap(np.asarray(g))
    elif type(g) is not np.ndarray:
        g = np.asarray(g.data if isinstance(g, Tensor) else g)
    if g.shape != t.data.shape:
        g = unbroadcast(g, t.data.shape, node, position)
    if g.dtype != t.data.dtype:
        if g.dtype.kind not in "fiub":
            raise TypeError(
                f"{node.op}: its VJP gave input {position} a gradient of dtype "
                f"{g.dtype}; gradients must be real numbers"
            )
        g = g.astype(t.data.dtype)
    return g


class _Walk:
    """One reverse pass: the gradients gathered so far, and which tensors wait for theirs.

    ``pending`` is a max-heap of the non-leaf tensors that have received some
    gradient, keyed by the index of the record that made them. The newest such
    record is always complete: every op that consumed its output was recorded
    later, so it has already passed its contribution on.
    """

    __slots__ = ("grads", "owned", "pending", "graph", "in_place", "tracer")

    def __init__(self, graph: bool) -> None:
        self.grads: dict[Tensor, Any] = {}
        self.owned: set[Tensor] = set()  # buffers this pass allocated: safe to += in place
        self.pending: list[tuple[int, Tensor]] = []
        self.graph = graph
        self.tracer = _state.tracer
        self.in_place = not graph and self.tracer is None

    def accumulate(
        self, t: Tensor, part: Any, node: Node | None = None, position: int = 0, sent: Any = None
    ) -> None:
        """``grad[t] += part``, never mutating an array the pass does not own.

        The first contribution is kept by reference, the second allocates the
        sum, later ones add into that sum in place.
        """
        grads = self.grads
        before = grads.get(t)
        if before is None:
            grads[t] = part
            if t.node is not None:
                heappush(self.pending, (-t.node.index, t))
        elif self.in_place and t in self.owned:
            before += part
        else:
            total = before + part
            # NumPy adds two 0-d arrays into a scalar; a gradient stays an array
            grads[t] = total if self.graph else np.asarray(total)
            if self.in_place:
                self.owned.add(t)
        if self.tracer is not None and node is not None:
            self.tracer.record(node, t, position, part, before, grads[t], sent)


def _released_error(node: Node) -> RuntimeError:
    if node.released == "tape.clear()":
        why = "dropped by tape.clear()"
        fix = "build the computation again after clearing the tape"
    else:
        why = "released by an earlier backward pass (which keeps no promise to its values)"
        fix = (
            "pass retain_graph=True to the earlier backward() (or tape.grad) to walk "
            "the graph again, or rebuild it by running the forward again"
        )
    return RuntimeError(
        f"backward reached the record of {node.op!r} (recorded at "
        f"{where_recorded(node)}), {why}; {fix}"
    )


def _check_unchanged(node: Node, out: Tensor) -> None:
    """The VJP reads the values the op saw: refuse if one was changed in place since."""
    for position, t in enumerate((*node.args, out)):
        if (
            isinstance(t, Tensor)
            and t._extra is not None
            and t._extra.get("changed", 0) > node.index
        ):
            what = "its output" if t is out else f"input {position} ({t._label()})"
            raise RuntimeError(
                f"backward: {what} of {node.op!r} (recorded at {where_recorded(node)}) was "
                "changed in place after the op was recorded (+=, an optimizer step, "
                "load_state_dict), so the value its VJP needs is gone; take the gradient "
                "before changing it, or change a copy"
            )


def _check_gradient_finite(node: Node, position: int, part: Any) -> None:
    data = part.data if isinstance(part, Tensor) else part
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        raise FloatingPointError(
            f"detect_anomaly: the VJP of {node.op!r} (recorded at "
            f"{where_recorded(node)}) produced NaN or Inf in the gradient of input {position}"
        )


def _run_hooks(t: Tensor, g: Any, graph: bool) -> Any:
    for hook in list(t._extra["hooks"].values()):  # type: ignore[index]
        replaced = hook(g)
        if replaced is not None:
            if not isinstance(replaced, Tensor | np.ndarray) or replaced.shape != t.shape:
                raise ValueError(
                    f"hook: a hook on {t._label()} returned {describe(replaced)}; "
                    "a replacement gradient must have the tensor's shape"
                )
            if graph:  # the walk differentiates Tensors then
                g = replaced if isinstance(replaced, Tensor) else _wrap(np.asarray(replaced))
                if g.dtype != t.dtype:
                    g = g.astype(t.dtype)
            else:  # a copy in the tensor's dtype: .grad must not alias what the hook keeps
                g = np.array(_data(replaced), dtype=t.data.dtype)
    return g


def _data(value: Any) -> Any:
    return value.data if isinstance(value, Tensor) else value


def _vjp_all(node: Node, g: Any, out: Any, values: tuple) -> list:
    """Run a variadic op's (or a Function's) one VJP and check what it returned."""
    op, args = node.primitive, node.args
    try:
        parts = op.vjp_all(g, out, *values, **node.params)  # type: ignore[misc]
    except Exception as e:
        add_note(e, f"(in the backward of {op.name!r}, recorded at {where_recorded(node)})")
        raise
    if not isinstance(parts, tuple | list) or len(parts) != len(args):
        count = len(parts) if isinstance(parts, tuple | list) else type(parts).__name__
        raise TypeError(
            f"{op.name}: backward must return a tuple with one gradient (or None) per "
            f"input, {len(args)} here; it returned {count}"
        )
    if op.once:  # a user's backward may hand back arrays it keeps: take copies
        return [None if p is None else np.array(_data(p)) for p in parts]
    return list(parts)


def _backprop(
    outputs: Sequence[Tensor],
    seeds: Sequence[Any],
    graph: bool,
    wanted: set | None,
    anomaly: bool = False,
    replay: bool = False,
) -> tuple[dict[Tensor, Any], list[Node]]:
    """The reverse walk; returns the total gradients of the tensors to keep, and the nodes run.

    Kept are the leaves and the non-leaves that asked (``retain_grad``), or,
    for ``tape.grad``, exactly the ``wanted`` tensors. ``replay`` walks records
    that a backward pass released, reading the inputs' data instead of the
    saved arrays, and runs no hooks (diagrams use it to show what flowed
    along each edge).
    """
    walk = _Walk(graph)
    if walk.tracer is not None:
        walk.tracer.begin(outputs, seeds)
    for t, seed in zip(outputs, seeds):
        walk.accumulate(t, seed)
    grads, pending = walk.grads, walk.pending
    useful = None if wanted is None else _leading_to(outputs, wanted)
    kept: dict[Tensor, Any] = {}
    visited = []
    last_change = LAST_CHANGE[0]
    while pending:
        out = heappop(pending)[1]
        node = out.node
        g = grads.pop(out)
        needed = useful is None or node in useful  # else nothing asked for lies beyond it
        if needed and node.released is not None and not replay:
            raise _released_error(node)
        if out._extra is not None or wanted is not None:  # hooks, retain_grad, tape.grad
            g = _observe(out, g, kept, wanted, graph, replay)
        if not needed:
            continue  # neither run nor released: a later pass may still need this record
        visited.append(node)
        op, params = node.primitive, node.params
        if graph and not op.once:  # Tensors in, so the VJP itself is recorded
            values, out_value, g_value = node.args, out, g
        else:  # arrays: the fast path, and Functions, whose backward knows only arrays
            values, out_value = node.arrays, out.data
            if values is None:  # released, and replayed
                values = tuple(_data(a) for a in node.args)
            g_value = g.data if isinstance(g, Tensor) else g
        vjps = op.vjps
        parts = _vjp_all(node, g_value, out_value, values) if vjps is None else None
        if node.index < last_change and not replay:
            _check_unchanged(node, out)
        for position, a in enumerate(node.args):
            if not (isinstance(a, Tensor) and a.requires_grad):
                continue  # no formula runs for an input that needs no gradient
            if useful is not None and not (a in wanted or a.node in useful):  # type: ignore[operator]
                continue
            if vjps is None:
                part = parts[position]  # type: ignore[index]
            elif params:
                part = vjps[position](g_value, out_value, *values, **params)
            else:
                part = vjps[position](g_value, out_value, *values)
            if part is None:
                continue  # the op says: no gradient for this input
            if graph and op.once:
                part = _once_record(node, g, part)
            sent, data = part, a.data
            if (  # cheap checks first; _conform does the real work when one trips
                graph
                or type(part) is not np.ndarray
                or part.dtype is not data.dtype
                or part.shape != data.shape
            ):
                part = _conform(part, a, node, position, graph)
            if anomaly:
                _check_gradient_finite(node, position, part)
            walk.accumulate(a, part, node, position, sent)
    for t, g in grads.items():  # what is left are leaves
        if t.data.dtype.kind != "f":
            raise TypeError(
                f"backward: the leaf {t._label()} requires grad but has an integer or bool "
                "dtype, which cannot hold a gradient (it would be truncated); make it "
                "floating, e.g. tape.tensor(data, dtype=np.float64, requires_grad=True)"
            )
        _observe(t, g, kept, wanted, graph, replay)
    return kept, visited


def _observe(t: Tensor, g: Any, kept: dict, wanted: set | None, graph: bool, replay: bool) -> Any:
    """``t``'s total gradient is known: run its hooks, keep it if asked; return what flows on."""
    if t._extra is not None and "hooks" in t._extra and not replay:  # real passes only
        g = _run_hooks(t, g, graph)
    if wanted is not None:
        keep = t in wanted  # tape.grad: exactly what was asked for
    else:
        keep = t.node is None or bool(t._flag("retain_grad"))  # backward: leaves, and who asked
    if keep:
        kept[t] = g
    return g


def _leading_to(outputs: Sequence[Tensor], wanted: set) -> set[Node]:
    """The records on a path from a wanted tensor to an output: all ``tape.grad`` runs."""
    found: set[Node] = set()
    stack = [t.node for t in outputs if t.node is not None]
    while stack:  # iterative: no recursion limit
        node = stack.pop()
        if node not in found:
            found.add(node)
            stack.extend(a.node for a in node.args if isinstance(a, Tensor) and a.node is not None)
    useful: set[Node] = set()
    for node in sorted(found, key=_index):  # oldest first: a record's inputs come before it
        if any(isinstance(a, Tensor) and (a in wanted or a.node in useful) for a in node.args):
            useful.add(node)
    return useful


def _index(node: Node) -> int:
    return node.index


def _owned_copies(kept: dict[Tensor, Any], seeds: Sequence[Any]) -> dict[Tensor, Any]:
    """Copy each result that something else may still refer to.

    A VJP may pass its ``g`` on unchanged (``add``) or as a view (``reshape``),
    so two leaves, or a leaf and the caller's seed, can hold the same buffer;
    the results must not alias each other or anything the caller holds.
    """
    taken = {id(s) for s in seeds}
    for t, g in kept.items():
        if isinstance(g, np.ndarray) and (g.base is not None or id(g) in taken):
            g = kept[t] = g.copy()
        taken.add(id(g))
    return kept


# ---- differentiable once: the record a custom Function's gradient carries -----------


def _once_forward(*inputs: Any, value: Any = None, function: str = "") -> Any:
    return value


def _twice(g: Any, out: Any, *inputs: Any, value: Any = None, function: str = "") -> Any:
    raise RuntimeError(
        f"{function}: a second backward pass reached a gradient computed by this "
        "tape.Function, whose backward works on arrays and so is differentiable once; "
        "for higher derivatives write the op with tape ops instead"
    )


_ONCE = Op("function_backward", _once_forward)
_ONCE.defvjp_all(_twice)


def _once_record(node: Node, g: Any, part: Any) -> Any:
    value = np.asarray(part.data if isinstance(part, Tensor) else part)
    return apply(_ONCE, (g, *node.args), {"value": value, "function": node.op})


# ---- the public entry points -----------------------------------------------------------


def _seed(t: Tensor, grad: Any, what: str, graph: bool) -> Any:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: outputs must be Tensors, got {type(t).__name__}")
    if not t.requires_grad:
        raise RuntimeError(
            f"{what}: {t._label()} does not require grad, so no record leads to it; "
            "create the leaves with requires_grad=True (and outside tape.no_grad())"
        )
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"{what}: grad can be omitted only for a tensor with one element, but this "
                f"one is {describe(t)}; pass grad=np.ones({t.shape}) (or the upstream "
                "gradient), or reduce the tensor first with .sum() or .mean()"
            )
        seed = np.ones(t.shape, dtype=t.dtype)
    else:
        if isinstance(grad, Tensor) and not graph:
            grad = grad.data
        value = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
        if value.shape != t.shape:
            raise ValueError(
                f"{what}: grad has shape {value.shape} but the tensor is {describe(t)}; "
                "the upstream gradient must have the tensor's shape"
            )
        seed = grad if isinstance(grad, Tensor) else value.astype(t.dtype, copy=False)
    if graph and not isinstance(seed, Tensor):
        seed = _wrap(seed)
    return seed


def _release(visited: list[Node]) -> None:
    for node in visited:
        node.release("backward")


def backward(self: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate the gradient of this tensor into ``.grad`` of every leaf it depends on.

    Each leaf that requires grad gets ``leaf.grad += d(self)/d(leaf)``, so two
    calls without zeroing give twice the gradient. Without ``retain_graph``
    the pass releases the records it visited.

    >>> x = tape.tensor([3.0], requires_grad=True)
    >>> y = x * x + x          # x is used twice: two contributions
    >>> y.backward(np.ones(1))
    >>> x.grad                 # 2x + 1
    array([7.])
    """
    seed = _seed(self, grad, "backward", graph=False)
    with _GradMode(False):
        kept, visited = _backprop([self], [seed], False, None, _state.anomaly)
    for t, g in _owned_copies(kept, [seed]).items():  # commit only after the walk succeeded
        t._grad = g if t._grad is None else np.asarray(t._grad + g)
    self._set_extra("seed", seed)  # diagrams replay this pass with the same seed
    if not retain_graph:
        _release(visited)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> list[Any]:
    """Return ``d(outputs)/d(inputs)`` as a list, touching no ``.grad``.

    With ``create_graph=True`` the backward pass is itself recorded, so the
    returned gradients are Tensors that can be differentiated again.

    >>> x = tape.tensor(2.0, requires_grad=True)
    >>> (dx,) = tape.grad(x ** 3, [x], create_graph=True)   # 3x² = 12
    >>> tape.grad(dx, [x])                                  # 6x = 12
    [array(12.)]
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor | np.ndarray | np.generic | int | float):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outs):
        raise ValueError(
            f"grad: {len(outs)} outputs but {len(grad_outputs)} grad_outputs; give one each"
        )
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(
                f"grad: input {i} ({describe(t)}) does not require grad; "
                "only tensors with requires_grad=True have a gradient"
            )
    seeds = [_seed(t, g, "grad", create_graph) for t, g in zip(outs, grad_outputs)]
    anomaly = _state.anomaly
    # Recorded VJPs run ops; check their results as this op's gradient, not as forwards.
    _state.anomaly = anomaly and not create_graph
    try:
        with _GradMode(create_graph):
            kept, visited = _backprop(outs, seeds, create_graph, set(ins), anomaly)
    finally:
        _state.anomaly = anomaly
    if not create_graph:
        kept = _owned_copies(kept, seeds)
    results = []
    for i, t in enumerate(ins):
        g = kept.get(t)
        if g is None and not allow_unused:
            raise ValueError(
                f"grad: input {i} ({t._label()}) does not reach any output; pass "
                "allow_unused=True to get None for it"
            )
        results.append(g)
    if not (create_graph if retain_graph is None else retain_graph):
        _release(visited)
    return results


_HOOK_KEYS = itertools.count()


class _Handle:
    """Returned by ``register_hook``; ``.remove()`` unregisters the hook."""

    __slots__ = ("_hooks", "_key")

    def __init__(self, hooks: dict, key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


def register_hook(self: Tensor, fn: Callable[[Any], Any]) -> _Handle:
    """Call ``fn(grad)`` with the total gradient reaching this tensor in each pass.

    ``fn`` may return a replacement gradient; hooks run in registration order.
    """
    if not self.requires_grad:
        raise RuntimeError(
            f"register_hook: {self._label()} does not require grad, so no gradient reaches it"
        )
    if self._extra is None:
        self._extra = {}
    hooks = self._extra.setdefault("hooks", {})
    key = next(_HOOK_KEYS)  # never reused, so a stale handle cannot remove a newer hook
    hooks[key] = fn
    return _Handle(hooks, key)


def retain_grad(self: Tensor) -> None:
    """Keep (and accumulate, like a leaf) ``.grad`` on this non-leaf tensor."""
    if not self.requires_grad:
        raise RuntimeError(f"retain_grad: {self._label()} does not require grad")
    self._set_extra("retain_grad", True)


Tensor.backward = backward  # type: ignore[attr-defined]
Tensor.register_hook = register_hook  # type: ignore[attr-defined]
Tensor.retain_grad = retain_grad  # type: ignore[attr-defined]
