"""``tape.check_graph`` finds *which* record of a big graph has the wrong backward.

Each record's VJP is compared with central differences of that record's own
forward, at the values it saw; the report names the op, its argument, the
line of user code that recorded it and the worst entry.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from functions import Square

import tape


def scale(factor: float) -> type[tape.Function]:
    """``x * w`` (``w`` broadcast over rows) whose backward sends ``factor Σ g x`` to ``w``."""

    class Scale(tape.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved
            return g * w, factor * (g * x).sum(0)

    return Scale


def twenty_ops(Scale: type[tape.Function], dtype=np.float64) -> tuple[tape.Tensor, int]:
    """A graph of 20 records with one ``Scale`` in the middle; and the line that records it."""
    rng = np.random.default_rng(0)
    X = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="X", dtype=dtype)
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W", dtype=dtype)
    b = tape.tensor(rng.standard_normal(2), requires_grad=True, name="b", dtype=dtype)
    s = tape.tensor(rng.standard_normal(2), requires_grad=True, name="s", dtype=dtype)
    h = (X @ W + b).tanh()  # 3 records
    line = inspect.currentframe().f_lineno + 1
    h = Scale.apply(h, s)  # 1
    h = h.sigmoid() * 2.0 - h.exp() / 3.0 + h[:, 0:1]  # 7
    h = (h.pow(2).mean(axis=0) + h.max(axis=0)).sum().log1p()  # 6
    return (h * np.ones(1)).sum() + s.norm(), line  # 4


def test_a_graph_whose_vjps_are_right_passes():
    loss, _ = twenty_ops(scale(1.0))
    report = tape.check_graph(loss)
    assert len(report) == 21 and bool(report) and report.wrong == []
    assert all(row.ok and row.error < 1e-6 for row in report)
    assert [row.index for row in report] == sorted(row.index for row in report)  # oldest first
    assert str(report).startswith("check_graph: all 21 records' VJPs agree")
    # the user's line, relative to the working directory as the step page shows it
    here = tape.teaching.user_line(loss.node).rsplit(":", 1)[0]
    assert here.endswith(Path(__file__).name)
    assert {row.where.rsplit(":", 1)[0] for row in report} == {here}


def test_the_one_wrong_function_of_twenty_ops_is_named_with_its_line():
    loss, line = twenty_ops(scale(2.0))
    report = tape.check_graph(loss)
    assert not report
    (wrong,) = report.wrong
    assert wrong.op == "Scale" and wrong.where.endswith(f"{Path(__file__).name}:{line}")
    assert wrong.input == 1 and wrong.label == "'s' float64[2]"
    assert wrong.analytic == pytest.approx(2 * wrong.numeric)
    text = str(report)
    first = text.split("\n\n")[0]
    assert f"Scale (recorded at {wrong.where})" in first.replace("\n  ", " ")
    assert "its argument 1 ('s' float64[2])" in first.replace("\n  ", " ")
    assert f"at index {wrong.entry}" in first.replace("\n  ", " ")
    assert "× 2" in first
    # the table below lists every record, the wrong one marked
    table = text.split("\n\n")[1].splitlines()
    assert len(table) == 1 + 21
    assert [ln.split()[1] for ln in table[1:] if ln.endswith("WRONG")] == ["Scale"]
    # only the Function is wrong: every built-in record agrees
    assert all(row.ok for row in report if row.op != "Scale")


def test_a_built_in_op_is_checked_at_the_values_it_saw():
    """relu at a kink-free point, a broadcast add, getitem with repeats, a float32 graph."""
    x = tape.tensor(np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32), requires_grad=True)
    b = tape.tensor(np.array([0.5, -0.5], np.float32), requires_grad=True)
    y = (x + b).relu()[[0, 0, 1]].sum()
    report = tape.check_graph(y)
    assert report and [r.op for r in report] == ["add", "relu", "getitem", "sum"]


def test_a_custom_function_with_the_wrong_shape_is_reported_not_raised():
    class Bad(tape.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum(axis=0)

        @staticmethod
        def backward(ctx, g):
            return (np.ones((5, 5)) * g.sum(),)

    x = tape.tensor(np.ones((3, 2)), requires_grad=True)
    report = tape.check_graph(Bad.apply(x).sum())
    assert not report and report.wrong[0].op == "Bad"
    text = str(report).replace("\n  ", " ")
    assert "shape (5, 5)" in text and "(3, 2)" in text


def test_a_released_graph_is_refused_saying_what_to_do():
    loss, _ = twenty_ops(scale(1.0))
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        tape.check_graph(loss)
    loss2, _ = twenty_ops(scale(1.0))
    loss2.backward(retain_graph=True)
    assert tape.check_graph(loss2)


def test_bad_arguments_are_clear():
    with pytest.raises(TypeError, match="must be a Tensor"):
        tape.check_graph(np.ones(2))
    with pytest.raises(ValueError, match="no recorded op"):
        tape.check_graph(tape.tensor([1.0], requires_grad=True))


def test_check_graph_changes_no_grad_and_keeps_the_graph():
    loss, _ = twenty_ops(scale(1.0))
    tape.check_graph(loss)
    assert all(n.released is None for n in tape.get_tape())
    loss.backward()  # still walkable: nothing was released, no .grad was written before
    assert loss.node.released == "backward"


def test_the_report_shows_as_a_table_in_jupyter():
    loss, line = twenty_ops(scale(2.0))
    html = tape.check_graph(loss)._repr_html_()
    assert html.count("<tr") == 1 + 21 and "<b>WRONG</b>" in html
    assert f"{Path(__file__).name}:{line}" in html and "&#x27;s&#x27;" in html


def test_a_function_missing_its_sum_over_the_batch_is_named():
    """``db = dZ``: backward() sums it back silently; check_graph, like gradcheck, says so."""

    class Linear(tape.Function):
        @staticmethod
        def forward(ctx, X, W, b):
            ctx.save_for_backward(X, W)
            return X @ W + b

        @staticmethod
        def backward(ctx, dZ):
            X, W = ctx.saved
            return dZ @ W.T, X.T @ dZ, dZ

    rng = np.random.default_rng(0)
    X = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = tape.tensor(np.zeros(2), requires_grad=True, name="b")
    report = tape.check_graph(Linear.apply(X, W, b).relu().sum())
    (wrong,) = report.wrong
    assert wrong.op == "Linear" and wrong.input == 2
    assert "`dZ.sum(0)`" in str(report) and "shape (4, 2)" in str(report)


def test_large_inputs_are_checked_along_a_direction_first_and_a_wrong_one_is_located():
    class OneEntryOff(Square):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            wrong = 2 * g * x
            wrong[37, 5] += 1.0  # one entry off
            return (wrong,)

    x = tape.tensor(np.random.default_rng(1).standard_normal((80, 60)), requires_grad=True)
    right = tape.check_graph((x.tanh() * x).sum())  # 4,800 entries: past the entrywise size
    assert right and all(r.error < 1e-5 for r in right)
    report = tape.check_graph(OneEntryOff.apply(x).sum())
    (wrong,) = report.wrong
    assert wrong.op == "OneEntryOff" and wrong.entry == (37, 5)


def test_a_backward_that_raises_is_reported_and_the_rest_still_checked():
    class Broken(tape.Function):
        @staticmethod
        def forward(ctx, x):
            return x + 1

        @staticmethod
        def backward(ctx, g):
            raise ValueError("oops")

    x = tape.tensor(np.ones(3), requires_grad=True)
    report = tape.check_graph(Broken.apply(x.exp()).sum())
    assert [r.op for r in report.wrong] == ["Broken"]
    text = str(report).replace("\n  ", " ")
    assert "its VJP raised ValueError: oops" in text
    assert len(report) == 3 and report[0].ok and report[2].ok


def test_a_wrong_scalar_input_names_its_entry():
    class Cube(tape.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return (2 * g * x**2,)  # 3x² is right

    x = tape.tensor(1.5, requires_grad=True, name="t")
    report = tape.check_graph(Cube.apply(x))
    assert report.wrong[0].entry == () and "at index ()" in str(report).replace("\n  ", " ")


# ---- kinks: no derivative, a one-sided slope by convention ------------------------------


KINKS = {  # each at an input where the forward has a kink, and the engine's VJP
    "relu at 0": (lambda t: t.relu(), [0.0, 1.0]),
    "abs at 0": (lambda t: t.abs(), [0.0, -2.0]),
    "clamp at its bounds": (lambda t: t.clamp(0.5, 1.0), [0.5, 1.0]),
    "max with a tie": (lambda t: t.max(), [2.0, 2.0]),
}


@pytest.mark.parametrize("case", KINKS)
def test_a_vjp_at_a_kink_is_right_when_it_is_a_one_sided_slope(case):
    # relu'(0) = 0 is the slope from the left: the central difference, 1/2, is neither side
    fn, values = KINKS[case]
    x = tape.tensor(values, requires_grad=True)
    report = tape.check_graph((fn(x) * np.array([1.0, 3.0])[: fn(x).size]).sum())
    assert report, str(report)
    assert tape.gradcheck(lambda t: (fn(t) * np.array([1.0, 3.0])[: fn(t).size]).sum(), [x])


def test_a_wrong_vjp_at_a_kink_is_still_wrong():
    class TripledRelu(tape.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return np.maximum(x, 0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return (3 * g * (x >= 0),)  # 3 on the right of the kink: matches neither side

    x = tape.tensor([0.0, 1.0], requires_grad=True)
    report = tape.check_graph(TripledRelu.apply(x).sum())
    assert not report and report.wrong[0].entry == (0,)
    with pytest.raises(tape.GradcheckError):
        tape.gradcheck(lambda t: TripledRelu.apply(t).sum(), [x])


def test_the_report_says_which_records_passed_at_a_kink():
    x = tape.tensor([0.0, 1.0], requires_grad=True)
    report = tape.check_graph(x.relu().sum())
    assert [r.status for r in report] == ["ok at a kink", "ok"]
    assert "ok at a kink" in str(report)


def test_a_float32_record_is_not_taken_for_a_kink():
    # one-sided slopes from a float32 result against float64 moves would be rounding over
    # eps: a smooth x*x would look kinked, and a wrong VJP near either "side" would pass
    class ScaledSquare(Square):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return (g * 2 * x * 1.3551,)  # 2x is right

    x = tape.tensor([100.1], dtype=np.float32, requires_grad=True)
    report = tape.check_graph(ScaledSquare.apply(x).sum())
    assert not report and report.wrong[0].op == "ScaledSquare" and report[0].kinks == 0
