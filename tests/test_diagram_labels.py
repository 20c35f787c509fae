"""What diagrams write: module parameter names, collapsed layers, gradients in full up to
``max_values``, index labels as Python writes them, and names exactly as given."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tape
from tape import nn

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


def mlp() -> tuple[nn.Sequential, tape.Tensor]:
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 2, seed=1))
    x = np.random.default_rng(0).standard_normal((5, 3))
    return model, nn.MSELoss()(model(x), np.zeros((5, 2)))


def labels(dot) -> list[str]:
    return re.findall(r'label="((?:[^"\\]|\\.)*)"', dot.source)


def test_parameters_carry_their_qualified_names():
    model, _ = mlp()
    assert [(n, p.name) for n, p in model.named_parameters()] == [
        ("0.weight", "0.weight"),
        ("0.bias", "0.bias"),
        ("2.weight", "2.weight"),
        ("2.bias", "2.bias"),
    ]
    alone = nn.Linear(2, 2)
    assert (alone.weight.name, alone.bias.name) == ("weight", "bias")
    nested = nn.Sequential(nn.Tanh(), nn.Sequential(nn.Linear(2, 2)))  # names follow nesting
    assert [p.name for p in nested.parameters()] == ["1.0.weight", "1.0.bias"]


def test_a_name_the_user_chose_is_kept():
    layer = nn.Linear(2, 2)
    layer.weight.name = "W_enc"
    model = nn.Sequential(layer)
    assert [p.name for p in model.parameters()] == ["W_enc", "0.bias"]


def test_a_custom_module_names_its_parameters_and_sub_modules():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = tape.tensor(np.ones(2), requires_grad=True)
            self.inner = nn.Linear(2, 2)

        def forward(self, x):
            return self.inner(x) * self.scale

    block = Block()
    assert [p.name for p in block.parameters()] == ["scale", "inner.weight", "inner.bias"]


def test_a_two_layer_mlp_diagram_names_its_two_w_and_two_b():
    _, loss = mlp()
    loss.backward()
    text = " ".join(labels(tape.to_dot(loss)))
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert text.count(name) == 1, name


def test_errors_name_the_parameter():
    model, loss = mlp()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"'0\.weight'"):
        model[0].weight += 1.0  # recording is on: the error names the tensor


def test_each_layer_of_a_sequential_collapses_into_one_box():
    _, loss = mlp()
    loss.backward()
    scopes = {(n.notes or {}).get("scope") for n in tape.record.reachable([loss.node])}
    assert scopes >= {"0: Linear", "1: ReLU", "2: Linear"}
    dot = tape.to_dot(loss, collapse=True)
    boxes = re.findall(r'^\t(scope\d+) \[label="([^"]*)"', dot.source, re.M)
    assert [label.split("\\n")[0] for _, label in boxes] == ["0: Linear", "1: ReLU", "2: Linear"]
    assert "2 ops: matmul → add" in dot.source
    assert "0.weight" in dot.source and "2.bias" in dot.source  # parameters stay outside


def test_a_module_called_on_its_own_opens_no_scope():
    layer = nn.Linear(2, 2)
    out = layer(np.ones((1, 2))).sum()
    assert all(n.notes is None or "scope" not in n.notes for n in tape.record.reachable([out.node]))


@pytest.mark.parametrize("size, full", [(6, True), (8, True), (9, False)])
def test_gradients_up_to_max_values_are_shown_in_full(size, full):
    x = tape.tensor(np.linspace(-1, 1, size), requires_grad=True, name="x")
    y = (x * x).sum()
    y.backward()
    text = " ".join(labels(tape.to_dot(y)))
    shown = tape.viz.format_array(x.grad, 100)
    assert (shown in text) is full
    assert (f"{size} in [" in text) is not full  # larger: its shape and range
    wide = " ".join(labels(tape.to_dot(y, max_values=size)))
    assert shown in wide


def test_a_large_gradient_a_released_pass_kept_only_the_shape_of_says_so():
    # a released pass keeps gradients over FLOW_LIMIT entries as their shape, (40, 40),
    # which once read "+= [40, 40]": a two-entry gradient that never flowed
    x = tape.tensor(np.linspace(-1, 1, 1600).reshape(40, 40), requires_grad=True, name="x")
    y = (x.tanh() * 2).sum()
    y.backward()
    text = " ".join(labels(tape.to_dot(y)))
    assert "+= 40×40, values not kept" in text and "+= [40, 40]" not in text
    assert "40×40 in [" in text  # x's .grad itself is an array: its range is shown


def test_a_retained_graph_larger_than_a_kept_pass_still_labels_every_edge():
    # a pass keeps flows for at most FLOW_RECORDS records; a retained graph can still be
    # walked, so its diagram walks it (seeded with ones, as the one-element loss's pass was)
    n = tape.autodiff.FLOW_RECORDS + 1
    x = tape.tensor([1.0], requires_grad=True, name="x")
    h = x
    for _ in range(n):
        h = h * 2.0
    h.backward(retain_graph=True)
    assert all(node.sent is None for node in tape.record.reachable([h.node]))
    text = " ".join(labels(tape.to_dot(h)))
    assert text.count("+=") == n  # one contribution per mul, into its input
    assert f"+= {tape.viz.format_array(np.array([2.0**n]))}" in text  # what reached x: 2ⁿ
    np.testing.assert_array_equal(x.grad, [2.0**n])  # the diagram's pass touched no .grad


def test_a_graph_no_pass_has_walked_yet_shows_no_gradients():
    # leaves keep .grad from earlier steps of a loop: that says nothing about this graph
    w = tape.tensor([1.0, -2.0], requires_grad=True, name="w")
    (w * 3).sum().backward()
    loss = (w * w).sum()
    assert not any(line.startswith("+= ") for line in labels(tape.to_dot(loss)))


def test_cross_entropy_gradient_can_be_read_off_the_edge():
    """dlogits = (p − onehot)/N, written out for a small batch."""
    logits = tape.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True, name="logits")
    target = np.array([0, 1, 0])
    loss = nn.CrossEntropyLoss()(logits, target)
    loss.backward()
    p = np.exp(logits.data) / np.exp(logits.data).sum(1, keepdims=True)
    expected = (p - np.eye(2)[target]) / 3
    np.testing.assert_allclose(logits.grad, expected)
    source = tape.to_dot(loss).source
    for row in expected:
        assert tape.viz.format_array(row) in source


@pytest.mark.parametrize(
    "index, label",
    [
        ((slice(None), 0), "[:, 0]"),
        ((np.arange(4), np.array([1, 0, 2, 1])), "[arange(4), [1, 0, 2, 1]]"),
        (slice(1, None), "[1:]"),
        ((Ellipsis, slice(None, None, -1)), "[..., ::-1]"),
        (np.array([0, 2, 0]), "[[0, 2, 0]]"),
    ],
)
def test_index_labels_read_as_python_writes_them(index, label):
    x = tape.tensor(np.ones((4, 3)), requires_grad=True)
    y = x[index].sum()
    g = tape.to_networkx(y)
    (op,) = [a for _, a in g.nodes(data=True) if a["kind"] == "op" and a["op"] == "getitem"]
    assert op["params"] == label
    assert label.replace("\\", "\\\\") in tape.to_dot(y).source


HOSTILE = [
    "a&b",
    "&amp;",
    "&lt;x&gt;",
    "&#38;",
    "&#x26;",
    "&copy;",
    "<b>bold</b>",
    '"quoted"',
    "back\\slash",
    "{{svg}}",
    "tab\tend",
    "ünïcødé ∂x",
]


@needs_dot
@pytest.mark.parametrize("name", HOSTILE)
def test_names_reach_the_picture_exactly_as_written(name):
    x = tape.tensor([1.0, 2.0], requires_grad=True, name=name)
    y = (x * x).sum()
    y.backward()
    svg = tape.viz.pipe(tape.to_dot(y), "svg").decode()
    texts = [
        "".join(t.itertext()) for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")
    ]
    assert name.replace("\t", " ") in texts
    # and the DOT text keeps a plain & plain (only entity look-alikes are escaped)
    if name == "a&b":
        assert 'label="a&b\\n' in tape.to_dot(y).source
