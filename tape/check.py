"""``gradcheck``: the engine's gradients against central finite differences.

A failed check says *what kind* of mistake it sees, not only where: the worst
entry of every failing input, and, where the analytic gradient is a
recognisable transformation of the numeric one (transposed, scaled by a
constant, off in sign), that in words. A custom ``Function`` whose backward
returns a gradient of another shape than its input is reported with the sum
it forgot, read from the ``+=`` ledger of the analytic pass.
"""

from __future__ import annotations

import html
import inspect
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autodiff import grad, key_of, run_vjp, unbroadcast
from .errors import GradcheckError, describe, where_recorded
from .function import Context, Function
from .ops import concatenate
from .record import GradMode, Node, reachable
from .tensors import Tensor

_SEED = 20_011_986  # an arbitrary seed for the projection v, fixed so a check is repeatable


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
    backward pass. At a kink (relu at 0), where no derivative exists, an entry
    that matches either one-sided slope passes (``check.at_a_kink``). Returns
    ``True``, or raises ``GradcheckError`` naming, for every input that fails,
    the index and both values of its worst entry, and in words the mistake
    when it is a recognisable one (transposed, scaled by a constant such as
    ``1/N``, off in sign, a custom ``Function``'s gradient missing its sum
    over the batch). The error carries ``.analytic`` and
    ``.numeric``, one array per input (``None`` for inputs not checked).

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
    # Not seed 0: users' data often comes from default_rng(0), and v equal to X makes
    # X.T @ v symmetric, which would hide a transposed dW.
    v = np.random.default_rng(_SEED).standard_normal(out.shape)

    def projected() -> float:
        # not under no_grad: fn may itself take gradients (checking second derivatives)
        return float(np.sum(v * fn(*xs).data))

    names = {id(xs[i]): _input_label(i, given[i]) for i in wrt}
    shapes: list[dict] = []
    if not out.requires_grad:
        analytic = [np.zeros(xs[i].shape) for i in wrt]
    else:
        from .teaching import trace_backward  # the ledger sits above check in the import order

        with trace_backward() as steps:
            try:
                found = grad(out, [xs[i] for i in wrt], grad_outputs=v, allow_unused=True)
            except (ValueError, TypeError) as e:
                culprit = _failing_function(out, v, steps, names)
                if culprit is None:
                    raise
                raise GradcheckError(_message([culprit], len(wrt)), rows=[culprit]) from e
        analytic = [np.zeros(xs[i].shape) if g is None else g for i, g in zip(wrt, found)]
        shapes = _unsummed(steps, names)

    rows: list[dict] = list(shapes)
    numerics = []
    base: float | None = None  # <v, fn(x)>, for one-sided slopes at a kink
    for i, a in zip(wrt, analytic):
        data = xs[i].data
        up, down = np.empty(data.shape), np.empty(data.shape)
        for idx in np.ndindex(data.shape):
            saved = data[idx]
            data[idx] = saved + eps
            up[idx] = projected()
            data[idx] = saved - eps
            down[idx] = projected()
            data[idx] = saved
        numeric = (up - down) / (2 * eps)
        numerics.append(numeric)
        excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        excess = np.where(np.isnan(excess), np.inf, excess)
        if excess.size and excess.max() > 0:
            base = projected() if base is None else base
            excess[at_a_kink(a, up, down, base, eps, atol, rtol)] = -np.inf
        if excess.size and excess.max() > 0:
            worst = np.unravel_index(np.argmax(excess), excess.shape)
            rows.append(
                {
                    "input": names[id(xs[i])],
                    "index": tuple(map(int, worst)),
                    "analytic": float(a[worst]),
                    "numeric": float(numeric[worst]),
                    "allowed": atol + rtol * abs(float(numeric[worst])),
                    "diagnosis": diagnose(a, numeric, atol, rtol),
                }
            )
    if rows:
        per_input: list[Any] = [None] * len(given)
        numeric_per_input: list[Any] = [None] * len(given)
        for i, a, n in zip(wrt, analytic, numerics):
            per_input[i], numeric_per_input[i] = np.asarray(a), n
        for row in rows:
            if "message" not in row:
                row["message"] = _line(row)
        raise GradcheckError(
            _message(rows, len(wrt)), analytic=per_input, numeric=numeric_per_input, rows=rows
        )
    return True


def _input_label(i: int, x: Any) -> str:
    name = f" '{x.name}'" if getattr(x, "name", None) else ""
    return f"input {i}{name} ({describe(x)})"


def _argument(position: int, x: Any) -> str:
    """A Function's argument that is not one of gradcheck's inputs (an intermediate)."""
    name = f" '{x.name}'" if getattr(x, "name", None) else ""
    return f"its argument {position}{name} ({describe(x)})"


def _line(row: dict) -> str:
    text = (
        f"{row['input']} at index {row['index']}: "
        f"analytic {row['analytic']:.10g} vs numeric {row['numeric']:.10g} "
        f"(differ by {abs(row['analytic'] - row['numeric']):.3g}; allowed "
        f"atol + rtol*|numeric| = {row['allowed']:.3g})"
    )
    return text + (f"; {row['diagnosis']}" if row.get("diagnosis") else "")


def _message(rows: list[dict], checked: int) -> str:
    """One paragraph per problem, wrapped so a traceback or a docs page need not scroll."""
    if len(rows) == 1:
        return _wrap("gradcheck: " + rows[0]["message"])
    head = f"gradcheck: {len(rows)} problems among the {checked} input(s) checked:"
    return "\n".join([head, *(_wrap("- " + r["message"]) for r in rows)])


def _wrap(text: str) -> str:
    return "\n".join(
        textwrap.wrap(
            text, width=92, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
        )
    )


# ---- recognising the mistake ------------------------------------------------------------


def diagnose(
    analytic: np.ndarray, numeric: np.ndarray, atol: float = 1e-5, rtol: float = 1e-3
) -> str:
    """Say in words how ``analytic`` relates to ``numeric``, when it is a common mistake.

    Recognised: all zeros (the gradient never arrived), the transpose (a square
    ``dW`` written ``dZ.T @ X``), a constant factor (``-1``: the sign; ``1/N``:
    an average too many or a sum too few). Returns ``""`` otherwise.

    >>> tape.check.diagnose(np.array([1.0, -2.0]), np.array([-1.0, 2.0]))
    'it is the numeric one with the opposite sign: a sign is off (a - b for b - a?)'
    """
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)

    def close(x: np.ndarray, y: np.ndarray) -> bool:
        return bool(np.all(np.abs(x - y) <= atol + rtol * np.abs(y)))

    if not np.isfinite(a).all() or not (np.abs(n) > atol).any():
        return "" if np.isfinite(a).all() else "the analytic gradient has NaN or Inf entries"
    if not a.any():
        return "the analytic gradient is all zeros: did backward return None or 0 for this input?"
    if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 and close(a, n.T):
        return (
            "it is the transpose of the numeric one: the gradient is transposed "
            "(for out = X @ W, dW = X.T @ dZ, not dZ.T @ X)"
        )
    scale = float(np.vdot(a, n) / np.vdot(n, n))
    if np.isfinite(scale) and scale != 0 and close(a, scale * n):
        if abs(scale + 1) < 1e-6:
            return "it is the numeric one with the opposite sign: a sign is off (a - b for b - a?)"
        return f"the analytic gradient is the numeric one × {_factor(scale)}"
    return ""


def _factor(scale: float) -> str:
    """``0.25`` as ``0.25 (= 1/4)`` with what such a factor usually means."""
    sign = "-" if scale < 0 else ""
    s = abs(scale)
    if s < 1 and abs(1 / s - round(1 / s)) < 1e-6 * (1 / s):
        return (
            f"{sign}1/{round(1 / s)} ({scale:.6g}): divided by a count it should not be "
            "(a mean where a sum belongs, or a 1/N applied twice)"
        )
    if s > 1 and abs(s - round(s)) < 1e-6 * s:
        return (
            f"{sign}{round(s)}: multiplied by a count it should not be "
            "(a sum where a mean belongs, a 1/N left out, or a term counted twice)"
        )
    return f"{scale:.6g}: scaled by a constant"


# ---- custom Functions whose backward returns another shape ------------------------------


def _unsummed(steps: Any, names: dict) -> list[dict]:
    """Each custom ``Function`` contribution the engine had to sum back to its input's shape.

    The engine sums such a gradient silently (as PyTorch does), so ``.grad`` is
    right; the ledger of the pass keeps the shape the backward returned.
    """
    rows, seen = [], set()
    for step in steps:
        node = step.node
        if not isinstance(node.params.get("ctx"), Context):
            continue  # built-in ops return broadcast shapes by design
        sent, shape = tuple(step.sent_shape), tuple(step.target.shape)
        if sent == shape or (node.index, step.position) in seen:
            continue
        seen.add((node.index, step.position))
        g = _grad_name(node.op)
        fix = _sum_code(g, sent, shape)
        target = names.get(id(step.target)) or _argument(step.position, step.target)
        message = (
            f"{node.op} (recorded at {where_recorded(node)}) returned a gradient of shape "
            f"{sent} for {target}: "
            f"it is missing the sum over the batch — return {fix}. backward() summed it back "
            "for you, so .grad was right, but a Function's backward must return its input's shape"
        )
        diagnosis = (
            f"{node.op}'s backward returned shape {sent}: it is missing the sum over the "
            f"batch — return {fix}"
        )
        rows.append(
            {
                "input": target,
                "function": node.op,
                "sent": sent,
                "fix": fix,
                "diagnosis": diagnosis,
                "message": message,
            }
        )
    return rows


def _sum_code(g: str, sent: tuple, shape: tuple) -> str:
    """The NumPy expression that sums ``g`` of shape ``sent`` back to ``shape``."""
    lead = len(sent) - len(shape)
    if lead < 0:
        return f"an array of shape {shape}"
    axes = list(range(lead))
    kept = [lead + i for i, n in enumerate(shape) if n == 1 and sent[lead + i] != 1]
    parts = []
    if axes:
        parts.append(f".sum({axes[0] if len(axes) == 1 else tuple(axes)})")
    if kept:
        kept_axes = [k - lead for k in kept]
        where = kept_axes[0] if len(kept_axes) == 1 else tuple(kept_axes)
        parts.append(f".sum({where}, keepdims=True)")
    return f"`{g}{''.join(parts)}`" if parts else f"an array of shape {shape}"


def _grad_name(op: str) -> str:
    """What the Function's backward calls its upstream gradient (``dZ``), else ``grad``."""
    todo, found = list(Function.__subclasses__()), []
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__name__ == op:
            found.append(cls)
    names = {tuple(inspect.signature(cls.backward).parameters)[1:] for cls in found}
    # classes of one name (redefined in a notebook cell) usually agree on it
    return names.pop()[0] if len(names) == 1 and len(found[0:1]) else "grad"


def _failing_function(out: Tensor, v: np.ndarray, steps: Any, names: dict) -> dict | None:
    """After the analytic pass raised: the custom ``Function`` whose backward broke it, and how.

    The ledger of the failed pass says which gradient reached each record; the
    newest ``Function`` that got one is run again with it (``_call_backward``)
    to see what its backward does: raise (NumPy's bare shape complaint, which
    names no layer), or return a gradient no sum can bring to its input's shape.
    """
    reached = {s.target.node: s.grad_after for s in steps if s.target.node is not None}
    if out.node is not None:
        reached[out.node] = v
    functions = [n for n in reached if isinstance(n.params.get("ctx"), Context)]
    for node in sorted(functions, key=lambda n: n.index, reverse=True):
        g = np.asarray(reached[node])
        gname = _grad_name(node.op)
        args = ", ".join(describe(a) for a in node.inputs)
        head = f"{node.op} (recorded at {where_recorded(node)})"
        try:
            parts = _call_backward(node, g)
        except (ValueError, TypeError) as e:
            message = (
                f"{head}: its backward raised on {gname} of shape {g.shape} with inputs "
                f"({args}): {e}. Each gradient it returns must have its input's shape: "
                + ", ".join(f"{tuple(a.shape)}" for a in node.inputs)
            )
            return {"input": f"{node.op}'s backward", "function": node.op, "message": message}
        for position, (a, part) in enumerate(zip(node.inputs, parts)):
            if part is None or not a.requires_grad:
                continue
            sent, shape = tuple(np.shape(part)), tuple(a.shape)
            if _sums_back(sent, shape):
                continue
            target = names.get(id(a)) or _argument(position, a)
            if len(sent) == 2 and sent == shape[::-1]:
                how = (
                    f"it is transposed: return its transpose (for out = X @ W, "
                    f"dW = X.T @ {gname}, not {gname}.T @ X)"
                )
            else:
                how = f"it must have the input's shape {shape}"
            message = f"{head} returned a gradient of shape {sent} for {target}: {how}"
            return {
                "input": target,
                "function": node.op,
                "sent": sent,
                "diagnosis": f"{node.op}'s backward: {how}",
                "message": message,
            }
    return None


def _sums_back(sent: tuple, shape: tuple) -> bool:
    """Whether a gradient of shape ``sent`` sums back to ``shape`` (NumPy's broadcasting)."""
    lead = len(sent) - len(shape)
    return lead >= 0 and all(n in (1, m) for n, m in zip(shape, sent[lead:]))


def _call_backward(node: Any, g: np.ndarray) -> tuple:
    """Run a custom Function's backward on its record, as the engine does; the raw result.

    The engine's walk hands the results on only after bringing them to their
    inputs' shapes (or raising); to say which shape was wrong gradcheck runs
    the record's VJP again itself, through ``run_vjp``.
    """
    return tuple(run_vjp(node, g))


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
            f"that tape.grad received as grad_outputs): {e}",
            analytic=e.analytic,
            numeric=e.numeric,
            rows=e.rows,
        ) from None


# ---- check_graph: every record's VJP on its own ------------------------------------------


class RecordCheck:
    """One record of ``check_graph``: its VJP against finite differences of its own forward.

    ``op``, ``index`` (the tape index) and ``where`` (the user's ``file:line``)
    name the record; ``error`` is the largest ``|analytic − numeric|`` over its
    inputs, ``ok`` whether every entry was within ``atol + rtol·|numeric|``.
    For a wrong record, ``input`` (its argument position), ``label``,
    ``entry`` (the worst index), ``analytic``, ``numeric`` and ``diagnosis``
    describe the worst entry of the first input that fails. ``kinks`` counts
    entries at a kink of the forward (relu at 0), right because they match a
    one-sided slope (see ``at_a_kink``).
    """

    __slots__ = (
        "op",
        "index",
        "where",
        "error",
        "ok",
        "input",
        "label",
        "entry",
        "analytic",
        "numeric",
        "diagnosis",
        "checked",
        "kinks",
    )

    def __init__(self, op: str, index: int, where: str) -> None:
        self.op, self.index, self.where = op, index, where
        self.error = 0.0
        self.ok = True
        self.input: int | None = None
        self.label = ""
        self.entry: tuple | None = None  # None: no single entry (a shape, or a direction)
        self.analytic = self.numeric = float("nan")
        self.diagnosis = ""
        self.checked = 0  # how many inputs had a gradient to check
        self.kinks = 0  # entries at a kink, right because they match a one-sided slope

    @property
    def status(self) -> str:
        """``"ok"``, ``"ok at a kink"`` (an entry matched a one-sided slope) or ``"WRONG"``."""
        return "WRONG" if not self.ok else "ok at a kink" if self.kinks else "ok"

    @property
    def problem(self) -> str:
        """The wrong entry in words (``""`` when the record is right)."""
        if self.ok:
            return ""
        if self.entry is None and np.isnan(self.analytic):  # a shape, not a value, is wrong
            return f"{self.op} (recorded at {self.where}): {self.diagnosis}"
        if self.entry is None:  # an input too large to compare entry by entry
            return (
                f"{self.op} (recorded at {self.where}), its argument {self.input} ({self.label}): "
                f"analytic {self.analytic:.10g} vs numeric {self.numeric:.10g} "
                f"{self.diagnosis}"
            )
        text = (
            f"{self.op} (recorded at {self.where}), its argument {self.input} ({self.label}) "
            f"at index {self.entry}: analytic {self.analytic:.10g} vs numeric "
            f"{self.numeric:.10g} (differ by {abs(self.analytic - self.numeric):.3g})"
        )
        return text + (f"; {self.diagnosis}" if self.diagnosis else "")

    def __repr__(self) -> str:
        state = self.status
        return (
            f"<RecordCheck {self.op}#{self.index} at {self.where}: {state}, error {self.error:.3g}>"
        )


class GraphCheck(Sequence):
    """What ``check_graph`` found: one ``RecordCheck`` per record, oldest first.

    Truthy when every VJP agrees with its forward; ``str`` starts with the
    first wrong record (op, input, line, worst entry), then lists them all;
    ``wrong`` holds the ones that disagree. Shows as a table in Jupyter.
    """

    def __init__(self, rows: list[RecordCheck], atol: float, rtol: float) -> None:
        self.rows = rows
        self.atol, self.rtol = atol, rtol

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        return self.rows[i]

    def __bool__(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def wrong(self) -> list[RecordCheck]:
        """The records whose VJP disagrees with finite differences, oldest first."""
        return [r for r in self.rows if not r.ok]

    def summary(self) -> str:
        wrong = self.wrong
        if not wrong:
            return (
                f"check_graph: all {len(self.rows)} records' VJPs agree with finite "
                "differences of their forward"
            )
        more = f" ({len(wrong)} of {len(self.rows)} records are wrong)" if len(wrong) > 1 else ""
        return _wrap(f"check_graph: the VJP of {wrong[0].problem}{more}")

    def __str__(self) -> str:
        header = ("#", "op", "recorded at", "worst error", "")
        rows = [(str(r.index), r.op, r.where, f"{r.error:.3g}", r.status) for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(
                c.rjust(w) if i in (0, 3) else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in [header, *rows]
        ]
        return "\n".join([self.summary(), "", *lines])

    def __repr__(self) -> str:
        return f"<GraphCheck: {len(self.rows)} records, {len(self.wrong)} wrong>"

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("#", "op", "recorded at", "worst error", "", "what is wrong")
        )
        body = []
        for r in self.rows:
            style = "" if r.ok else ' style="background:#fde2e2"'
            cells = (
                str(r.index),
                f"<code>{_html(r.op)}</code>",
                f"<code>{_html(r.where)}</code>",
                f"{r.error:.3g}",
                r.status if r.ok else "<b>WRONG</b>",
                "" if r.ok else _html(r.problem.split(": ", 1)[-1]),
            )
            body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return (
            f'<div class="tape-check-graph"><p>{_html(self.summary())}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )


def check_graph(
    output: Tensor, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3
) -> GraphCheck:
    """Check every record behind ``output`` on its own: its VJP against its own forward.

    ``gradcheck`` says *whether* a function's gradient is wrong; in a graph of
    twenty ops this says *which* op's backward is. The forward values are
    recomputed oldest first from the leaves and constants; then, at the values
    each record saw, its VJP applied to a fixed random ``v`` is compared with
    central differences of ``<v, forward(inputs)>``, input by input, in
    float64; at a kink (relu at 0) either one-sided slope is right. Custom
    ``Function`` records are checked the same way. The graph
    must not have been released (build it again, or ``backward(retain_graph=True)``).

    Returns a ``GraphCheck``: one row per record (op, line, worst error),
    falsy when a VJP disagrees, its text naming the first wrong record.

    >>> x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    >>> bool(tape.check_graph((x * x.tanh()).sum()))
    True
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"check_graph: output must be a Tensor, got {type(output).__name__}")
    if output.node is None:
        raise ValueError(
            f"check_graph: {_tensor_text(output)} was made by no recorded op, so there is no "
            "backward to check; build it from tensors with requires_grad=True"
        )
    records = reachable([output.node])
    released = next((n for n in records if n.released), None)
    if released is not None:
        raise RuntimeError(
            f"check_graph: the graph of {_tensor_text(output)} was released by "
            f"{released.released} ({released.op!r}, recorded at {where_recorded(released)}, "
            "no longer has the values its VJP reads); build the graph again, or call "
            "backward(retain_graph=True)"
        )
    rng = np.random.default_rng(_SEED)
    values: dict[Node, Any] = {}
    rows = []
    with GradMode(False):
        for node in records:
            arrays = [
                values[p] if type(p) is Node else p.data if isinstance(p, Tensor) else p
                for p in node.parents
            ]
            values[node] = out = np.asarray(_forward(node, arrays))
            rows.append(_check_record(node, arrays, out, rng, eps, atol, rtol))
    return GraphCheck(rows, atol, rtol)


def _forward(node: Any, arrays: Sequence[Any]) -> Any:
    """Run a record's forward again; a custom Function gets a fresh context."""
    params = node.params
    if isinstance(params.get("ctx"), Context):
        params = {**params, "ctx": Context()}
    return node.primitive.forward(*arrays, **params)


def _check_record(
    node: Any,
    arrays: list,
    out: np.ndarray,
    rng: np.random.Generator,
    eps: float,
    atol: float,
    rtol: float,
) -> RecordCheck:
    from .teaching import user_line  # teaching sits above check in the import order

    row = RecordCheck(node.op, node.index, user_line(node))
    v = rng.standard_normal(out.shape)
    try:
        parts = run_vjp(node, v.astype(out.dtype) if out.dtype.kind == "f" else v)
    except Exception as e:  # a backward that raises is wrong too: say how, check the rest
        row.ok, row.error = False, float("inf")
        row.diagnosis = f"its VJP raised {type(e).__name__}: {e}"
        return row
    inputs = node.inputs
    for position, (parent, part) in enumerate(zip(node.parents, parts)):
        if part is None or key_of(parent) is None:
            continue
        x = np.asarray(arrays[position])
        if x.dtype.kind != "f":  # complex and integer inputs have no finite difference here
            continue
        row.checked += 1
        label = _argument_label(inputs[position], x)
        analytic = np.asarray(part.data if isinstance(part, Tensor) else part, dtype=np.float64)
        if "ctx" in node.params and analytic.shape != x.shape and row.ok:
            # a Function must return its input's shape; backward() would sum it back silently
            row.ok, row.input, row.label = False, position, label
            fix = _sum_code(_grad_name(node.op), analytic.shape, x.shape)
            row.diagnosis = (
                f"its backward returned a gradient of shape {analytic.shape} for its argument "
                f"{position} ({label}), whose shape is {x.shape}"
                + (f": it is missing the sum over the batch — return {fix}" if "`" in fix else "")
            )
            row.error = float("inf")
            continue
        try:
            analytic = np.asarray(unbroadcast(analytic, x.shape, node.op, position))
        except ValueError:
            if row.ok:
                row.ok, row.input, row.label = False, position, label
                row.diagnosis = (
                    f"its VJP returned a gradient of shape {analytic.shape} for its argument "
                    f"{position} ({label}), which no sum brings to the input's shape {x.shape}"
                )
            row.error = float("inf")
            continue
        if x.size > ENTRYWISE:  # first along one random direction: two forward calls
            u = rng.standard_normal(x.shape)
            u /= np.linalg.norm(u)
            along = float(np.sum(analytic * u))
            numeric_along = _along(node, arrays, position, v, u, eps)
            miss = abs(along - numeric_along)
            row.error = max(row.error, miss)
            if miss <= atol + rtol * abs(numeric_along):
                continue
            if x.size > ENTRYWISE_WRONG:  # too big to look entry by entry: say so
                if row.ok:
                    row.ok, row.input, row.label = False, position, label
                    row.analytic, row.numeric = along, numeric_along
                    row.diagnosis = "compared along a random direction (too many entries to list)"
                continue
        base, up, down = _numeric(node, arrays, position, v, eps)
        numeric = (up - down) / (2 * eps)
        diff = np.abs(analytic - numeric)
        diff = np.where(np.isnan(diff), np.inf, diff)
        excess = np.asarray(diff - (atol + rtol * np.abs(numeric)))  # 0-d stays an array
        if excess.size and excess.max() > 0:
            kinks = at_a_kink(analytic, up, down, base, eps, atol, rtol) & (excess > 0)
            row.kinks += int(kinks.sum())
            excess[kinks], diff[kinks] = -np.inf, 0.0
        row.error = max(row.error, float(diff.max(initial=0.0)))
        if excess.size and excess.max() > 0 and row.ok:
            worst = np.unravel_index(np.argmax(excess), excess.shape)
            row.ok, row.input, row.label = False, position, label
            row.entry = tuple(map(int, worst))
            row.analytic, row.numeric = float(analytic[worst]), float(numeric[worst])
            row.diagnosis = diagnose(analytic, numeric, atol, rtol)
    return row


ENTRYWISE = 4096  # inputs up to this size are compared entry by entry
ENTRYWISE_WRONG = 262_144  # ... and larger ones, found wrong along a direction, up to this


def _along(
    node: Any, arrays: list, position: int, v: np.ndarray, u: np.ndarray, eps: float
) -> float:
    """The central difference of ``<v, forward(...)>`` along direction ``u`` of one input."""
    args = list(arrays)
    x = np.asarray(arrays[position], dtype=np.float64)
    args[position] = x + eps * u
    up = float(np.sum(v * np.asarray(_forward(node, args), dtype=np.float64)))
    args[position] = x - eps * u
    down = float(np.sum(v * np.asarray(_forward(node, args), dtype=np.float64)))
    return (up - down) / (2 * eps)


def _numeric(node: Any, arrays: list, position: int, v: np.ndarray, eps: float) -> tuple:
    """``<v, forward(...)>`` in float64 at input ``position`` as it is, and with each of its
    entries moved by ``+eps`` and by ``-eps``: the central difference is ``(up - down) / 2
    eps``; with the first, the one-sided slopes (all three computed alike, in float64, or
    a float32 record's rounding, over ``eps``, would pass for a kink)."""
    args = list(arrays)
    x = np.array(arrays[position], dtype=np.float64)
    args[position] = x
    base = float(np.sum(v * np.asarray(_forward(node, args), dtype=np.float64)))
    up, down = np.empty(x.shape), np.empty(x.shape)
    for idx in np.ndindex(x.shape):
        saved = x[idx]
        x[idx] = saved + eps
        up[idx] = float(np.sum(v * np.asarray(_forward(node, args), dtype=np.float64)))
        x[idx] = saved - eps
        down[idx] = float(np.sum(v * np.asarray(_forward(node, args), dtype=np.float64)))
        x[idx] = saved
    return base, up, down


def at_a_kink(
    analytic: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    base: float,
    eps: float,
    atol: float,
    rtol: float,
) -> np.ndarray:
    """Entries where the function has a kink and the gradient is one of its one-sided slopes.

    At a kink (relu or abs at 0, a clamp bound, a max tie) no derivative exists:
    the slope from the left differs from the slope from the right, and the
    central difference is their average. A VJP there picks a side by
    convention (``relu'(0) = 0`` is the left slope, as in PyTorch), so an
    entry is right when it matches either side. Where the two sides agree the
    function is smooth and only the central difference counts.
    """

    def matches(numeric: np.ndarray) -> np.ndarray:
        return np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric)

    left, right = (base - down) / eps, (up - base) / eps
    sides_differ = np.abs(left - right) > 2 * (atol + rtol * np.abs(left))
    return sides_differ & (matches(left) | matches(right))


def _argument_label(t: Any, x: np.ndarray) -> str:
    name = f"'{t.name}' " if getattr(t, "name", None) else ""
    return f"{name}{describe(x)}"


def _html(text: str) -> str:
    """Escape for HTML; `code` in backticks becomes <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _tensor_text(t: Tensor) -> str:
    """``'loss' float64[]``: how a message names a tensor (its name, if it has one)."""
    return (f"'{t.name}' " if t.name else "") + describe(t)
