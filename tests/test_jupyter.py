"""Everything a learner looks at in a notebook displays itself: ``_repr_html_`` methods.

Tensors (with ``.grad`` and the op that made them, never a warning), the ``+=``
ledger and ``explain``, gradcheck's error and check_graph's report, and the
inline step-through page. Each test reads the HTML as a browser would: escaped
names, one row per item.
"""

from __future__ import annotations

import html
import re
import warnings

import numpy as np
import pytest
from functions import Square

import tape


def rows(markup: str) -> int:
    return len(re.findall(r"<tr[ >]", markup))


def test_a_leaf_shows_name_shape_dtype_data_and_grad():
    x = tape.tensor([1.0, 2.0], requires_grad=True, name="x<&>")
    before = x._repr_html_()
    assert "<b>x&lt;&amp;&gt;</b>" in before and "float64[2]" in before
    assert "[1., 2.]" in before and "no backward pass has reached it yet" in before
    assert "a leaf" in before
    (x * x).sum().backward()
    assert "[2., 4.]" in x._repr_html_()


def test_a_result_shows_its_op_and_line_and_never_warns_about_grad():
    x = tape.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    h = x * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading .grad of a non-leaf would warn
        markup = h._repr_html_()
    assert "float32[2, 3]" in markup and "<code>mul</code>" in markup
    assert "not kept" in markup and "retain_grad()" in markup
    assert re.search(r"recorded at <code>[^<]*test_jupyter\.py:\d+</code>", markup)
    h.retain_grad()
    h.sum().backward()
    assert "not kept" not in h._repr_html_() and "[[1., 1., 1.]" in h._repr_html_()


def test_a_constant_and_a_large_and_a_freed_tensor_show_without_raising():
    c = tape.tensor(np.arange(1000.0))
    assert "no gradient" in c._repr_html_() and "..." in c._repr_html_()
    x = tape.tensor(np.ones(3), requires_grad=True)
    y = (x.exp() * 2).sum()
    product = y.node.inputs[0]  # nobody holds it and sum's VJP reads no value: freed
    assert type(product).__name__ == "Standin"
    assert "freed" in product._repr_html_() and "<code>mul</code>" in product._repr_html_()


def test_the_ledger_is_a_table_with_one_row_per_plus_equals():
    x = tape.tensor([3.0], requires_grad=True, name="x")
    with tape.trace_backward() as steps:
        (x * x + x).backward(np.ones(1))
    markup = steps._repr_html_()
    assert rows(markup) == 1 + len(steps) + 1 == 6  # and x.grad += the pass's total
    assert "→ x" in markup and "+= (3rd of 3)" in markup


def test_explain_prints_as_lines_and_shows_as_a_table():
    x = tape.tensor([3.0], requires_grad=True, name="x")
    with tape.trace_backward() as steps:
        (x * x + x).backward(np.ones(1))
    e = steps.explain(x)
    assert isinstance(e, str) and str(e).startswith("x (float64[1]) received 3 contribution(s)")
    assert repr(e) == str(e)  # a console shows the lines, not a quoted string with \n
    assert len(e.rows) == 3 and rows(e._repr_html_()) == 1 + 3
    nothing = steps.explain(tape.tensor([1.0], requires_grad=True, name="z"))
    assert "received no gradient" in nothing and "<table>" not in nothing._repr_html_()


def test_gradcheck_and_check_graph_show_as_tables():
    class Wrong(Square):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return (g * x,)  # the 2 is missing

    x = tape.tensor([1.0, 2.0], requires_grad=True, name="x")
    with pytest.raises(tape.GradcheckError) as info:
        tape.gradcheck(lambda t: Wrong.apply(t).sum(), [x])
    assert "<table>" in info.value._repr_html_()
    report = tape.check_graph(Wrong.apply(x).sum())
    markup = report._repr_html_()
    assert rows(markup) == 1 + len(report) and "<b>WRONG</b>" in markup


def test_show_steps_iframe_is_one_escaped_attribute():
    if __import__("shutil").which("dot") is None:
        pytest.skip("needs Graphviz's dot")
    x = tape.tensor([1.0], requires_grad=True, name='" onload="alert(1)')
    markup = tape.show_steps((x * x).sum())._repr_html_()
    srcdoc = re.match(r'<iframe srcdoc="([^"]*)"', markup).group(1)
    assert "alert(1)" in html.unescape(srcdoc) and 'onload="alert' not in markup
