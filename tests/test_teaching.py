"""The += ledger (trace_backward, Steps) and the step-through page (render_steps)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import tape
from tape.record import state

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


def fanout():
    x = tape.tensor([3.0], requires_grad=True, name="x")
    return x, x * x + x


def test_every_plus_equals_is_a_step_in_order():
    x, y = fanout()
    with tape.trace_backward() as steps:
        y.backward(np.ones(1))
    assert len(steps) == 4
    ops = [(s.node.op, s.position) for s in steps]
    # newest record first; within one record in argument order
    assert ops == [("add", 0), ("add", 1), ("mul", 0), ("mul", 1)]
    assert steps[0].key is y.node.parents[0]  # contributions into intermediates are steps too
    into_x = steps.of(x)
    assert [s.contribution.tolist() for s in into_x] == [[1.0], [3.0], [3.0]]
    assert into_x[0].grad_before is None
    assert [s.grad_before.tolist() for s in into_x[1:]] == [[1.0], [4.0]]
    assert [s.grad_after.tolist() for s in into_x] == [[1.0], [4.0], [7.0]]
    np.testing.assert_array_equal(x.grad, [7.0])
    assert all(s.call == 1 for s in steps) and [s.number for s in steps] == [1, 2, 3, 4]


def test_table_shows_one_line_per_plus_equals():
    _x, y = fanout()
    with tape.trace_backward() as steps:
        y.backward(np.ones(1))
    table = str(steps)
    lines = table.splitlines()
    assert len(lines) == 1 + len(steps) + 1  # the header, each +=, and x.grad += the total
    assert lines[0].split()[:4] == ["step", "pass", "VJP", "of"]
    assert lines[-1].split()[:5] == ["1", "backward()", "→", "x.grad", "[7]"]
    x_lines = [line for line in lines if "→ x " in line]
    assert len(x_lines) == 3
    assert "= (1st of 3)" in x_lines[0]
    assert "+= (2nd of 3)" in x_lines[1] and "[1]" in x_lines[1] and "[4]" in x_lines[1]
    assert "+= (3rd of 3)" in x_lines[2] and x_lines[2].rstrip().endswith("(3rd of 3)")


def test_the_ledger_shows_each_pass_adding_its_total_into_grad():
    # the += across backward calls: the second pass's total is added to what .grad held
    w = tape.tensor([1.0, 2.0], requires_grad=True, name="w")
    with tape.trace_backward() as steps:
        (w * w).sum().backward()
        (w * w).sum().backward()
        tape.grad((w * w).sum(), [w])  # writes no .grad: no commit
    assert [(c, leaf is w) for c, leaf, *_ in steps.commits] == [(1, True), (2, True)]
    _, _, before, total, after = steps.commits[1]
    np.testing.assert_array_equal(before, [2.0, 4.0])
    np.testing.assert_array_equal(total, [2.0, 4.0])
    np.testing.assert_array_equal(after, [4.0, 8.0])
    commits = [line for line in str(steps).splitlines() if "w.grad" in line]
    assert len(commits) == 2 and "[2, 4]        None    [2, 4]" in commits[0]
    assert "[2, 4]  [4, 8]" in commits[1] and commits[1].endswith("into .grad (+=)")
    assert ".grad after pass 2: [2, 4] + [2, 4] → [4, 8]" in steps.explain(w)


def test_explain_says_where_a_gradient_came_from():
    x, y = fanout()
    with tape.trace_backward() as steps:
        y.backward(np.ones(1))
        y2 = x * 2.0
        y2.backward(np.ones(1))
    text = steps.explain(x)
    assert text.startswith("x (float64[1]) received 4 contribution(s)")
    assert "pass 1, step 2: from add#" in text and "pass 2" in text
    assert f"{Path(__file__).name}:" in text  # the line of user code that recorded each op
    assert "total in pass 1: [7]" in text and "total in pass 2: [2]" in text
    assert "adds the pass's total into .grad" in text
    np.testing.assert_array_equal(x.grad, [9.0])
    z = tape.tensor([1.0], requires_grad=True, name="z")
    assert "received no gradient" in steps.explain(z)
    assert "the seed [1]" in steps.explain(y)


def test_two_passes_are_numbered_and_each_starts_from_nothing():
    x, y = fanout()
    with tape.trace_backward() as steps:
        y.backward(np.ones(1), retain_graph=True)
        y.backward(np.ones(1))
    assert len(steps.calls) == 2
    assert [s.call for s in steps] == [1] * 4 + [2] * 4
    second = [s for s in steps.of(x) if s.call == 2]
    assert second[0].grad_before is None and second[-1].grad_after.tolist() == [7.0]
    np.testing.assert_array_equal(x.grad, [14.0])


def test_a_pass_that_raised_leaves_no_trace_in_the_ledger():
    # it changed no .grad, so a learner must not read it as a pass that happened
    x, y = fanout()
    with tape.trace_backward() as steps:
        handle = x.register_hook(lambda g: 1 / 0)  # fails after every step into x was taken
        with pytest.raises(ZeroDivisionError):
            y.backward(np.ones(1), retain_graph=True)
        handle.remove()
        y.backward(np.ones(1))
    assert len(steps.calls) == 1 and [s.call for s in steps] == [1] * 4
    assert [s.number for s in steps] == [1, 2, 3, 4]
    assert len(steps.commits) == 1


def test_a_pass_run_inside_another_keeps_both_in_the_ledger():
    # a hook that takes a gradient (a penalty) runs a pass while the outer one is under way
    x = tape.tensor([1.0, 2.0], requires_grad=True, name="x")
    a = tape.tensor([3.0, 4.0], requires_grad=True, name="a")
    h = x * x
    side = (a * a).sum()
    h.register_hook(lambda g: (tape.grad(side, [a], retain_graph=True), g)[1])
    loss = (h * 3.0).sum()
    with tape.trace_backward() as steps:
        loss.backward()
    inner, outer = (roots[0] for roots, _ in steps.calls)  # numbered as they end
    assert inner is side.node and outer is loss.node
    assert [s.call for s in steps] == [1] * 3 + [2] * 4
    assert [s.number for s in steps] == list(range(1, 8))
    assert steps.of(x)[-1].grad_after.tolist() == [6.0, 12.0]
    assert steps.of(a)[-1].grad_after.tolist() == [6.0, 8.0]


def test_a_pass_that_raised_inside_another_leaves_the_outer_one_whole():
    # a hook whose own tape.grad fails (and is caught) while the outer backward goes on
    x = tape.tensor([1.0, 2.0], requires_grad=True, name="x")
    spent = (x * 1.0).sum()
    spent.backward()  # released: a second pass through it raises
    h = x * x

    def hook(g):
        with pytest.raises(RuntimeError, match="released"):
            tape.grad(spent, [x])
        return g

    h.register_hook(hook)
    loss = (h * 3.0).sum()
    with tape.trace_backward() as steps:
        loss.backward()
    assert len(steps.calls) == 1 and steps.calls[0][0][0] is loss.node
    assert [s.number for s in steps] == [1, 2, 3, 4] and steps._open == []


def test_broadcast_step_says_what_was_summed():
    x = tape.tensor(np.ones((4, 3)), requires_grad=True, name="x")
    b = tape.tensor(np.zeros(3), requires_grad=True, name="b")
    with tape.trace_backward() as steps:
        (x + b).sum().backward()
    (step,) = steps.of(b)
    assert step.sent_shape == (4, 3) and step.summed == "sum over axis 0 → (3,)"
    np.testing.assert_array_equal(step.contribution, [4.0, 4.0, 4.0])
    assert "sum over axis 0 → (3,)" in str(steps)
    assert steps.of(x)[0].summed is None


def test_tape_grad_is_traced_and_touches_no_grad():
    x, y = fanout()
    with tape.trace_backward() as steps:
        (g,) = tape.grad(y, [x], grad_outputs=np.ones(1))
    assert x.grad is None and g.tolist() == [7.0]
    assert [s.grad_after.tolist() for s in steps.of(x)][-1] == [7.0]


def test_traces_nest_and_restore_even_on_error():
    _x, y = fanout()
    assert state.observers == []
    with tape.trace_backward() as outer:
        with tape.trace_backward() as inner:
            y.backward(np.ones(1))
        assert state.observers == [outer]
    assert state.observers == []
    assert len(inner) == len(outer) == 4
    with pytest.raises(ZeroDivisionError):
        with tape.trace_backward():
            raise ZeroDivisionError
    assert state.observers == []


def test_ledger_keeps_owned_copies():
    w = tape.tensor([2.0], requires_grad=True, name="w")
    with tape.trace_backward() as steps:
        (w * w).sum().backward()
    first = steps.of(w)[0]
    assert first.grad_after.tolist() == [2.0]  # not the final [4]: a copy, not the buffer
    assert steps.of(w)[1].grad_after.tolist() == [4.0]


def test_labels_for_unnamed_tensors():
    a = tape.tensor([1.0], requires_grad=True)
    b = tape.tensor([2.0], requires_grad=True)
    with tape.trace_backward() as steps:
        (a * b).sum().backward()
    assert steps.label(a) != steps.label(b)
    assert {steps.label(a), steps.label(b)} == {"leaf1", "leaf2"}
    assert re.fullmatch(r"mul#\d+", steps.label(steps[0].target))
    assert repr(steps).startswith("<Steps: 3 += in 1 backward pass")


# ---- render_steps -------------------------------------------------------------------------


def _frames(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="frames">(.*?)</script>', text, re.S)
    return json.loads(data.group(1))["frames"]


@needs_dot
def test_render_steps_writes_one_self_contained_page(tmp_path):
    _x, y = fanout()
    out = y.sum()
    path = tape.render_steps(out, tmp_path / "backward.html")
    assert path == tmp_path / "backward.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "no network"
    assert "<link" not in text and "<script src" not in text and "@import" not in text
    frames = _frames(path)
    assert len(frames) == 3 + 2  # sum, add, mul; a first and a last frame
    assert frames[0]["title"].startswith("Start")
    mul = frames[3]
    assert mul["title"].startswith("Step 3 of 3: VJP of mul#")
    assert [(r[0], r[3], r[4]) for r in mul["rows"]] == [
        ("x", "[1]", "[4]"),
        ("x", "[4]", "[7]"),
    ]
    assert "+= (3rd of 3 uses)" in mul["rows"][1][5]
    assert any("used 3 times" in line for line in mul["text"])
    assert frames[-1]["rows"] == [["x", "[7]", "the sum of 3 contributions"]]
    for f in frames:  # every id a frame refers to exists in the SVG
        for key in filter(None, [f["active"], *f["flow"], *f["incoming"], *f["updated"]]):
            assert f'id="{key}"' in text, key


@needs_dot
def test_render_steps_touches_no_grad_and_keeps_the_graph(tmp_path):
    x, y = fanout()
    out = y.sum()
    tape.render_steps(out, tmp_path / "a.html")
    assert x.grad is None
    out.backward()  # the graph was kept: no "released" error
    np.testing.assert_array_equal(x.grad, [7.0])
    tape.render_steps(out, tmp_path / "b.html")  # and it works after a releasing backward
    np.testing.assert_array_equal(x.grad, [7.0])


@needs_dot
def test_render_steps_broadcast_and_seed(tmp_path):
    x = tape.tensor(np.ones((4, 3)), requires_grad=True, name="x")
    b = tape.tensor(np.zeros(3), requires_grad=True, name="b")
    y = x + b
    with pytest.raises(RuntimeError, match="grad can be omitted only"):
        tape.render_steps(y, tmp_path / "no.html")
    path = tape.render_steps(y, tmp_path / "b.html", grad=np.ones((4, 3)))
    frames = _frames(path)
    assert any("sum over axis 0 → (3,)" in line for f in frames for line in f["text"])


@needs_dot
def test_render_steps_escapes_hostile_names(tmp_path):
    x = tape.tensor([1.0], requires_grad=True, name="</script><script>alert(1)</script>")
    path = tape.render_steps((x * x).sum(), tmp_path / "evil.html", title="<i>title</i>")
    text = path.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text and "<i>title" not in text
    assert _frames(path)[-1]["rows"][0][0] == x.name  # the JSON still round-trips


def test_render_steps_rejects_what_it_cannot_show(tmp_path):
    with pytest.raises(RuntimeError, match="no recorded op"):
        tape.render_steps(tape.tensor([1.0], requires_grad=True), tmp_path / "x.html")
    with pytest.raises(TypeError):
        tape.render_steps(np.ones(2), tmp_path / "x.html")
    # a new op on a graph a pass released: its own pass cannot walk it; the message says
    # which tensor shows the pass that ran (the README once did this by mistake)
    x = tape.tensor([3.0], requires_grad=True)
    y = x * x + x
    loss = y.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"render_steps: .* released .* the tensor it started"):
        tape.render_steps(y.sum(), tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


@needs_dot
def test_render_steps_does_not_call_hooks(tmp_path):
    calls = []
    x = tape.tensor([3.0], requires_grad=True, name="x")
    h = x * x
    h.register_hook(lambda g: calls.append(1))
    tape.render_steps((h + x).sum(), tmp_path / "hooks.html")
    assert calls == []
    (h + x).sum().backward()
    assert calls == [1]


@pytest.mark.parametrize(
    "fn",
    [tape.trace_backward, tape.viz.format_array, tape.to_networkx, tape.to_dot],
    ids=lambda f: f.__name__,
)
def test_docstring_examples_run(fn):
    import doctest

    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(fn, globs={"tape": tape, "np": np}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


# ---- the page: formulas, one counter, the user's line, hostile names, inline ---------------


def seed_network():
    rng = np.random.default_rng(0)
    X = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="X")
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    b = tape.tensor(np.zeros(2), requires_grad=True, name="b")
    y = rng.standard_normal((4, 2))  # a raw array constant: no key, no gradient
    return X, W, b, ((X @ W + b).relu() - y).pow(2).mean()


@needs_dot
def test_each_frame_shows_the_vjp_formula_with_the_records_shapes(tmp_path):
    _X, _W, _b, loss = seed_network()
    frames = _frames(tape.render_steps(loss, tmp_path / "seed.html"))
    by_op = {f["title"].split("VJP of ")[1].split("#")[0]: f for f in frames[1:-1]}
    assert by_op["matmul"]["formula"] == [
        "dX = g @ Wᵀ   (4, 2) @ (2, 3) → (4, 3)",
        "dW = Xᵀ @ g   (3, 4) @ (4, 2) → (3, 2)",
    ]
    assert by_op["add"]["formula"][1] == "db = g   g (4, 2) → (4, 2), sum over axis 0 → (2,)"
    mean, legend = by_op["mean"]["formula"]
    assert mean == "dx = g / 8, copied back to every entry of x   g () → (4, 2)"
    assert re.fullmatch(r"\(x is pow#\d+\)", legend)  # which tensor of the table x is
    assert by_op["pow"]["formula"][0] == "dx = g ⊙ 2 · x^(2 − 1)   g (4, 2) → (4, 2)"
    assert frames[0]["formula"] == frames[-1]["formula"] == []


def test_the_formula_of_a_custom_function_and_of_an_op_without_a_row():
    class Twice(tape.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return (2 * g,)

    x = tape.tensor(np.ones(3), requires_grad=True, name="x")
    with tape.trace_backward() as steps:
        (Twice.apply(x).cumsum() * 1.0).sum().backward()
    texts = [tape.teaching.formula(s)[0] for s in steps]
    assert "dx = Twice.backward(ctx, g)[0]" in texts
    assert "dx = the VJP of cumsum, applied to g" in texts


@needs_dot
def test_one_counter_counts_the_steps(tmp_path):
    _x, y = fanout()
    frames = _frames(tape.render_steps(y.sum(), tmp_path / "c.html"))
    assert [f["counter"] for f in frames] == [
        "Start: 3 steps to go",
        "Step 1 of 3",
        "Step 2 of 3",
        "Step 3 of 3",
        "Done: 3 of 3 steps",
    ]
    assert all(f["title"].startswith(f["counter"] + ":") for f in frames[1:-1])
    text = (tmp_path / "c.html").read_text(encoding="utf-8")
    assert '"frame " +' not in text and ".scrollIntoView(" not in text  # no second counter


def _recorded_at(code: str, filename: str) -> str:
    namespace = {"tape": tape, "np": np}
    exec(compile(code, filename, "exec"), namespace)
    return tape.teaching.user_line(namespace["y"].node)


def test_the_recorded_at_line_is_the_users():
    code = "x = tape.tensor([1.0], requires_grad=True)\ny = x * 2\n"
    assert _recorded_at(code, "<stdin>") == "<stdin>:2"
    here = Path(__file__)
    assert _recorded_at(code, str(here)) in (f"tests/{here.name}:2", f"{here}:2")
    import sysconfig

    launcher = str(Path(sysconfig.get_path("scripts")) / "tape")
    assert _recorded_at(code, launcher) == "the expression given to the tape command"
    assert _recorded_at(code, "<frozen runpy>") == "the expression given to the tape command"
    import runpy  # python -m tape on Python 3.10: runpy's frames are the library's file

    assert _recorded_at(code, runpy.__file__) == "the expression given to the tape command"


def test_a_notebook_cell_is_named_as_jupyter_names_it(monkeypatch):
    import sys
    import types

    class Compiler:
        def format_code_name(self, name):
            return ("Cell", "In[7]") if name == "/tmp/ipykernel_123/456.py" else None

    shell = types.SimpleNamespace(compile=Compiler())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    code = "x = tape.tensor([1.0], requires_grad=True)\n\ny = x * 2\n"
    assert _recorded_at(code, "/tmp/ipykernel_123/456.py") == "cell In[7], line 3"
    assert _recorded_at(code, "<stdin>") == "<stdin>:3"


HOSTILE = [
    "{{svg}}",
    "{{data}}",
    "{{heading}}",
    "a&b",
    "&amp;",
    "&lt;x&gt;",
    "</script><script>alert(1)</script>",
    "<!--",
    "\"quoted\" 'single'",
    "back\\slash\\n",
    "\\u003c/script>",
    "line\nbreak",
    "ünïcødé ∂x",
]


@needs_dot
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_come_through_the_page_as_written(tmp_path, name):
    x = tape.tensor([1.0, 2.0], requires_grad=True, name=name)
    path = tape.render_steps((x * x).sum(), tmp_path / "evil.html", title=f"title {name}")
    text = path.read_text(encoding="utf-8")
    # the template was filled once: exactly one picture, one frame list, nothing left over
    assert text.count("<svg") == 1 and text.count('id="frames"') == 1
    assert "<script>alert(1)" not in text
    frames = _frames(path)  # the JSON round-trips: the name is exactly what was given
    assert frames[-1]["rows"][0][0] == name
    assert text.count("<script") == 2  # the JSON block and the page's own script


@needs_dot
def test_show_steps_embeds_the_page_in_an_isolated_frame_and_writes_nothing(tmp_path, monkeypatch):
    import html as html_module

    monkeypatch.chdir(tmp_path)
    x = tape.tensor([1.0], requires_grad=True, name='"><script>alert(1)</script>')
    shown = tape.show_steps((x * x).sum())
    assert list(tmp_path.iterdir()) == []
    markup = shown._repr_html_()
    assert markup.startswith('<iframe srcdoc="') and 'sandbox="allow-scripts"' in markup
    srcdoc = re.match(r'<iframe srcdoc="([^"]*)"', markup).group(1)  # one attribute value
    assert html_module.unescape(srcdoc) == shown.html
    assert "<script" not in srcdoc and "step by step" in shown.html
    assert 300 < shown.height <= 900
    assert shown.save(tmp_path / "p.html").read_text(encoding="utf-8") == shown.html
