"""Teaching the accumulation: the ledger of every ``+=`` and a page that steps through it.

Backward visits the records newest first. At each one the op's VJP turns the
gradient arriving at its output into one contribution per input, and the
engine adds each contribution into that input's gradient: ``grad += part``.
A tensor used three times is reached three times, and its gradient is the
sum of the three parts; that sum is the multivariable chain rule.

>>> x = tape.tensor([3.0], requires_grad=True, name="x")
>>> with tape.trace_backward() as steps:
...     (x * x + x).backward(np.ones(1))
>>> print(steps)                 # one line per +=: x collects [1], then [3], then [3]
>>> print(steps.explain(x))      # where did x's gradient come from?
>>> x.grad
array([7.])
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .autodiff import FLOW_LIMIT, Observer, key_of, make_pullback, observe, run, seed, tensor_of
from .errors import describe, from_command_line, where_recorded
from .record import GradMode, Node, reachable
from .tensors import Tensor
from .viz import build_dot, format_array, label_key, pipe, summed_axes, to_networkx


def _snapshot(value: Any) -> Any:
    """An owned copy: the ledger must not change when the engine reuses a buffer."""
    if value is None:
        return None
    return np.array(value.data if isinstance(value, Tensor) else value, copy=True)


def _key(t: Any) -> Any:
    """What the walk accumulates into for ``t``: its record, or the leaf itself."""
    return (t.node or t) if isinstance(t, Tensor) else t


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class Step:
    """One ``+=``: the VJP of ``node`` sent ``contribution`` to its argument ``position``.

    ``target`` is the tensor receiving it; ``grad_before`` is its gradient so
    far in this pass (``None`` for the first contribution) and ``grad_after``
    the sum. ``call`` numbers the backward pass (1, 2, ...) within the trace,
    ``number`` the step. ``summed`` says how the engine summed a broadcast
    gradient back to the target's shape (``"sum over axis 0 → (3,)"``), if it did.
    """

    __slots__ = (
        "number",
        "call",
        "node",
        "key",
        "position",
        "contribution",
        "grad_before",
        "grad_after",
        "sent_shape",
    )

    def __init__(
        self,
        number: int,
        call: int,
        node: Node,
        key: Any,
        position: int,
        contribution: np.ndarray,
        grad_before: np.ndarray | None,
        grad_after: np.ndarray,
        sent_shape: tuple,
    ) -> None:
        self.number = number
        self.call = call
        self.node = node
        self.key = key  # what the walk accumulated into: a record (its output), or a leaf
        self.position = position
        self.contribution = contribution
        self.grad_before = grad_before
        self.grad_after = grad_after
        self.sent_shape = sent_shape

    @property
    def target(self) -> Tensor:
        """The tensor receiving the contribution (a stand-in if it was freed)."""
        return tensor_of(self.key)

    @property
    def summed(self) -> str | None:
        """How the contribution was summed back to the target's shape, or ``None``."""
        shape = self.key.shape if isinstance(self.key, Node) else self.key.data.shape
        return summed_axes(self.sent_shape, shape)

    def __repr__(self) -> str:
        before = "None" if self.grad_before is None else format_array(self.grad_before)
        return (
            f"<Step {self.number} (pass {self.call}): {self.node.op}#{self.node.index} "
            f"arg {self.position} += {format_array(self.contribution)}, "
            f"{before} → {format_array(self.grad_after)}>"
        )


class Explanation(str):
    """What ``steps.explain(t)`` returns: the text itself (a ``str``), and a table in Jupyter.

    ``print(e)`` and ``str(e)`` give the readable lines; at the end of a
    notebook cell it shows as a table, one row per contribution. ``rows``
    holds the cells: pass, step, op, where it was recorded, argument,
    contribution, how it was added, the gradient after.
    """

    rows: list[tuple[str, ...]]

    def __new__(cls, text: str, rows: list[tuple[str, ...]]) -> Explanation:
        self = super().__new__(cls, text)
        self.rows = rows
        return self

    def __repr__(self) -> str:  # a console shows the lines, not one quoted string with \n
        return str(self)

    def _repr_html_(self) -> str:
        head, *rest = str(self).split("\n")
        if not self.rows:
            return f"<p>{html.escape(head)}</p>"
        notes = [line for line in rest if not line.startswith("  ")]
        header = ("pass", "step", "from", "recorded at", "arg", "contribution", "", "after")
        caption = " ".join([head, *notes])
        return _html_table(header, self.rows, caption, right={0, 1, 4}, code={2, 5, 7})


def _html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
    right: set[int] = frozenset(),  # type: ignore[assignment]
    code: set[int] = frozenset(),  # type: ignore[assignment]
) -> str:
    """A small escaped HTML table; cells in ``code`` columns in monospace."""

    def cell(tag: str, i: int, text: str) -> str:
        style = ' style="text-align: right"' if i in right else ""
        body = html.escape(text)
        if tag == "td" and i in code and text:
            body = f"<code>{body}</code>"
        return f"<{tag}{style}>{body}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="tape-table"><p>{html.escape(caption)}</p><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


class _Pass:
    """One backward pass under way, as the ledger gathers it."""

    __slots__ = ("roots", "seeds", "steps", "totals", "pending")

    def __init__(self, roots: list[Any], seeds: list[np.ndarray]) -> None:
        self.roots, self.seeds = roots, seeds
        self.steps: list[Step] = []
        self.totals: dict[Any, np.ndarray] = dict(zip(roots, seeds))  # each key's sum so far
        self.pending: list[tuple[Tensor, np.ndarray, Any]] = []  # leaves' totals, uncommitted


class Steps(Sequence, Observer):
    """The ledger a ``trace_backward`` block fills: one ``Step`` per ``+=``, in order.

    ``len(steps)``, iteration and indexing work like a list; ``str(steps)``
    is a table; ``steps.of(t)`` the steps that fed one tensor, and
    ``steps.explain(t)`` says in words where its gradient came from.
    Tensors are named by ``.name``, results by the record that made them
    (``mul#3``: record 3 of the tape), unnamed leaves ``leaf1, leaf2, ...``.
    """

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self.calls: list[tuple[list[Any], list[np.ndarray]]] = []
        """One entry per backward pass: its outputs (as walk keys) and seeds."""
        self._labels: dict[Any, str] = {}
        # the passes under way, innermost last (a hook may run tape.grad inside a pass): each
        # joins the ledger when it ends, so a pass that raised never happened
        self._open: list[_Pass] = []
        self.commits: list[tuple[int, Tensor, Any, np.ndarray, np.ndarray]] = []
        """Per ``backward()``: ``(pass, leaf, .grad before, the pass's total, .grad after)``."""

    # ---- the observer interface the walk calls ------------------------------------------
    def begin(self, roots: Sequence[Any], seeds: Sequence[Any]) -> None:
        self._open.append(_Pass(list(roots), [_snapshot(s) for s in seeds]))

    def total(self, key: Any, g: Any) -> Any:
        if not isinstance(key, Node):  # a leaf's total: backward() adds it into .grad
            self._open[-1].pending.append((key, _snapshot(g), key.grad))
        return g

    def end(self) -> None:  # the pass succeeded; backward() added each leaf's total to .grad
        done = self._open.pop()
        self.calls.append((done.roots, done.seeds))
        for step in done.steps:  # numbered as they join: an inner pass may have ended first
            step.number, step.call = len(self._steps) + 1, len(self.calls)
            self._steps.append(step)
        for leaf, total, before in done.pending:
            if leaf.grad is not before:  # a new array: backward wrote it (tape.grad writes none)
                was = None if before is None else np.array(before)
                self.commits.append((len(self.calls), leaf, was, total, np.array(leaf.grad)))

    def abort(self) -> None:  # the innermost pass raised: it never happened
        if self._open:
            self._open.pop()

    def sent(self, node: Node, position: int, key: Any, part: Any, raw: Any) -> None:
        current = self._open[-1]
        contribution = _snapshot(part)
        before = current.totals.get(key)
        after = contribution.copy() if before is None else np.asarray(before + contribution)
        current.totals[key] = after
        step = Step(0, 0, node, key, position, contribution, before, after, tuple(np.shape(raw)))
        current.steps.append(step)

    # ---- a list of steps ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    def __getitem__(self, i: Any) -> Any:
        return self._steps[i]

    def of(self, tensor: Tensor) -> list[Step]:
        """The steps whose ``+=`` went into ``tensor``, in order."""
        key = _key(tensor)
        return [s for s in self._steps if s.key is key]

    def label(self, tensor: Tensor) -> str:
        """The name this ledger uses for ``tensor``."""
        key = _key(tensor)
        label = self._labels.get(key)
        if label is None:
            if key.name:
                label = key.name
            elif isinstance(key, Node):
                label = f"{key.op}#{key.index}"
            else:
                unnamed = sum(1 for k in self._labels if not isinstance(k, Node) and not k.name)
                label = f"leaf{unnamed + 1}"
            self._labels[key] = label
        return label

    # ---- words ----------------------------------------------------------------------------
    def explain(self, tensor: Tensor) -> Explanation:
        """Where did ``tensor``'s gradient come from? Each contribution, its op, its pass.

        Returns an ``Explanation``: a ``str`` of readable lines (``print`` it),
        shown as a table in Jupyter.
        """
        name = f"{self.label(tensor)} ({describe(tensor)})"
        steps = self.of(tensor)
        key = _key(tensor)
        seeded = [i for i, (outs, _) in enumerate(self.calls, 1) if any(k is key for k in outs)]
        if not steps and not seeded:
            return Explanation(
                f"{name} received no gradient in the {len(self.calls)} traced pass(es).", []
            )
        lines = [f"{name} received {len(steps)} contribution(s):"]
        rows: list[tuple[str, ...]] = []
        for call in range(1, len(self.calls) + 1):
            mine = [s for s in steps if s.call == call]
            if call in seeded:
                outs, seeds = self.calls[call - 1]
                seed = seeds[next(i for i, k in enumerate(outs) if k is key)]
                lines.append(f"  pass {call}: the seed {format_array(seed)} (backward starts here)")
                rows.append((str(call), "", "the seed", "", "", format_array(seed), "", ""))
            for s in mine:
                node = s.node
                how = "first, kept as is" if s.grad_before is None else "+="
                note = f", {s.summed}" if s.summed else ""
                lines.append(
                    f"  pass {call}, step {s.number}: from {node.op}#{node.index} "
                    f"(recorded at {where_recorded(node)}), as its argument {s.position}: "
                    f"{format_array(s.contribution)}{note} ({how}) → {format_array(s.grad_after)}"
                )
                rows.append(
                    (
                        str(call),
                        str(s.number),
                        f"{node.op}#{node.index}",
                        user_line(node),
                        str(s.position),
                        format_array(s.contribution) + note,
                        how,
                        format_array(s.grad_after),
                    )
                )
            if mine:
                lines.append(f"  total in pass {call}: {format_array(mine[-1].grad_after)}")
            for c, leaf, before, total, after in self.commits:
                if c == call and leaf is tensor:
                    was = "None" if before is None else format_array(before)
                    lines.append(
                        f"  .grad after pass {call}: {was} + {format_array(total)} "
                        f"→ {format_array(after)}"
                    )
        if tensor.node is None and tensor.requires_grad and len(self.calls) > 1:
            lines.append(
                "Each pass starts from nothing; backward() then adds the pass's total into .grad."
            )
        return Explanation("\n".join(lines), rows)

    def _table(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """The ledger's header and one row of cells per ``+=`` (``str`` and HTML share it)."""
        count: dict[tuple[int, Tensor], int] = {}
        for s in self._steps:
            count[s.call, s.key] = count.get((s.call, s.key), 0) + 1
        header = ("step", "pass", "VJP of", "arg", "→ into", "contribution", "before", "after", "")
        by_pass: dict[int, list[tuple[str, ...]]] = {}  # each pass: its steps, then its commits
        seen: dict[tuple[int, Tensor], int] = {}
        for s in self._steps:
            key = (s.call, s.key)
            seen[key] = seen.get(key, 0) + 1
            notes = []
            if count[key] > 1:
                notes.append(
                    f"{'=' if seen[key] == 1 else '+='} ({_ordinal(seen[key])} of {count[key]})"
                )
            if s.summed:
                notes.append(s.summed)
            by_pass.setdefault(s.call, []).append(
                (
                    str(s.number),
                    str(s.call),
                    f"{s.node.op}#{s.node.index}",
                    str(s.position),
                    f"→ {self.label(s.key)}",
                    format_array(s.contribution),
                    "—" if s.grad_before is None else format_array(s.grad_before),
                    format_array(s.grad_after),
                    "; ".join(notes),
                )
            )
        for call, leaf, before, total, after in self.commits:  # backward()'s last +=
            by_pass.setdefault(call, []).append(
                (
                    "",
                    str(call),
                    "backward()",
                    "",
                    f"→ {self.label(leaf)}.grad",
                    format_array(total),
                    "None" if before is None else format_array(before),
                    format_array(after),
                    "the pass's total into .grad" + ("" if before is None else " (+=)"),
                )
            )
        rows = [row for call in sorted(by_pass) for row in by_pass[call]]
        return header, rows

    def __str__(self) -> str:
        if not self._steps:
            return f"(no += recorded in {len(self.calls)} backward pass(es))"
        header, rows = self._table()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        right = {0, 1, 3}

        def line(row: Sequence[str]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            ]
            return "  ".join(cells).rstrip()

        return "\n".join([line(header), *(line(r) for r in rows)])

    def _repr_html_(self) -> str:
        """The ledger as a table in Jupyter: one row per ``+=``."""
        if not self._steps:
            return f"<p>{html.escape(str(self))}</p>"
        header, rows = self._table()
        caption = (
            f"{len(self._steps)} += in {len(self.calls)} backward pass(es), in the order the "
            "walk ran them (newest record first)"
        )
        return _html_table(header, rows, caption, right={0, 1, 3}, code={2, 5, 6, 7})

    def __repr__(self) -> str:
        return f"<Steps: {len(self._steps)} += in {len(self.calls)} backward pass(es)>"


@contextmanager
def trace_backward() -> Iterator[Steps]:
    """Record every ``+=`` of the backward passes run inside the block.

    Works for ``backward()`` and ``tape.grad``; blocks nest (an outer trace
    also sees what an inner one records), and the previous state comes back
    even when the block raises.

    >>> w = tape.tensor([2.0], requires_grad=True, name="w")
    >>> with tape.trace_backward() as steps:
    ...     (w * w).sum().backward()
    >>> len(steps), [s.contribution for s in steps.of(w)]
    (3, [array([2.]), array([2.])])
    >>> w.grad
    array([4.])
    """
    with observe(Steps()) as steps:
        yield steps  # type: ignore[misc]


# ---- the step-through page --------------------------------------------------------------

MAX_RECORDS = 300


def user_line(node: Node) -> str:
    """Where the user's code recorded ``node``, as they would find it again.

    A notebook cell reads ``cell In[3], line 2`` (not the kernel's temporary
    file), a file inside the working directory its relative path, ``<stdin>``
    as Python names it, and an op recorded by the ``tape`` command's own
    expression says so (not the launcher script that ran it).
    """
    where = where_recorded(node)
    path, _, line = where.rpartition(":")
    cell = _notebook_cell(path)
    if cell is not None:
        return f"cell {cell}, line {line}"
    if from_command_line(path):
        return "the expression given to the tape command"
    if path.startswith("<"):
        return where
    try:
        path = str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        pass
    return f"{path}:{line}"


def _notebook_cell(path: str) -> str | None:
    """``In[3]`` when ``path`` is the file IPython compiled a cell under, else ``None``."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    named = getattr(getattr(shell, "compile", None), "format_code_name", None)
    try:
        found = named(path) if named is not None else None
    except Exception:  # an IPython whose compiler keeps its names differently
        return None
    return found[1] if found else None


# Each op's VJP as a person writes it, per input: ``{0}``, ``{1}`` are the inputs' symbols,
# ``out`` the forward's result, ``g`` the gradient arriving at it. The code's own formulas
# live in ops.py beside each forward (docs/ops.md lists them all); these are for reading.
_FORMULAS: dict[str, tuple[str, ...]] = {
    "add": ("g", "g"),
    "sub": ("g", "−g"),
    "mul": ("g ⊙ {1}", "g ⊙ {0}"),
    "div": ("g / {1}", "−g ⊙ {0} / {1}²"),
    "neg": ("−g",),
    "pow": ("g ⊙ {1} · {0}^({1} − 1)", "g ⊙ out ⊙ log {0}"),
    "matmul": ("g @ {1}ᵀ", "{0}ᵀ @ g"),
    "exp": ("g ⊙ out",),
    "log": ("g / {0}",),
    "sqrt": ("g / (2 out)",),
    "abs": ("g ⊙ sign({0})",),
    "tanh": ("g ⊙ (1 − out²)",),
    "sigmoid": ("g ⊙ out ⊙ (1 − out)",),
    "relu": ("g ⊙ (out > 0)",),
    "square": ("2 {0} ⊙ g",),
    "reciprocal": ("−g ⊙ out²",),
    "sin": ("g ⊙ cos {0}",),
    "cos": ("−g ⊙ sin {0}",),
    "log1p": ("g / (1 + {0})",),
    "expm1": ("g ⊙ (out + 1)",),
    "clamp": ("g ⊙ (min ≤ {0} ≤ max)",),
    "maximum": ("g ⊙ ({0} > {1}), ½ g at ties", "g ⊙ ({1} > {0}), ½ g at ties"),
    "minimum": ("g ⊙ ({0} < {1}), ½ g at ties", "g ⊙ ({1} < {0}), ½ g at ties"),
    "sum": ("g copied back to every entry of {0}",),
    "mean": ("g / {N}, copied back to every entry of {0}",),
    "max": ("g at the entries of {0} equal to the max (ties share it)",),
    "min": ("g at the entries of {0} equal to the min (ties share it)",),
    "softmax": ("out ⊙ (g − Σ g ⊙ out)",),
    "log_softmax": ("g − softmax({0}) ⊙ Σ g",),
    "reshape": ("g reshaped back",),
    "transpose": ("g transposed back",),
    "getitem": ("zeros like {0}, g added at {0}{key}",),
    "norm": ("g ⊙ {0} / out",),
}


def _symbol(t: Any, position: int, op: str) -> str:
    """What a formula calls an input: its name when short, else ``x``/``y`` (``A``/``B`` for @)."""
    name = getattr(t, "name", None)
    if name and name.isidentifier() and len(name) <= 8:
        return name
    if not t.requires_grad and t.node is None and t.size == 1:  # a number: say which
        try:
            return format_array(t.data.reshape(()))
        except RuntimeError:  # freed with its record: only its shape is left
            pass
    letters = ("A", "B") if op == "matmul" else ("x", "y", "z")
    return letters[position] if position < len(letters) else f"x{position}"


def _shape(shape: tuple) -> str:
    return str(tuple(shape))


def formula(step: Step) -> tuple[str, str]:
    """The VJP behind one ``+=`` with this record's shapes: ``("dX = g @ Wᵀ", "(4, 2) @ ...")``."""
    node = step.node
    inputs = node.inputs
    symbols = [_symbol(t, i, node.op) for i, t in enumerate(inputs)]
    i = step.position
    target = f"d{symbols[i]}"
    out_shape, shape = tuple(node.shape), tuple(inputs[i].shape)
    rows = _FORMULAS.get(node.op)
    if "ctx" in node.params:  # a custom Function: its backward is the formula
        rhs = f"{node.op}.backward(ctx, g)[{i}]"
    elif rows is not None and i < len(rows):
        n_in = int(np.prod(shape, dtype=np.int64))
        n_out = int(np.prod(out_shape, dtype=np.int64))
        key = label_key(node.params.get("key")) if node.op == "getitem" else ""
        rhs = rows[i].format(*symbols, N=max(n_in // max(n_out, 1), 1), key=key)
    else:
        rhs = f"the VJP of {node.op}, applied to g"
    if node.op == "matmul" and len(out_shape) == 2 and all(len(t.shape) == 2 for t in inputs):
        a, b = (tuple(t.shape) for t in inputs)
        if i == 0:
            shapes = f"{_shape(out_shape)} @ {_shape(b[::-1])} → {_shape(a)}"
        else:
            shapes = f"{_shape(a[::-1])} @ {_shape(out_shape)} → {_shape(b)}"
    else:
        shapes = f"g {_shape(out_shape)} → {_shape(step.sent_shape)}"
        if step.summed:
            shapes += f", {step.summed}"
    return f"{target} = {rhs}", shapes


def _contributions(n: int) -> str:
    return "its only contribution" if n == 1 else f"the sum of {n} contributions"


def _cell(value: np.ndarray) -> str:
    """A table cell: up to 12 values in full, a matrix one row per line."""
    if value.ndim == 2 and value.size <= 12:
        return "[" + ",\n ".join(format_array(row, 12) for row in value) + "]"
    return format_array(value, 12)


def _frames(graph: Any, steps: Steps, visited: list[Node], output: Tensor, seed: Any) -> tuple:
    """The page's frames, and the longest grad text each tensor node ever shows."""
    tensor_ids = {  # a raw constant (a number, an array) is nobody's key: it gets no gradient
        a["key"]: n
        for n, a in graph.nodes(data=True)
        if a["kind"] == "tensor" and (type(a["key"]) is Node or isinstance(a["key"], Tensor))
    }
    op_ids = {a["index"]: n for n, a in graph.nodes(data=True) if a["kind"] == "op"}
    edge_of = {}
    out_edge = {}
    for u, v, key, a in graph.edges(keys=True, data=True):
        if a["kind"] == "argument":
            edge_of[graph.nodes[v]["index"], key] = f"e_{u}_{v}_{key}"
        else:
            out_edge[u] = f"e_{u}_{v}_{key}"
    grad_ids = [
        n for n, a in graph.nodes(data=True) if a["kind"] == "tensor" and a["requires_grad"]
    ]
    state = {n: "grad: not computed yet" for n in grad_ids}
    longest = dict(state)
    out_id = tensor_ids[_key(output)]
    uses = {n: graph.nodes[n]["uses"] for n in grad_ids}

    def snapshot(updated: list[str]) -> dict:
        for n in updated:
            if len(state[n]) > len(longest[n]):
                longest[n] = state[n]
        return {
            "grads": {f"n_{n}": state[n] for n in grad_ids},
            "updated": [f"n_{n}" for n in updated],
        }

    frames = []
    state[out_id] = f"grad {format_array(seed)}"
    frames.append(
        {
            "title": f"Start: backward from {steps.label(output)}",
            "text": [
                f"The forward pass recorded {len(op_ids)} op(s); backward visits them "
                "newest first.",
                f"It starts at the output {steps.label(output)} ({describe(output)}) with the "
                f"seed {format_array(seed)}, the gradient of the output with respect to itself.",
                "Press → (or Next) to run the first VJP.",
            ],
            "counter": f"Start: {len(visited)} steps to go",
            "formula": [],
            "active": f"n_{out_id}",
            "flow": [],
            "incoming": [],
            "header": [],
            "rows": [],
            **snapshot([out_id]),
        }
    )
    by_node: dict[int, list[Step]] = {}
    for s in steps:
        by_node.setdefault(s.node.index, []).append(s)
    received: dict[Any, int] = {}
    done_edges: list[str] = []
    for number, node in enumerate(visited, 1):
        mine = by_node.get(node.index, [])
        out = node
        g_in = state.get(tensor_ids.get(node, ""), "")
        text = [
            f"The VJP of {node.op} (recorded at {user_line(node)}) runs.",
            f"The gradient arriving at its output {steps.label(out)} is "
            f"{g_in.removeprefix('grad ')}: all of it, since every op that used "
            f"{steps.label(out)} was recorded later and has already sent its part.",
        ]
        if not mine:
            text.append("None of its inputs needs a gradient, so it sends nothing.")
        rows = []
        updated = []
        for s in mine:
            tid = tensor_ids[s.key]
            received[s.key] = received.get(s.key, 0) + 1
            label = steps.label(s.key)
            if s.grad_before is None:
                how = "first contribution: kept as is"
            else:
                how = f"+= ({_ordinal(received[s.key])} of {uses[tid]} uses)"
            before = "—" if s.grad_before is None else _cell(s.grad_before)
            rows.append(
                [label, str(s.position), _cell(s.contribution), before, _cell(s.grad_after), how]
            )
            if s.summed:
                text.append(
                    f"Argument {s.position} ({label}) was broadcast in forward: the VJP sent shape "
                    f"{s.sent_shape}, so the engine summed it back: {s.summed}."
                )
            if uses[tid] > 1 and received[s.key] == uses[tid]:
                text.append(
                    f"{label} is used {uses[tid]} times: all {uses[tid]} contributions have "
                    f"now been added, its gradient {format_array(s.grad_after)} is complete."
                )
            state[tid] = f"grad {format_array(s.grad_after)}"
            updated.append(tid)
        flow = [edge_of[node.index, s.position] for s in mine]
        formulas = [formula(s) for s in mine]
        width = max((len(lhs) for lhs, _ in formulas), default=0)
        named = {}  # a formula's x for an unnamed input: say which tensor of the table it is
        for s in mine:
            symbol = _symbol(s.node.inputs[s.position], s.position, s.node.op)
            if symbol != steps.label(s.key):
                named[symbol] = steps.label(s.key)
        frames.append(
            {
                "title": f"Step {number} of {len(visited)}: VJP of {node.op}#{node.index}",
                "counter": f"Step {number} of {len(visited)}",
                "formula": [f"{lhs.ljust(width)}   {shapes}" for lhs, shapes in formulas]
                + [f"({', '.join(f'{k} is {v}' for k, v in named.items())})"] * bool(named),
                "text": text,
                "active": f"n_{op_ids[node.index]}",
                "flow": flow,
                "incoming": [out_edge[op_ids[node.index]]],
                "done": list(done_edges),
                "header": ["into", "arg", "contribution", "grad before", "grad after", ""],
                "rows": rows,
                **snapshot(updated),
            }
        )
        done_edges.extend(flow)
    leaves = [(t, n) for t, n in tensor_ids.items() if not isinstance(t, Node) and t in received]
    frames.append(
        {
            "title": "Done: every leaf has its total gradient",
            "counter": f"Done: {len(visited)} of {len(visited)} steps",
            "formula": [],
            "text": [
                "Backward is complete. backward() would now add these totals into each leaf's "
                ".grad (+=, so a second call doubles them); this page ran its own pass, like "
                "tape.grad, and touched no .grad.",
            ],
            "active": None,
            "flow": [],
            "incoming": [],
            "done": list(done_edges),
            "header": ["leaf", "total gradient", ""],
            "rows": [
                [
                    steps.label(t),
                    _cell(steps.of(t)[-1].grad_after),
                    _contributions(len(steps.of(t))),
                ]
                for t, _ in leaves
            ],
            **snapshot([]),
        }
    )
    frames[0]["done"] = []
    return frames, longest


def render_steps(
    output: Tensor,
    path: str | os.PathLike = "backward.html",
    grad: Any = None,
    *,
    show_data: bool = True,
    title: str | None = None,
) -> Path:
    """Write one self-contained HTML page that steps through the backward pass of ``output``.

    Frame by frame: the node whose VJP runs is highlighted, its VJP formula is
    shown with this record's shapes (``dX = g @ Wᵀ   (4, 2) @ (2, 3) → (4, 3)``),
    the contributions it sends appear on its edges, and a table gives each
    parent's gradient before and after ``+=``. Buttons and the arrow keys move
    between frames. The page carries its picture inline (one SVG, laid out
    once so nothing jumps between frames) and needs no network.

    Runs its own backward pass, like ``tape.grad``: no ``.grad`` is touched and
    the graph is kept (it also works after a ``backward`` released it).
    ``grad`` seeds a non-scalar output, as in ``backward``. Needs Graphviz to
    lay out the graph (see ``tape.render``). Returns the path written;
    ``show_steps`` shows the same page inline in Jupyter.

    >>> path = tape.render_steps(loss, "backward.html")   # open it in a browser
    """
    page = _steps_page(output, grad, show_data, title, "render_steps")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


class StepsPage:
    """The step-through page of ``show_steps``, held in memory: ``.html`` is the whole page.

    In Jupyter it shows inline, inside an isolated ``<iframe srcdoc>`` so the
    page keeps its own styles and script and leaves the notebook's alone.
    ``save(path)`` writes it, as ``render_steps`` would have.
    """

    def __init__(self, page: str, height: int) -> None:
        self.html = page
        self.height = height

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        # srcdoc is an attribute: escaping quotes and & keeps the page one attribute value
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
            f'title="backward pass, step by step" style="width: 100%; height: {self.height}px; '
            'border: 1px solid #ccc"></iframe>'
        )

    def __repr__(self) -> str:
        return f"<StepsPage: {len(self.html):,} characters of HTML; shows itself in Jupyter>"


def show_steps(
    output: Tensor,
    grad: Any = None,
    *,
    show_data: bool = True,
    title: str | None = None,
    height: int | None = None,
) -> StepsPage:
    """The ``render_steps`` page, shown inline in Jupyter; nothing is written to disk.

    Returns a ``StepsPage`` whose ``_repr_html_`` embeds the page in an
    isolated frame (``height`` in pixels, by default from the drawing's size).

    >>> tape.show_steps(loss)        # the last expression of a cell: the page shows below it
    """
    page = _steps_page(output, grad, show_data, title, "show_steps")
    if height is None:
        found = re.search(r'<svg[^>]*height="([\d.]+)pt"', page)
        drawn = float(found.group(1)) * 4 / 3 if found else 700.0
        height = int(min(max(drawn + 160, 560), 900))  # taller: the frame scrolls itself
    return StepsPage(page, height)


def _steps_page(output: Tensor, grad: Any, show_data: bool, title: str | None, what: str) -> str:
    if not isinstance(output, Tensor):
        raise TypeError(f"{what}: output must be a Tensor, got {type(output).__name__}")
    if output.node is None:
        raise RuntimeError(
            f"{what}: {_tensor_text(output)} was made by no recorded op, so there is no "
            "backward pass to show; build it from tensors with requires_grad=True"
        )
    start = seed(output, grad, what)
    graph = to_networkx(output, flow=False)
    n_ops = sum(1 for _, k in graph.nodes(data="kind") if k == "op")
    if n_ops > MAX_RECORDS:
        raise ValueError(
            f"{what}: the graph has {n_ops} records, more than a step-through page can "
            f"show ({MAX_RECORDS}); draw it with tape.render(output, 'graph.svg', collapse=True)"
        )
    steps = Steps()
    if output.node.released is None:
        released = next((n for n in reachable([output.node]) if n.released), None)
        if released is not None:  # e.g. render_steps(y.sum()) after y.sum().backward()
            raise RuntimeError(
                f"{what}: {_tensor_text(output)} was made from records that "
                f"{released.released} released ({released.op!r}, recorded at "
                f"{where_recorded(released)}), so the page's own pass cannot walk them; to "
                f"show that backward pass, give {what} the tensor it started from, or call "
                "backward(retain_graph=True)"
            )
        with GradMode(False):
            _, visited, _ = run([output], [start], make_pullback(graph=False), [steps])
        steps.end()  # the page's own pass, which writes no .grad
    else:  # the values are gone: show what the releasing pass sent, kept on the records
        start, visited = _replay_sent(output, steps)

    frames, longest = _frames(graph, steps, visited, output, start)
    titles = {}
    for n, a in graph.nodes(data=True):
        if a["kind"] == "op":
            titles[n] = f"{a['op']} #{a['index']}"
        elif a["tensor"] is not None:
            titles[n] = steps.label(a["tensor"])
    edge_ids = {
        (graph.nodes[v]["index"], key): (u, v, key)
        for u, v, key, kind in graph.edges(keys=True, data="kind")
        if kind == "argument"
    }
    edge_texts = {}
    for s in steps:
        lines = [f"+= {format_array(s.contribution)}"]
        if s.summed:
            lines.append(s.summed)
        edge_texts[edge_ids[s.node.index, s.position]] = lines
    dot = build_dot(
        graph,
        show_data=show_data,
        show_grad=True,
        ids=True,
        titles=titles,
        grad_texts=longest,
        edge_texts=edge_texts,
    )
    svg = pipe(dot, "svg").decode()
    svg = svg[svg.index("<svg") :]
    heading = title or f"Backward pass of {steps.label(output)}, step by step"
    return _page(heading, svg, {"frames": frames})


def _replay_sent(output: Tensor, steps: Steps) -> tuple[np.ndarray, list[Node]]:
    """Feed ``steps`` what the last backward pass sent along each edge (``node.sent``)."""
    visited = reachable([output.node])[::-1]  # the walk's order: newest first
    missing = [n for n in visited if n.sent is None or _too_big(n.sent)]
    if missing:
        raise RuntimeError(
            f"render_steps: the graph of {_tensor_text(output)} was released by backward(), and "
            f"what flowed through {missing[0].op!r} was not kept (a gradient over "
            f"{FLOW_LIMIT} entries keeps only its shape); call render_steps before "
            "backward(), or pass retain_graph=True"
        )
    start = np.asarray(output.node.sent[0])
    steps.begin([output.node], [start])
    for node in visited:
        for position, (part, raw_shape) in sorted(node.sent[1].items()):
            raw = np.broadcast_to(np.zeros((), part.dtype), raw_shape)
            steps.sent(node, position, key_of(node.parents[position]), part, raw)
    steps.end()
    return start, visited


def _too_big(sent: tuple) -> bool:
    g, parts = sent
    return not isinstance(g, np.ndarray) or any(
        not isinstance(part, np.ndarray) for part, _ in parts.values()
    )


def _page(heading: str, svg: str, data: dict) -> str:
    """The template filled in one pass: a value put in is never searched for markers again."""
    # JSON inside <script> must not be able to close it: escape <, > and &.
    payload = (
        json.dumps(data, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    values = {"heading": html.escape(heading), "svg": svg, "data": payload}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _TEMPLATE)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{heading}}</title>
<style>
  body { font: 15px/1.45 Helvetica, Arial, sans-serif; margin: 0; color: #222; }
  header { padding: 10px 18px; background: #f6f6f6; border-bottom: 1px solid #ddd;
           position: sticky; top: 0; z-index: 2; }
  header h1 { font-size: 18px; margin: 0 0 6px 0; }
  #controls button { font-size: 14px; padding: 4px 12px; margin-right: 4px; cursor: pointer; }
  #counter { margin-left: 10px; color: #555; }
  main { display: flex; gap: 18px; padding: 14px 18px; align-items: flex-start; }
  #graph { flex: 1 1 55%; overflow: auto; min-width: 0; }
  #graph svg { max-width: 100%; height: auto; }
  #panel { flex: 1 1 45%; min-width: 320px; position: sticky; top: 96px; overflow-x: auto; }
  #frame-title { font-size: 17px; margin: 0 0 8px 0; }
  #frame-body p { margin: 4px 0; }
  #frame-formula { margin: 8px 0; padding: 6px 10px; background: #fff8e1;
                   border-left: 3px solid #b08900; font-size: 13px; white-space: pre;
                   overflow-x: auto;
                   font-family: Menlo, Consolas, "DejaVu Sans Mono", monospace; }
  #frame-formula:empty { display: none; }
  table { border-collapse: collapse; margin-top: 10px; font-size: 13px; }
  th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left;
           font-family: Menlo, Consolas, "DejaVu Sans Mono", monospace; }
  td.matrix { white-space: pre; }
  th { background: #f0f0f0; font-family: Helvetica, Arial, sans-serif; }
  .hint { color: #777; font-size: 13px; margin-top: 14px; }
  /* Narrow (a docs column, a half-width notebook; the script sets the class, as some
     notebook renderers drop @media rules): the explanation stays on top, the picture
     gets the full width and scrolls beneath it. */
  body.narrow main { flex-direction: column; gap: 8px; }
  body.narrow #graph { width: 100%; }
  body.narrow #panel { order: -1; width: 100%; min-width: 0; box-sizing: border-box;
                       top: 86px; max-height: 42vh; overflow: auto; background: #fff;
                       z-index: 1; border-bottom: 1px solid #ddd; padding-bottom: 6px; }
  body.narrow #panel .hint { display: none; }
  g.edge text { visibility: hidden; }
  g.edge.done text, g.edge.flow text { visibility: visible; }
  g.edge.done text { fill: #999999; }
  g.edge.flow path { stroke: #d62728; stroke-width: 3px; }
  g.edge.flow polygon { stroke: #d62728; fill: #d62728; }
  g.edge.flow text { fill: #d62728; font-weight: bold; }
  g.edge.incoming path { stroke: #d62728; stroke-dasharray: 5 3; stroke-width: 2px; }
  g.node.active ellipse, g.node.active polygon, g.node.active path {
    stroke: #d62728; stroke-width: 4px; }
  g.node.updated ellipse, g.node.updated polygon, g.node.updated path { fill: #ffd9d9; }
</style>
</head>
<body>
<header>
  <h1>{{heading}}</h1>
  <div id="controls">
    <button id="first" title="first frame (Home)">&#xAB; first</button>
    <button id="prev" title="previous frame (&#x2190;)">&#x25C0; prev</button>
    <button id="next" title="next frame (&#x2192;)">next &#x25B6;</button>
    <button id="last" title="last frame (End)">last &#xBB;</button>
    <span id="counter"></span>
  </div>
</header>
<main>
  <div id="graph">{{svg}}</div>
  <div id="panel">
    <h2 id="frame-title"></h2>
    <div id="frame-formula" title="the VJP with this record's shapes"></div>
    <div id="frame-body"></div>
    <table id="frame-table"></table>
    <p class="hint">Keys: &#x2192; / &#x2190; step, Home / End jump. Red: the node whose VJP
      runs and the contributions it sends; pink: gradients that just changed by +=.</p>
  </div>
</main>
<noscript>This page needs JavaScript to step through the frames.</noscript>
<script type="application/json" id="frames">{{data}}</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("frames").textContent);
  var frames = data.frames, k = 0;
  function byId(id) { return id ? document.getElementById(id) : null; }
  function classes(selector, name, ids) {
    document.querySelectorAll(selector).forEach(function (el) { el.classList.remove(name); });
    (ids || []).forEach(function (id) { var el = byId(id); if (el) el.classList.add(name); });
  }
  function cell(row, tag, text) {
    var c = document.createElement(tag); c.textContent = text;
    if (text.indexOf("\\n") >= 0) c.className = "matrix";
    row.appendChild(c);
  }
  // Scroll this page only: scrollIntoView would also scroll a notebook holding it in a frame.
  function reveal(el) {
    if (!el) return;
    var box = el.getBoundingClientRect();
    var top = document.querySelector("header").getBoundingClientRect().bottom;
    if (document.body.classList.contains("narrow")) {  // the panel sits on top
      top = Math.max(top, document.getElementById("panel").getBoundingClientRect().bottom);
    }
    if (box.top >= top && box.bottom <= window.innerHeight) return;
    window.scrollTo(0, window.scrollY + box.top - (top + window.innerHeight - box.height) / 2);
  }
  function layout() { document.body.classList.toggle("narrow", window.innerWidth < 900); }
  layout();
  window.addEventListener("resize", layout);
  function show(i) {
    k = Math.max(0, Math.min(frames.length - 1, i));
    var f = frames[k];
    classes("g.node", "active", f.active ? [f.active] : []);
    reveal(byId(f.active));
    classes("g.node", "updated", f.updated);
    classes("g.edge", "flow", f.flow);
    classes("g.edge", "incoming", f.incoming);
    classes("g.edge", "done", f.done);
    Object.keys(f.grads).forEach(function (id) {
      var g = byId(id); if (!g) return;
      var texts = g.querySelectorAll("text");
      if (texts.length) texts[texts.length - 1].textContent = f.grads[id];
    });
    document.getElementById("frame-title").textContent = f.title;
    document.getElementById("frame-formula").textContent = f.formula.join("\\n");
    var body = document.getElementById("frame-body");
    body.textContent = "";
    f.text.forEach(function (line) {
      var p = document.createElement("p"); p.textContent = line; body.appendChild(p);
    });
    var table = document.getElementById("frame-table");
    table.textContent = "";
    if (f.rows.length) {
      var head = document.createElement("tr");
      f.header.forEach(function (h) { cell(head, "th", h); });
      table.appendChild(head);
      f.rows.forEach(function (r) {
        var tr = document.createElement("tr");
        r.forEach(function (v) { cell(tr, "td", v); });
        table.appendChild(tr);
      });
    }
    document.getElementById("counter").textContent = f.counter;
    document.getElementById("first").disabled = document.getElementById("prev").disabled = k === 0;
    document.getElementById("next").disabled = document.getElementById("last").disabled =
      k === frames.length - 1;
  }
  document.getElementById("first").onclick = function () { show(0); };
  document.getElementById("prev").onclick = function () { show(k - 1); };
  document.getElementById("next").onclick = function () { show(k + 1); };
  document.getElementById("last").onclick = function () { show(frames.length - 1); };
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowRight" || e.key === " ") { show(k + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { show(k - 1); e.preventDefault(); }
    else if (e.key === "Home") { show(0); e.preventDefault(); }
    else if (e.key === "End") { show(frames.length - 1); e.preventDefault(); }
  });
  show(0);
})();
</script>
</body>
</html>
"""


__all__ = [
    "Explanation",
    "Step",
    "Steps",
    "StepsPage",
    "formula",
    "render_steps",
    "show_steps",
    "trace_backward",
    "user_line",
]


def _tensor_text(t: Tensor) -> str:
    """``'loss' float64[]``: how a message names a tensor (its name, if it has one)."""
    return (f"'{t.name}' " if t.name else "") + describe(t)
