"""Reverse-mode autodiff: ``backward`` and ``grad``.

One walk serves both, and it is only a loop: pop the newest record waiting
for its gradient, run its *pullback* (its op's VJPs on what it saved), and
accumulate each contribution into the parent with ``+=``. Recording order is
already a topological order, so a heap of waiting records keyed by their
index is all the scheduling it needs (no graph sort, no recursion). A tensor
used twice receives the sum of both contributions: that sum is the
multivariable chain rule.

Everything else that happens during a pass is decided before the walk starts
and lives outside the loop. The *pullback* knows the pass's kind (arrays, or
Tensors under ``create_graph``), which records ``tape.grad`` needs, and the
checks a record must pass (released, changed in place). *Observers* watch
the walk through three calls (``total``, ``sent``, ``end``): hooks,
``retain_grad``, ``detect_anomaly``, the ``+=`` ledger of ``trace_backward``
and the flows diagrams draw are observers. A pass nobody watches pays
nothing for them.

Compute, then commit: the walk gathers every gradient before ``.grad`` is
written or any record released, so an exception anywhere leaves tensors,
gradients and the tape exactly as they were.
"""

from __future__ import annotations

import gc
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from heapq import heappop, heappush, heappushpop
from typing import Any

import numpy as np

from .errors import add_note, describe, label, real_gradient, where_recorded
from .function import OUT, Op, apply
from .record import LAST_CHANGE, WATCHED, GradMode, Node, changed_at, reachable, release, state
from .tensors import Tensor, on_graph, wrap

# ---- the walk -----------------------------------------------------------------------------


def walk(roots: Sequence[Any], seeds: Sequence[Any], pullback: Callable) -> tuple[dict, list, list]:
    """The reverse pass from ``roots`` (records or leaves), seeded with ``seeds``.

    Returns the gradients that reached the leaves, the records whose pullback
    ran, and for the first ``FLOW_RECORDS`` of them what they received and
    sent (a diagram's worth; a bigger pass keeps no more). The newest waiting
    record is always complete: every op that consumed its output was recorded
    later, so it has already sent its part.
    """
    grads: dict[Any, Any] = {}
    owned: set[Any] = set()  # sums this pass allocated: safe to += in place
    pending: list[tuple[int, Node]] = []  # records waiting for their turn: a heap by -index
    ran, steps = [], []  # every record that ran; the first ones' (node, g, sent)
    sent = [(key, part, 0, part) for key, part in zip(roots, seeds)]
    while True:
        fresh = None  # a record this step reached first; it goes next if newest (a chain)
        for key, part, _, _ in sent:  # accumulate: grads[key] += part
            before = grads.get(key)
            if before is None:  # the first contribution is kept by reference
                grads[key] = part
                if key.__class__ is Node:
                    if fresh is not None:  # more than one: the others wait in the heap
                        heappush(pending, (-fresh.index, fresh))
                    fresh = key
            elif key in owned:  # later ones add into the sum this pass allocated
                before += part
            else:  # the second allocates the sum, which later ones may add into
                grads[key] = _sum(before, part, key, owned)
        if fresh is not None:  # it comes straight back if no waiting record is newer
            node = heappushpop(pending, (-fresh.index, fresh))[1]
        elif pending:
            node = heappop(pending)[1]
        else:
            return grads, ran, steps
        ran.append(node)
        g = grads.pop(node)
        sent = pullback(node, g)
        if len(ran) <= FLOW_RECORDS:
            steps.append((node, g, sent))


def _sum(before: Any, part: Any, key: Any, owned: set) -> Any:
    """Two contributions' sum: a recorded Tensor under ``create_graph``, else an array
    this pass owns (``key`` joins ``owned``, so later parts are added into it in place)."""
    total = before + part
    if isinstance(total, Tensor):
        return total
    owned.add(key)
    return np.asarray(total)  # NumPy adds two 0-d arrays into a scalar; a gradient stays an array


# ---- the pullback: one record's VJPs, and the bookkeeping around them ------------------


def unbroadcast(g: Any, shape: tuple, op: str, position: int) -> Any:
    """Sum ``g`` over the axes that broadcasting added, so it has ``shape``.

    If ``b`` of shape ``(3,)`` was added to ``(4, 3)``, each entry of ``b`` fed
    four outputs, so its gradient is the sum of those four: ``g.sum(axis=0)``.
    """
    lead = g.ndim - len(shape)
    if shape and lead > 0 and g.shape[lead:] == shape:  # only leading axes were added (a bias)
        # one sum, and a new array rather than a view: .grad can keep it without a copy
        # (a 0-d input is left to the general case, where the sum stays an array)
        return g.sum(axis=0 if lead == 1 else tuple(range(lead)))
    if lead < 0 or any(n != 1 and n != m for n, m in zip(shape, g.shape[lead:])):
        raise ValueError(
            f"{op}: its VJP gave input {position} a gradient of shape {g.shape}, "
            f"but the input has shape {shape}; a VJP must return the input's shape, or "
            "the shape the input was broadcast to"
        )
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def conform(g: Any, shape: tuple, dtype: Any, op: str, position: int, graph: bool) -> Any:
    """Make one VJP result a gradient for an input: an array (Tensor) of its shape and dtype."""
    if graph:
        if not isinstance(g, Tensor):
            g = wrap(np.asarray(g))
    elif type(g) is not np.ndarray:
        g = np.asarray(g.data if isinstance(g, Tensor) else g)
    if g.shape != shape:
        g = unbroadcast(g, shape, op, position)
    if g.dtype != dtype:
        if g.dtype.kind not in "fiub":
            raise TypeError(
                f"{op}: its VJP gave input {position} a gradient of dtype "
                f"{g.dtype}; gradients must be real numbers"
            )
        g = g.astype(dtype)
    return g


def key_of(parent: Any) -> Any:
    """Where a gradient for this input goes: its record, a leaf that requires grad, or None."""
    if type(parent) is Node:
        return parent
    if isinstance(parent, Tensor) and parent.requires_grad and parent.node is None:
        return parent
    return None


def make_pullback(graph: bool, through: set | None = None, keep: set | None = None) -> Callable:
    """``pullback(node, g) -> [(key, part, position, raw), ...]`` for one kind of pass.

    ``graph``: run the VJPs on Tensors, so they are recorded (``create_graph``).
    ``through``/``keep`` (``tape.grad``): only records leading to a wanted
    tensor run, and only contributions to such records or the wanted tensors
    are computed. ``raw`` is what the VJP returned, before un-broadcasting.
    A plain pass (arrays, nothing pruned) takes the short road, ``arrays``;
    the rest, and any record whose op has one VJP for all inputs, the general one.
    """

    def arrays(node: Node, g: Any, ndarray: type = np.ndarray) -> list:
        saved = node.saved
        if saved.__class__ is not tuple:
            raise _released_error(node)
        if node.index < LAST_CHANGE[0]:
            _check_unchanged(node)
        op = node.primitive
        if op.vjp_all is not None or g.__class__ is not ndarray:
            return general(node, g)
        calls, params, sent, position = op.calls, node.params, [], -1
        for parent in node.parents:
            position += 1
            if parent.__class__ is Node:
                shape, dtype = parent.layout
            elif isinstance(parent, Tensor) and parent.requires_grad and parent.node is None:
                shape, dtype = parent.data.shape, parent.data.dtype
            else:
                continue  # a constant: no formula runs for it
            raw = part = calls[position](g, saved, params)
            if part.__class__ is not ndarray or part.dtype is not dtype or part.shape != shape:
                if part is None:
                    continue  # the op says: no gradient for this input
                part = conform(part, shape, dtype, op.name, position, False)
            sent.append((parent, part, position, raw))
        return sent

    def general(node: Node, g: Any, ndarray: type = np.ndarray) -> list:
        if through is not None and node not in through:
            return []  # nothing asked for lies beyond it: neither run nor checked
        saved = node.saved
        if saved.__class__ is not tuple:
            raise _released_error(node)
        if node.index < LAST_CHANGE[0]:
            _check_unchanged(node)
        op, params = node.primitive, node.params
        gv = g  # what the VJPs get: Tensors under create_graph, but a Function knows only arrays
        if graph and not op.once:
            saved = _lift(node)
        elif g.__class__ is not ndarray and isinstance(g, Tensor):
            gv = g.data
        parts = None if op.vjp_all is None else _run_vjp_all(node, gv, saved)
        sent = []
        for position, parent in enumerate(node.parents):
            key = key_of(parent)
            if key is None or (keep is not None and key not in keep):
                continue  # a constant, or a tensor nobody asked about
            part = op.calls[position](gv, saved, params) if parts is None else parts[position]
            if part is None:
                continue  # the op says: no gradient for this input
            raw = part
            if graph and op.once:
                part = _once_record(node, g, part)
            if key.__class__ is Node:
                part = conform(part, key.shape, key.dtype, node.op, position, graph)
            else:
                part = conform(part, key.data.shape, key.data.dtype, node.op, position, graph)
            sent.append((key, part, position, raw))
        return sent

    return arrays if not graph and through is None and keep is None else general


def run_vjp(node: Node, g: Any) -> list:
    """One record's VJPs on an array ``g``, as recorded: one raw result per input.

    ``None`` where the input needs no gradient (or the op gives none). Nothing
    is summed back or cast: this is what the formulas themselves return, for
    checks that want to look at them (``gradcheck``, ``check_graph``).
    """
    saved = node.saved
    if saved.__class__ is not tuple:
        raise _released_error(node)
    op = node.primitive
    if op.vjp_all is not None:
        return list(op.vjp_all(g, *saved, **node.params))
    return [
        None if key_of(parent) is None else op.calls[i](g, saved, node.params)
        for i, parent in enumerate(node.parents)
    ]


def _lift(node: Node) -> tuple:
    """What a record saved, as Tensors on the graph: the VJP's own ops are then recorded."""
    sources = node.primitive.sources(len(node.parents))
    lifted = []
    for k, value in zip(sources, node.saved):  # type: ignore[arg-type]
        if value is None or value.__class__ is Node:
            value = None  # not saved (``saved`` may be ``parents``): no VJP that runs reads it
        elif k == OUT:
            value = on_graph(value, node)
        elif k > 0:
            parent = node.parents[k - 1]
            if type(parent) is Node:
                value = on_graph(value, parent)
            elif isinstance(parent, Tensor):
                value = parent  # a leaf (its gradient flows on) or a constant Tensor
        lifted.append(value)
    return tuple(lifted)


def _run_vjp_all(node: Node, g: Any, saved: tuple) -> list:
    """Run a variadic op's (or a Function's) one VJP and check what it returned."""
    op = node.primitive
    try:
        parts = op.vjp_all(g, *saved, **node.params)  # type: ignore[misc]
    except Exception as e:
        add_note(e, f"(in the backward of {op.name!r}, recorded at {where_recorded(node)})")
        raise
    n = len(node.parents)
    if not isinstance(parts, tuple | list) or len(parts) != n:
        count = len(parts) if isinstance(parts, tuple | list) else type(parts).__name__
        raise TypeError(
            f"{op.name}: backward must return a tuple with one gradient (or None) per "
            f"input, {n} here; it returned {count}"
        )
    if op.once:  # a user's backward may hand back arrays it keeps: take copies
        return [
            None if p is None else np.array(p.data if isinstance(p, Tensor) else p) for p in parts
        ]
    return list(parts)


def _released_error(node: Node) -> RuntimeError:
    if node.released == "tape.clear()":
        why = "dropped by tape.clear()"
        fix = "build the computation again after clearing the tape"
    else:
        why = "released by an earlier backward pass, which freed the values its VJP reads"
        fix = (
            "pass retain_graph=True to the earlier backward() (or tape.grad) to walk "
            "the graph again, or rebuild it by running the forward again"
        )
    return RuntimeError(
        f"backward reached the record of {node.op!r} (recorded at "
        f"{where_recorded(node)}), {why}; {fix}"
    )


def _check_unchanged(node: Node) -> None:
    """The VJP reads the values the op saw: refuse if one was changed in place since.

    Those are what the record saved, and the arrays among a built-in op's
    parameters: an index (``x[i]`` with ``i`` a Tensor) or a condition
    (``tape.where``). A Function's backward reads what its forward saved on
    its context (``ctx.save_for_backward``), whatever it was given as.
    """
    for k, value in zip(node.primitive.sources(len(node.parents)), node.saved):
        if k < 0:
            continue  # a shape: nothing to change
        if changed_at(value) > node.index:
            if k == OUT:
                what = "its output"
            else:
                parent = node.parents[k - 1]
                name = parent.name if isinstance(parent, Tensor | Node) else None
                label = f"'{name}' " if name else ""
                what = f"input {k - 1} ({label}{describe(value)})"
            raise _changed_error(node, what)
    if node.primitive.once:  # a Function's backward reads what its forward saved on ctx
        ctx = node.params.get("ctx")
        for i, value in enumerate(ctx.saved or () if ctx is not None else ()):
            if changed_at(value) > node.index:
                raise _changed_error(node, f"what its forward saved ({i}: {describe(value)})")
        return
    for key, value in node.params.items():
        for array in value if isinstance(value, tuple) else (value,):
            if changed_at(array) > node.index:
                raise _changed_error(node, f"its parameter {key!r} ({describe(array)})")


def _changed_error(node: Node, what: str) -> RuntimeError:
    return RuntimeError(
        f"backward: {what} of {node.op!r} (recorded at {where_recorded(node)}) was "
        "changed in place after the op was recorded (+=, an optimizer step, "
        "load_state_dict, a write through a view, detach() or out=), so the value its "
        "VJP needs is gone; take the gradient before changing it, or change a copy"
    )


# ---- differentiable once: the record a custom Function's gradient carries -----------


def _once_forward(*inputs: Any, value: Any = None, function: str = "") -> Any:
    return value


def _twice(g: Any, *, value: Any = None, function: str = "") -> Any:
    raise RuntimeError(
        f"{function}: a second backward pass reached a gradient computed by this "
        "tape.Function, whose backward works on arrays and so is differentiable once; "
        "for higher derivatives write the op with tape ops instead"
    )


_ONCE = Op("function_backward", _once_forward)
_ONCE.defvjp_all(_twice)


def _once_record(node: Node, g: Any, part: Any) -> Any:
    """The Function's gradient, on a record that refuses a second backward pass."""
    value = np.asarray(part.data if isinstance(part, Tensor) else part)
    handles = [
        on_graph(np.broadcast_to(np.zeros((), p.dtype), p.shape), p) if type(p) is Node else p
        for p in node.parents
    ]
    return apply(_ONCE, (g, *handles), {"value": value, "function": node.op})


# ---- observers ------------------------------------------------------------------------------


class Observer:
    """Watches a reverse walk. Every method may be left as it is: the default does nothing.

    Keys are what the walk accumulates into: a ``Node`` stands for the tensor
    it produced, a leaf ``Tensor`` for itself (``tensor_of(key)`` gives the
    Tensor either way).
    """

    def begin(self, roots: Sequence[Any], seeds: Sequence[Any]) -> None:
        """The pass starts: each root (key) is seeded."""

    def total(self, key: Any, g: Any) -> Any:
        """``key``'s whole gradient in this pass is ``g``; return what flows on.

        A hook may return a replacement, which then flows on instead.
        """
        return g

    def sent(self, node: Node, position: int, key: Any, part: Any, raw: Any) -> None:
        """``node``'s VJP sent ``part`` into ``key`` along argument ``position``.

        ``raw`` is what the VJP returned, before the engine summed it back to
        the input's shape.
        """

    def end(self) -> None:
        """The walk succeeded; commit what was gathered."""

    def abort(self) -> None:
        """The pass raised before ``end``: drop what it gathered (another pass may go on)."""


def tensor_of(key: Any) -> Any:
    """The Tensor a walk key stands for: a leaf itself, or a record's output (or its stand-in)."""
    return key.output if type(key) is Node else key  # type: ignore[union-attr]


class _Observed:
    """A pullback with observers around it; the walk cannot tell the difference."""

    __slots__ = ("pullback", "observers")

    def __init__(self, pullback: Callable, observers: list[Observer]) -> None:
        self.pullback, self.observers = pullback, observers

    def __call__(self, node: Node, g: Any) -> list:
        for o in self.observers:
            g = o.total(node, g)
        sent = self.pullback(node, g)
        for key, part, position, raw in sent:
            for o in self.observers:
                o.sent(node, position, key, part, raw)
        return sent


@contextmanager
def _watched_pass(observers: list[Observer]) -> Iterator[None]:
    """A pass from ``begin`` to ``end``: if it raises, each observer hears ``abort``."""
    try:
        yield
    except BaseException:
        for o in observers:
            o.abort()
        raise


@contextmanager
def observe(observer: Observer) -> Iterator[Observer]:
    """Let ``observer`` watch every backward pass and ``tape.grad`` of this thread in the block."""
    state.observers.append(observer)
    try:
        yield observer
    finally:
        state.observers.remove(observer)


class _Hooks(Observer):
    """Runs each watched tensor's hooks on its total; keeps ``retain_grad`` totals to commit."""

    def __init__(self, graph: bool, retain: bool) -> None:
        self.graph, self.retain = graph, retain
        self.watched = {t.node or t: (t, w) for t, w in list(WATCHED.items())}
        self.retained: list[tuple[Tensor, Any]] = []

    def total(self, key: Any, g: Any) -> Any:
        entry = self.watched.get(key)
        if entry is None:
            return g
        t, watch = entry
        for hook in list(watch.hooks.values()):
            g = self._replaced(t, g, hook(g))
        if self.retain and watch.retain and t.node is not None:
            self.retained.append((t, g))
        return g

    def _replaced(self, t: Tensor, g: Any, new: Any) -> Any:
        if new is None:
            return g
        if isinstance(new, np.generic):  # g * 2 on a 0-d gradient: NumPy gives a scalar
            new = np.asarray(new)
        if not isinstance(new, Tensor | np.ndarray) or new.shape != t.shape:
            raise ValueError(
                f"hook: a hook on {label(t)} returned {describe(new)}; "
                "a replacement gradient must have the tensor's shape"
            )
        real_gradient(new.data if isinstance(new, Tensor) else new, "hook: the new gradient", t)
        if self.graph:  # the walk differentiates Tensors then
            new = new if isinstance(new, Tensor) else wrap(np.asarray(new))
            return new if new.dtype == t.dtype else new.astype(t.dtype)
        # a copy in the tensor's dtype: .grad must not alias what the hook keeps
        return np.array(new.data if isinstance(new, Tensor) else new, dtype=t.data.dtype)

    def end(self) -> None:
        for t, g in self.retained:
            add_into_grad(t, np.array(g.data if isinstance(g, Tensor) else g))


class _Anomaly(Observer):
    """``detect_anomaly`` in a backward pass: a NaN or Inf gradient names the VJP that made it."""

    def sent(self, node: Node, position: int, key: Any, part: Any, raw: Any) -> None:
        data = part.data if isinstance(part, Tensor) else part
        if data.dtype.kind in "fc" and not np.isfinite(data).all():
            raise FloatingPointError(
                f"detect_anomaly: the VJP of {node.op!r} (recorded at "
                f"{where_recorded(node)}) produced NaN or Inf in the gradient of input {position}"
            )


FLOW_LIMIT = 1000  # a released graph keeps gradients up to this many entries for diagrams
FLOW_RECORDS = 500  # ... in passes over at most this many records (a diagram one can read)


def _shape(value: Any) -> tuple:
    shape = getattr(value, "shape", None)  # np.shape costs a dispatch; most VJPs return arrays
    return tuple(np.shape(value) if shape is None else shape)


def _small(value: Any) -> Any:
    """A gradient kept for a diagram: the array while small, else only its shape."""
    data = value.data if isinstance(value, Tensor) else value
    return data if data.size <= FLOW_LIMIT else tuple(data.shape)


def keep_flows(ran: list, steps: list, hold: bool, limit: int | None = FLOW_RECORDS) -> None:
    """Keep on each record what the pass sent along its edges, for diagrams (``node.sent``).

    ``node.sent`` is ``(g, {position: (part, raw_shape)})``. Only the latest
    such pass of each thread keeps them (a diagram is drawn right after the
    pass it shows), only for a pass over at most ``FLOW_RECORDS`` records, and
    each gradient as an array while it has at most ``FLOW_LIMIT`` entries (its
    shape otherwise): what a diagram shows costs no memory worth naming, and a
    loop that keeps its losses keeps no flows. A diagram's own pass asks for
    every record's flows (``limit=None``).

    ``hold``: the pass released its records, so the thread may hold them (and
    their flows) until its next pass lets them go; they keep no saved values.
    Records still holding saved values (``retain_graph=True``, a diagram's own
    pass) are not held, so a dropped graph goes at once, activations and all;
    their flows carry the pass's ``live`` flag, which the thread's next pass
    turns off, so ``node.sent`` shows only the latest pass's.
    """
    _let_go(state.flowed)  # the previous pass's records that the thread held
    # ... and its flows wherever they are kept (records of a retained graph): no longer the latest
    state.flows_live[0] = False
    live = state.flows_live = [True]
    if limit is not None and len(ran) > limit:
        # The output's record says so: a diagram may walk it again. Not kept in ``flowed``,
        # which would hold the whole graph behind it; every pass from it is this long.
        ran[0].note("unkept", True)
        return
    ndarray = np.ndarray
    for node, g, sent in steps:
        parts = {}
        for _, part, position, raw in sent:
            if part.__class__ is ndarray and raw.__class__ is ndarray:  # no calls for arrays
                parts[position] = (part if part.size <= FLOW_LIMIT else part.shape, raw.shape)
            else:
                parts[position] = (_small(part), _shape(raw))
        small = g if g.__class__ is ndarray and g.size <= FLOW_LIMIT else _small(g)
        if node.notes is None:
            node.notes = {"sent": (small, parts, live)}
        else:
            node.notes["sent"] = (small, parts, live)
    if hold:
        state.flowed = ran


def _let_go(nodes: list) -> None:
    """Drop the flows these records keep, and the records themselves."""
    for node in nodes:
        notes = node.notes
        if notes is not None:
            notes.pop("sent", None)
            if not notes:
                node.notes = None
    state.flowed = []


class Flows(Observer):
    """Gathers what every record received and sent in a pass, for ``keep_flows``.

    The walk itself keeps only the first ``FLOW_RECORDS`` records' flows; a
    diagram's own pass watches with this to label every edge of a larger graph.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[Node, Any, list]] = []

    def total(self, key: Any, g: Any) -> Any:
        if key.__class__ is Node:  # its pullback runs next, then ``sent`` reports its parts
            self.steps.append((key, g, []))
        return g

    def sent(self, node: Node, position: int, key: Any, part: Any, raw: Any) -> None:
        self.steps[-1][2].append((key, part, position, raw))


def _observers(graph: bool, retain: bool, extra: Sequence[Observer] = ()) -> list[Observer]:
    """Who watches this pass: hooks and retain_grad, anomaly checks, ``extra``, the thread's own."""
    found: list[Observer] = []
    if WATCHED:
        found.append(_Hooks(graph, retain))
    if state.anomaly:
        found.append(_Anomaly())
    found.extend(extra)
    found.extend(state.observers)
    return found


def run(
    roots: Sequence[Tensor], seeds: Sequence[Any], pullback: Callable, observers: list[Observer]
) -> tuple[dict, list, list]:
    """One walk from ``roots`` with ``observers`` watching; leaves' totals pass them too.

    Returns what ``walk`` returns: the leaves' gradients, the records that ran,
    and the first records' steps (for ``keep_flows``).
    """
    keys = [t.node or t for t in roots]
    for o in observers:
        o.begin(keys, seeds)
    if observers:
        pullback = _Observed(pullback, observers)
    collecting = gc.isenabled()
    gc.disable()  # the walk makes no cycles; scanning a big graph for them would dominate it
    try:
        grads, ran, steps = walk(keys, seeds, pullback)
    finally:
        if collecting:
            gc.enable()
    for key, g in grads.items():  # what is left are leaves
        for o in observers:
            g = o.total(key, g)
        grads[key] = g
    return grads, ran, steps


# ---- the public entry points -----------------------------------------------------------


def _seed(t: Tensor, grad: Any, what: str, graph: bool) -> Any:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: outputs must be Tensors, got {type(t).__name__}")
    if not t.requires_grad:
        raise RuntimeError(
            f"{what}: {label(t)} does not require grad, so no record leads to it; "
            "create the leaves with requires_grad=True (and outside tape.no_grad())"
        )
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"{what}: grad can be omitted only for a tensor with one element, but this "
                f"one is {describe(t)}; pass grad=np.ones({t.shape}) (or the upstream "
                "gradient), or reduce the tensor first with .sum() or .mean()"
            )
        seed = np.array(1, t.dtype) if t.ndim == 0 else np.ones(t.shape, dtype=t.dtype)
    else:
        if isinstance(grad, Tensor) and not graph:
            grad = grad.data
        value = real_gradient(grad.data if isinstance(grad, Tensor) else grad, f"{what}: grad", t)
        if value.shape != t.shape:
            raise ValueError(
                f"{what}: grad has shape {value.shape} but the tensor is {describe(t)}; "
                "the upstream gradient must have the tensor's shape"
            )
        seed = grad if isinstance(grad, Tensor) else value.astype(t.dtype, copy=False)
    if graph and not isinstance(seed, Tensor):
        seed = wrap(seed)
    return seed


def seed(t: Tensor, grad: Any = None, what: str = "backward") -> np.ndarray:
    """The gradient a pass from ``t`` starts with (``grad`` checked, or ones for one element)."""
    return _seed(t, grad, what, graph=False)


def _check_leaves(grads: dict) -> None:
    for t in grads:
        if t.data.dtype.kind != "f":
            raise TypeError(
                f"backward: the leaf {label(t)} requires grad but has an integer or bool "
                "dtype, which cannot hold a gradient (it would be truncated); make it "
                "floating, e.g. tape.tensor(data, dtype=np.float64, requires_grad=True)"
            )


def _owned_copies(kept: dict, seeds: Sequence[Any]) -> dict:
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


def add_into_grad(t: Tensor, g: np.ndarray) -> None:
    """``t.grad += g``: the one place a pass writes ``.grad`` (the first pass keeps ``g``)."""
    t._grad = g if t._grad is None else np.asarray(t._grad + g)


_COMMIT = threading.Lock()  # threads backpropagating into one leaf must not lose an update


def backward(self: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate the gradient of this tensor into ``.grad`` of every leaf it depends on.

    Each leaf that requires grad gets ``leaf.grad += d(self)/d(leaf)``, so two
    calls without zeroing give twice the gradient. Without ``retain_graph``
    the pass releases the records it visited (frees the values they saved).

    >>> x = tape.tensor([3.0], requires_grad=True)
    >>> y = x * x + x          # x is used twice: two contributions
    >>> y.backward(np.ones(1))
    >>> x.grad                 # 2x + 1
    array([7.])
    """
    start = _seed(self, grad, "backward", graph=False)
    observers = _observers(graph=False, retain=True)
    with _watched_pass(observers):
        with GradMode(False):
            grads, ran, steps = run([self], [start], make_pullback(graph=False), observers)
        _check_leaves(grads)
        with _COMMIT:  # commit only after the walk succeeded
            for t, g in _owned_copies(grads, [start]).items():
                add_into_grad(t, g)
            for o in observers:
                o.end()
    keep_flows(ran, steps, hold=not retain_graph)
    if not retain_graph:
        release(ran, "backward")


def _plan(outputs: Sequence[Tensor], wanted: set) -> tuple[set, set]:
    """For ``tape.grad``: the records that lead to a wanted key, and every key worth a part."""
    keep = set(wanted)
    through: set[Node] = set()
    for node in reachable([t.node for t in outputs]):  # oldest first: inputs come before
        if any(key_of(p) in keep for p in node.parents):
            through.add(node)
            keep.add(node)
    return through, keep


class _Kept(Observer):
    """``tape.grad`` of a tensor an op made: its total, caught as the walk passes it."""

    def __init__(self, wanted: set) -> None:
        self.wanted, self.totals = wanted, {}

    def total(self, key: Any, g: Any) -> Any:
        if key in self.wanted:
            self.totals[key] = g
        return g


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
    wanted = {t.node or t for t in ins}
    through, keep = _plan(outs, wanted)
    kept = _Kept(wanted)
    observers = _observers(graph=create_graph, retain=False, extra=[kept])
    anomaly = state.anomaly
    # Recorded VJPs run ops; the anomaly observer checks them as gradients, not as forwards.
    state.anomaly = anomaly and not create_graph
    with _watched_pass(observers):
        try:
            with GradMode(create_graph):
                pullback = make_pullback(create_graph, through, keep)
                grads, ran, _ = run(outs, seeds, pullback, observers)
        finally:
            state.anomaly = anomaly
        _check_leaves({t: g for t, g in grads.items() if t in wanted})
        found = {**{k: g for k, g in grads.items() if k in wanted}, **kept.totals}
        if not create_graph:
            found = _owned_copies(found, seeds)
        results = []
        for i, t in enumerate(ins):
            g = found.get(t.node or t)
            if g is None and not allow_unused:
                raise ValueError(
                    f"grad: input {i} ({label(t)}) does not reach any output; pass "
                    "allow_unused=True to get None for it"
                )
            results.append(g)
        with _COMMIT:
            for o in observers:
                o.end()
    if not (create_graph if retain_graph is None else retain_graph):
        release([node for node in ran if node in through], "backward")  # the others did not run
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
            f"register_hook: {label(self)} does not require grad, so no gradient reaches it"
        )
    if not callable(fn):
        raise TypeError(
            f"register_hook: a hook is a function of the gradient, got {type(fn).__name__}; "
            "pass e.g. lambda g: g * 2 (return None to keep g)"
        )
    hooks = WATCHED.watch(self).hooks
    key = next(_HOOK_KEYS)  # never reused, so a stale handle cannot remove a newer hook
    hooks[key] = fn
    return _Handle(hooks, key)


def retain_grad(self: Tensor) -> None:
    """Keep (and accumulate, like a leaf) ``.grad`` on this non-leaf tensor."""
    if not self.requires_grad:
        raise RuntimeError(f"retain_grad: {label(self)} does not require grad")
    WATCHED.watch(self).retain = True


def retains_grad(t: Tensor) -> bool:
    """Whether ``t`` keeps a ``.grad``: a leaf that requires grad, or a tensor that asked."""
    if t.node is None:
        return t.requires_grad
    watch = WATCHED.get(t)
    return watch is not None and watch.retain


def hooks_of(t: Tensor) -> list[Callable]:
    """The hooks registered on ``t``, in the order they run."""
    watch = WATCHED.get(t)
    return [] if watch is None else list(watch.hooks.values())


Tensor.backward = backward  # type: ignore[attr-defined]
Tensor.register_hook = register_hook  # type: ignore[attr-defined]
Tensor.retain_grad = retain_grad  # type: ignore[attr-defined]
