"""The engine on toy ops: accumulation, the tape, grad modes, tape.grad, custom Functions.

Expected values are derived by hand (or from finite differences through
``tape.gradcheck``), never read back from the engine.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from functions import Square

import tape


def op_name(node: tape.Node) -> str:
    # API.md: ``Node.op`` is the op's name; test_node_op_is_the_name_string checks that
    # exactly, the other tests only need the name.
    return node.op


def next_line() -> int:
    """The line number just after the caller's line."""
    return sys._getframe(1).f_lineno + 1


# ---- fan-out: every use contributes --------------------------------------------------------------


@pytest.mark.parametrize("uses", [2, 3, 100])
def test_fan_out_of_a_sum_collects_every_contribution_exactly(uses):
    x = tape.tensor([0.5, -1.5, 2.0], requires_grad=True)
    total = x * 1.0
    for k in range(2, uses + 1):
        total = total + x * float(k)
    total.sum().backward()
    # d/dx Σ_k k·x = Σ_k k = uses (uses + 1) / 2, an exact integer in float64
    assert np.array_equal(x.grad, np.full(3, uses * (uses + 1) / 2))


@pytest.mark.parametrize("uses", [2, 3, 100])
def test_fan_out_of_a_product_gives_the_power_rule(uses):
    x = tape.tensor([0.97, -1.01, 1.02], requires_grad=True)
    prod = x
    for _ in range(uses - 1):
        prod = prod * x
    prod.sum().backward()
    xs = x.data
    np.testing.assert_allclose(x.grad, uses * xs ** (uses - 1), rtol=1e-12)


def test_a_tensor_used_twice_in_one_op():
    x = tape.tensor([3.0, -2.0], requires_grad=True)
    (x + x).sum().backward()
    assert np.array_equal(x.grad, [2.0, 2.0])
    x.zero_grad()
    (x * x).sum().backward()
    assert np.array_equal(x.grad, [6.0, -4.0])
    x.zero_grad()
    (x - x).sum().backward()
    assert np.array_equal(x.grad, [0.0, 0.0])


@pytest.mark.parametrize("uses", [3, 4, 100])
def test_fan_out_of_a_0d_tensor(uses):
    x = tape.tensor(1.5, requires_grad=True)
    total = x
    for _ in range(uses - 1):
        total = total + x
    total.backward()
    assert float(x.grad) == uses
    # a scalar intermediate (a reduced loss) used several times is the common case
    h = tape.tensor([1.0, 2.0], requires_grad=True)
    s = h.sum()
    total = s
    for _ in range(uses - 1):
        total = total + s
    total.backward()
    np.testing.assert_array_equal(h.grad, [uses, uses])


def test_fan_out_of_an_intermediate():
    x = tape.tensor([0.5, 2.0], requires_grad=True)
    h = x * 2.0
    y = h + h * h + h  # dy/dh = 2 + 2h, dh/dx = 2
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * (2 + 2 * (2 * x.data)))


def test_fan_out_with_broadcasting_sums_over_broadcast_axes_and_uses():
    b = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = tape.tensor(np.arange(12.0).reshape(4, 3))
    y = m * b + b  # b broadcast over 4 rows, used twice
    y.sum().backward()
    np.testing.assert_array_equal(b.grad, m.data.sum(0) + 4.0)


# ---- diamonds ------------------------------------------------------------------------------------


def test_diamond_two_paths_meet():
    x = tape.tensor([0.3, -0.7, 1.1], requires_grad=True)
    a = x.tanh()
    b = x.exp()
    (a * b).sum().backward()
    t, e = np.tanh(x.data), np.exp(x.data)
    np.testing.assert_allclose(x.grad, (1 - t**2) * e + t * e, rtol=1e-12)


def test_diamond_of_diamonds():
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    a = x * 2.0
    b = x * 3.0
    c = a + b  # 5x
    d = a * b  # 6x²
    e = c * d  # 30x³
    e.sum().backward()
    np.testing.assert_allclose(x.grad, 90 * x.data**2, rtol=1e-12)


def test_ladder_of_diamonds_neither_drops_nor_duplicates_paths():
    x = tape.tensor([0.2, -0.4], requires_grad=True)
    y = x
    for _ in range(30):
        y = y.tanh() + y * 0.5  # 2 paths per rung: 2³⁰ paths in all
    y.sum().backward()
    value, slope = x.data.copy(), np.ones(2)
    for _ in range(30):
        slope = slope * (1 - np.tanh(value) ** 2 + 0.5)
        value = np.tanh(value) + value * 0.5
    np.testing.assert_allclose(y.data, value, rtol=1e-12)
    np.testing.assert_allclose(x.grad, slope, rtol=1e-10)


# ---- accumulation across passes ------------------------------------------------------------------


def _loss(x: tape.Tensor) -> tape.Tensor:
    h = x * x
    return (h + h * 3.0 + x).sum()  # 4x² + x: fan-out inside the pass


def test_two_backward_passes_give_exactly_twice_the_gradient():
    x = tape.tensor([1.5, -0.25, 3.0], requires_grad=True)
    once = 8 * x.data + 1
    loss = _loss(x)
    loss.backward(retain_graph=True)
    assert np.array_equal(x.grad, once)
    loss.backward()
    assert np.array_equal(x.grad, 2 * once)


def test_three_passes_give_three_times_and_rebuilt_graphs_accumulate_too():
    x = tape.tensor([1.5, -0.25, 3.0], requires_grad=True)
    once = 8 * x.data + 1
    loss = _loss(x)
    for k in (1, 2, 3):
        loss.backward(retain_graph=True)
        assert np.array_equal(x.grad, k * once)
    _loss(x).backward()  # a new graph adds to the same .grad
    assert np.array_equal(x.grad, 4 * once)
    x.zero_grad()
    assert x.grad is None
    _loss(x).backward()
    assert np.array_equal(x.grad, once)


def test_second_pass_does_not_reuse_interior_buffers_of_the_first():
    # an interior gradient summed in place during pass 1 must not leak into pass 2
    x = tape.tensor([2.0], requires_grad=True)
    h = x * 1.0
    loss = (h + h + h).sum()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    assert np.array_equal(x.grad, [6.0])
    g = tape.grad(loss, [x], retain_graph=True)[0]
    assert np.array_equal(g, [3.0])


# ---- retain_graph and released records -----------------------------------------------------------


def test_retain_graph_allows_another_pass_and_without_it_the_next_one_raises():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    line = next_line()
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()  # allowed, releases
    assert np.array_equal(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError) as info:
        loss.backward()
    message = str(info.value)
    assert "sum" in message
    assert f"{__file__}:{line}" in message
    assert "retain_graph" in message
    assert np.array_equal(x.grad, [4.0, 8.0])


def test_released_record_is_reported_even_when_reached_from_a_new_graph():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    line = next_line()
    h = x * 2.0
    h.sum().backward()  # releases the mul record
    before = x.grad.copy()
    with pytest.raises(RuntimeError) as info:
        (h * 3.0).sum().backward()
    message = str(info.value)
    assert "'mul'" in message or '"mul"' in message or " mul " in message
    assert f"{__file__}:{line}" in message
    np.testing.assert_array_equal(x.grad, before)  # nothing committed


def test_tape_grad_releases_unless_asked_to_retain():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    assert np.array_equal(tape.grad(loss, [x], retain_graph=True)[0], [2.0, 4.0])
    assert np.array_equal(tape.grad(loss, [x])[0], [2.0, 4.0])
    with pytest.raises(RuntimeError, match="sum"):
        tape.grad(loss, [x])


# ---- tape.grad -----------------------------------------------------------------------------------


def test_tape_grad_touches_no_grad_and_keeps_input_order():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = tape.tensor([[3.0]], requires_grad=True)
    preset = np.array([10.0, 20.0])
    x.grad = preset
    loss = (x * y).sum() + y.sum() * 2.0
    result = tape.grad(loss, [y, x], retain_graph=True)
    assert isinstance(result, list) and len(result) == 2
    dy, dx = result
    np.testing.assert_array_equal(dy, [[x.data.sum() + 2.0]])
    np.testing.assert_array_equal(dx, [3.0, 3.0])
    assert x.grad is preset and np.array_equal(x.grad, [10.0, 20.0])
    assert y.grad is None
    dx2, dy2 = tape.grad(loss, [x, y])
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dy2, dy)
    assert y.grad is None


def test_tape_grad_single_input_and_grad_outputs():
    x = tape.tensor([1.0, -2.0, 3.0], requires_grad=True)
    v = np.array([0.5, 1.0, -1.0])
    (g,) = tape.grad(x * x, x, grad_outputs=v)
    np.testing.assert_array_equal(g, v * 2 * x.data)
    assert x.grad is None


def test_tape_grad_allow_unused():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    unused = tape.tensor([5.0], requires_grad=True)
    loss = (x * x).sum()
    with pytest.raises(ValueError, match="allow_unused"):
        tape.grad(loss, [x, unused], retain_graph=True)
    dx, du = tape.grad(loss, [x, unused], allow_unused=True)
    np.testing.assert_array_equal(dx, [2.0, 4.0])
    assert du is None
    assert unused.grad is None and x.grad is None


def test_tape_grad_with_respect_to_non_leaf_counts_only_paths_through_it():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    out = (h * 3.0 + x * 5.0).sum()  # x also reaches out without passing through h
    dh, dx = tape.grad(out, [h, x], retain_graph=True)
    np.testing.assert_array_equal(dh, [3.0, 3.0])
    np.testing.assert_array_equal(dx, 6 * x.data + 5)
    (dh_only,) = tape.grad(out, [h])
    np.testing.assert_array_equal(dh_only, [3.0, 3.0])
    assert x.grad is None


def test_tape_grad_of_several_outputs_sums_them():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    a = (x * x).sum()
    b = (x * 3.0).sum()
    (g,) = tape.grad([a, b], [x])
    np.testing.assert_array_equal(g, 2 * x.data + 3)


# ---- grad modes ----------------------------------------------------------------------------------


def test_no_grad_records_nothing(fresh_tape):
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    assert tape.is_grad_enabled()
    with tape.no_grad():
        assert not tape.is_grad_enabled()
        y = (x * 2.0 + 1.0).tanh().sum()
    assert tape.is_grad_enabled()
    assert y.node is None and not y.requires_grad and y.is_leaf
    assert len(fresh_tape) == 0
    np.testing.assert_allclose(y.item(), np.tanh(x.data * 2 + 1).sum())


def test_enable_grad_inside_no_grad_and_nesting(fresh_tape):
    x = tape.tensor([1.0], requires_grad=True)
    with tape.no_grad():
        with tape.enable_grad():
            assert tape.is_grad_enabled()
            y = x * 2.0
            with tape.no_grad():
                assert not tape.is_grad_enabled()
                z = x * 3.0
            assert tape.is_grad_enabled()
        assert not tape.is_grad_enabled()
        with tape.no_grad():
            assert not tape.is_grad_enabled()
        assert not tape.is_grad_enabled()
    assert tape.is_grad_enabled()
    assert y.requires_grad and op_name(y.node) == "mul"
    assert z.node is None
    assert len(fresh_tape) == 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0])


def test_grad_mode_is_restored_after_an_exception():
    with pytest.raises(KeyError), tape.no_grad():
        raise KeyError("boom")
    assert tape.is_grad_enabled()
    with tape.no_grad():
        with pytest.raises(KeyError), tape.enable_grad():
            raise KeyError("boom")
        assert not tape.is_grad_enabled()
    assert tape.is_grad_enabled()


def test_no_grad_and_enable_grad_as_decorators():
    x = tape.tensor([1.0], requires_grad=True)

    @tape.no_grad()
    def silent(t):
        assert not tape.is_grad_enabled()
        return t * 2.0

    @tape.enable_grad()
    def loud(t):
        assert tape.is_grad_enabled()
        return t * 2.0

    assert silent.__name__ == "silent"
    assert silent(x).node is None
    assert tape.is_grad_enabled()
    with tape.no_grad():
        y = loud(x)
        assert not tape.is_grad_enabled()
    assert y.requires_grad and op_name(y.node) == "mul"


def test_detach_shares_data_and_stops_the_gradient(fresh_tape):
    x = tape.tensor([1.0, -2.0, 3.0], requires_grad=True)
    d = x.detach()
    assert np.shares_memory(d.data, x.data)
    assert not d.requires_grad and d.node is None and d.is_leaf
    assert len(fresh_tape) == 0
    (x * d).sum().backward()  # only one factor carries the gradient: x, not 2x
    np.testing.assert_array_equal(x.grad, x.data)
    h = x * 2.0
    hd = h.detach()
    assert hd.node is None and not hd.requires_grad
    assert h.node is not None  # detaching a result leaves the result itself alone


def test_ops_on_tensors_without_grad_record_nothing(fresh_tape):
    a = tape.tensor([1.0, 2.0])
    b = tape.tensor([3.0, 4.0])
    results = [a + b, a * 2.0, -a, a @ b, a.exp(), a.softmax(), a[0], 2.0 - a, a.sum()]
    for r in results:
        assert r.node is None and not r.requires_grad and r.is_leaf
    assert len(fresh_tape) == 0
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    mixed = a * x
    assert mixed.requires_grad and len(fresh_tape) == 1
    assert mixed.node.inputs[0] is a and mixed.node.inputs[1] is x


# ---- one record per op, named after the op -------------------------------------------------------

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
Y = np.array([[2.0, 1.0, -0.5], [0.5, 3.0, 1.25]])

RECORDS = [
    ("x + y", lambda x, y: x + y, "add"),
    ("x + 2", lambda x, y: x + 2.0, "add"),
    ("2 + x", lambda x, y: 2.0 + x, "add"),
    ("ndarray + x", lambda x, y: np.ones(3) + x, "add"),
    ("x + ndarray", lambda x, y: x + np.ones(3), "add"),
    ("x - y", lambda x, y: x - y, "sub"),
    ("2 - x", lambda x, y: 2.0 - x, "sub"),
    ("ndarray - x", lambda x, y: np.ones(3) - x, "sub"),
    ("-x", lambda x, y: -x, "neg"),
    ("x * y", lambda x, y: x * y, "mul"),
    ("2 * x", lambda x, y: 2 * x, "mul"),
    ("ndarray * x", lambda x, y: np.full(3, 2.0) * x, "mul"),
    ("x / y", lambda x, y: x / y, "div"),
    ("2 / x", lambda x, y: 2.0 / x, "div"),
    ("x ** 2", lambda x, y: x**2, "pow"),
    ("2 ** x", lambda x, y: 2.0**x, "pow"),
    ("x @ ndarray", lambda x, y: x @ Y.T, "matmul"),
    ("ndarray @ x", lambda x, y: np.ones((4, 2)) @ x, "matmul"),
    ("x[i]", lambda x, y: x[1], "getitem"),
    ("x[i, j]", lambda x, y: x[0, 1:], "getitem"),
    ("x[int array]", lambda x, y: x[[0, 0, 1]], "getitem"),
    ("softmax", lambda x, y: x.softmax(), "softmax"),
    ("log_softmax", lambda x, y: x.log_softmax(axis=0), "log_softmax"),
]


@pytest.mark.parametrize(("label", "fn", "name"), RECORDS, ids=[r[0] for r in RECORDS])
def test_each_public_op_call_is_exactly_one_named_record(fresh_tape, label, fn, name):
    x = tape.tensor(X, requires_grad=True)
    y = tape.tensor(Y, requires_grad=True)
    out = fn(x, y)
    nodes = list(fresh_tape)
    assert len(fresh_tape) == 1, [op_name(n) for n in nodes]
    assert len(nodes) == 1
    assert out.node is nodes[0]
    assert op_name(out.node) == name
    assert out.requires_grad and not out.is_leaf
    assert any(i is x for i in out.node.inputs)


def test_reflected_forms_keep_argument_order():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    out = 5.0 - x
    first, second = out.node.inputs
    assert isinstance(first, tape.Tensor) and first.item() == 5.0
    assert second is x
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, -1.0])
    x.zero_grad()
    (3.0 / x).sum().backward()
    np.testing.assert_allclose(x.grad, -3.0 / x.data**2, rtol=1e-15)
    x.zero_grad()
    (2.0**x).sum().backward()
    np.testing.assert_allclose(x.grad, np.log(2.0) * 2.0**x.data, rtol=1e-14)


def test_node_op_is_the_name_string():
    x = tape.tensor([1.0], requires_grad=True)
    assert (x @ x).node.op == "matmul"
    assert isinstance((x + 1.0).node.op, str)


def test_node_attributes():
    x = tape.tensor([[1.0, 2.0]], requires_grad=True)
    w = tape.tensor([[3.0], [4.0]], requires_grad=True)
    out = x @ w
    node = out.node
    assert isinstance(node, tape.Node)
    assert op_name(node) == "matmul"
    assert isinstance(node.inputs, tuple)
    assert node.inputs[0] is x and node.inputs[1] is w
    assert node.output is out
    assert isinstance(node.index, int)


def test_node_indices_increase_and_are_never_reused(fresh_tape):
    x = tape.tensor([1.0], requires_grad=True)
    kept = [x * 1.0]
    for _ in range(5):
        kept.append(kept[-1] + 1.0)
        _dropped = kept[-1] * 3.0  # dies at the next iteration; its index stays used
    indices = [t.node.index for t in kept]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert [n.index for n in fresh_tape] == sorted(n.index for n in fresh_tape)
    seen = set(indices) | {_dropped.node.index}
    highest = max(seen)
    fresh_tape.clear()
    after = [x * 2.0 for _ in range(3)]
    new = [t.node.index for t in after]
    assert all(i > highest for i in new)
    assert new == sorted(new) and not seen & set(new)
    assert indices == [t.node.index for t in kept]  # old records keep their numbers


# ---- the Tape ------------------------------------------------------------------------------------


def test_tape_len_iteration_and_clear(fresh_tape):
    assert len(fresh_tape) == 0 and list(fresh_tape) == []
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    a = x * 2.0
    b = a.exp()
    c = (a + b).sum()
    assert len(fresh_tape) == 4
    nodes = list(fresh_tape)
    assert [op_name(n) for n in nodes] == ["mul", "exp", "add", "sum"]
    assert nodes[0].output is a and nodes[1].output is b and nodes[3].output is c
    # nothing holds a + b and sum's VJP reads none of it: freed, but the graph keeps its shape
    freed = nodes[2].output
    assert freed.shape == (2,) and freed.node is nodes[2]
    with pytest.raises(RuntimeError, match="freed"):
        _ = freed.data
    assert all(isinstance(n, tape.Node) for n in nodes)
    assert tape.get_tape() is fresh_tape

    fresh_tape.clear()
    assert len(fresh_tape) == 0 and list(fresh_tape) == []
    assert np.array_equal(c.data, (2 * x.data + np.exp(2 * x.data)).sum(keepdims=True)[0])
    with pytest.raises(RuntimeError, match=r"clear"):
        c.backward()
    assert x.grad is None
    # recording works again after clear
    d = (x * 3.0).sum()
    assert len(fresh_tape) == 2
    d.backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_backward_releases_what_it_visited_and_dead_records_are_dropped(fresh_tape):
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    side = x * 5.0  # not on the path of loss
    loss = (x * 2.0).sum()
    assert len(fresh_tape) == 3
    loss.backward()
    assert [n.output for n in fresh_tape] == [side]
    del side
    assert len(fresh_tape) == 0


# ---- gradients are plain arrays of the leaf's shape and dtype ------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(), (1,), (3,), (1, 1), (2, 1, 3)])
def test_grad_is_an_ndarray_of_the_leaf_shape_and_dtype(shape, dtype):
    rng = np.random.default_rng(0)
    x = tape.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)
    big = rng.standard_normal((4, 2, 5, 3))  # float64, broadcasts against every shape
    (x * big + x * x).sum().backward()
    assert type(x.grad) is np.ndarray
    assert x.grad.shape == shape and x.grad.dtype == dtype
    # x * big: big summed over the axes x was broadcast along
    lead = 4 - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1)
    # x * x is broadcast too: each of its entries lands in big.size / x.size places
    copies = big.size // x.size
    want = big.sum(axis=axes, keepdims=True).reshape(shape) + copies * 2 * x.data.astype(float)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(x.grad, want, rtol=tol, atol=tol)


def test_grad_of_a_0d_leaf_is_a_0d_array_after_sums_and_passes():
    x = tape.tensor(2.0, requires_grad=True)
    (x * x).backward()  # two contributions summed
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad == 4.0
    y = tape.tensor(2.0, requires_grad=True)
    (y * 3.0).backward()
    (y * 3.0).backward()  # two passes summed
    assert type(y.grad) is np.ndarray and y.grad == 6.0
    (g,) = tape.grad(x * x, [x])
    assert type(g) is np.ndarray and g == 4.0


def test_grad_of_a_leaf_that_receives_nothing_from_the_path_stays_none():
    x = tape.tensor([1.0], requires_grad=True)
    unused = tape.tensor([2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    assert unused.grad is None
    np.testing.assert_array_equal(x.grad, [3.0])


# ---- no aliasing ---------------------------------------------------------------------------------


def test_gradients_never_alias_each_other_or_the_seed():
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = tape.tensor([4.0, 5.0, 6.0], requires_grad=True)
    G = np.array([1.0, -1.0, 0.5])
    z = x + y  # add hands the same upstream array to both parents
    z.backward(G)
    assert not np.shares_memory(x.grad, y.grad)
    assert not np.shares_memory(x.grad, G) and not np.shares_memory(y.grad, G)
    x.grad[0] = 100.0
    np.testing.assert_array_equal(y.grad, [1.0, -1.0, 0.5])
    np.testing.assert_array_equal(G, [1.0, -1.0, 0.5])
    G[1] = 7.0
    np.testing.assert_array_equal(y.grad, [1.0, -1.0, 0.5])


def test_gradients_through_views_do_not_alias_the_seed():
    x = tape.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    G = np.arange(4.0).reshape(2, 2)
    x.reshape(2, 2).backward(G)
    G[0, 0] = 99.0
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 2.0, 3.0])
    leaf = tape.tensor([1.0, 2.0], requires_grad=True)
    seed = np.array([5.0, 6.0])
    leaf.backward(seed)
    seed[0] = -1.0
    np.testing.assert_array_equal(leaf.grad, [5.0, 6.0])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.sum(),  # its VJP hands back a read-only broadcast view
        lambda x: x.mean(),
        lambda x: (x + np.ones((4, 1, 3))).sum(),
        lambda x: x.reshape(3, 2).sum(),
        lambda x: x.T.sum(),
        lambda x: x[0].sum(),
        lambda x: x.max(),
    ],
    ids=["sum", "mean", "broadcast", "reshape", "T", "getitem", "max"],
)
def test_grad_is_a_writable_array_the_leaf_owns(fn):
    x = tape.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    fn(x).backward()
    assert x.grad.flags.writeable
    assert x.grad.base is None or not np.shares_memory(x.grad, x.data)
    before = x.grad.copy()
    x.grad *= 2.0  # what an optimizer or a user may do
    np.testing.assert_array_equal(x.grad, 2 * before)


def test_tape_grad_results_do_not_alias():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = tape.tensor([3.0, 4.0], requires_grad=True)
    G = np.array([1.0, 1.0])
    dx, dy = tape.grad(x + y, [x, y], grad_outputs=G)
    dx[0] = 50.0
    np.testing.assert_array_equal(dy, [1.0, 1.0])
    np.testing.assert_array_equal(G, [1.0, 1.0])


def test_accumulated_grad_is_not_shared_between_leaves_across_passes():
    x = tape.tensor([1.0], requires_grad=True)
    y = tape.tensor([1.0], requires_grad=True)
    (x + y).sum().backward()
    (x + y).sum().backward()
    x.grad += 10.0
    np.testing.assert_array_equal(y.grad, [2.0])


# ---- custom Functions ----------------------------------------------------------------------------


class Lin(tape.Function):
    """``Z = X W + b`` with the seed formulas as its hand-written backward."""

    @staticmethod
    def forward(ctx, X, W, b):
        ctx.save_for_backward(X, W)
        return X @ W + b

    @staticmethod
    def backward(ctx, dZ):
        X, W = ctx.saved
        return dZ @ W.T, X.T @ dZ, dZ.sum(0)


class WrongLin(tape.Function):
    """A ``Lin`` whose ``dW`` forgets a factor: ``2 Xᵀ dZ``."""

    @staticmethod
    def forward(ctx, X, W, b):
        ctx.save_for_backward(X, W)
        return X @ W + b

    @staticmethod
    def backward(ctx, dZ):
        X, W = ctx.saved
        return dZ @ W.T, 2 * (X.T @ dZ), dZ.sum(0)


class Scale(tape.Function):
    @staticmethod
    def forward(ctx, x, factor=1.0):
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.factor,)


class FirstOnly(tape.Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * 1.0 + y * 0.0

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _lin_inputs(seed=0):
    rng = np.random.default_rng(seed)
    X = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="X")
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    b = tape.tensor(rng.standard_normal(2), requires_grad=True, name="b")
    return X, W, b


def test_function_apply_records_one_node_and_backpropagates(fresh_tape):
    x = tape.tensor([3.0, -1.0], requires_grad=True)
    y = Square.apply(x)
    assert len(fresh_tape) == 1
    assert y.node is next(iter(fresh_tape))
    assert "Square" in op_name(y.node)
    assert y.node.inputs[0] is x and y.node.output is y
    np.testing.assert_array_equal(y.data, [9.0, 1.0])
    (y * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, -2.0])


def test_function_on_tensors_without_grad_records_nothing(fresh_tape):
    y = Square.apply(tape.tensor([2.0]))
    assert y.node is None and not y.requires_grad
    assert len(fresh_tape) == 0
    with tape.no_grad():
        z = Square.apply(tape.tensor([2.0], requires_grad=True))
    assert z.node is None and len(fresh_tape) == 0


def test_function_keyword_parameters_and_ctx_attributes():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    Scale.apply(x, factor=3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_function_backward_may_return_none_for_an_input():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = tape.tensor([5.0, 6.0], requires_grad=True)
    FirstOnly.apply(x, y).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    assert y.grad is None


def test_lin_function_matches_builtin_ops_and_passes_gradcheck():
    X, W, b = _lin_inputs()
    Lin.apply(X, W, b).relu().pow(2).mean().backward()
    got = [t.grad.copy() for t in (X, W, b)]
    for t in (X, W, b):
        t.zero_grad()
    (X @ W + b).relu().pow(2).mean().backward()
    for g, t in zip(got, (X, W, b)):
        np.testing.assert_allclose(g, t.grad, rtol=1e-13, atol=1e-15)
    assert tape.gradcheck(Lin.apply, [X, W, b]) is True
    assert tape.gradcheck(lambda X, W, b: Lin.apply(X, W, b).tanh().sum(), [X, W, b]) is True


def _floats(message: str) -> list[float]:
    return [float(s) for s in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", message)]


def test_gradcheck_catches_a_wrong_backward_and_names_input_index_and_values():
    X, W, b = _lin_inputs(1)
    with pytest.raises(tape.GradcheckError) as info:
        tape.gradcheck(WrongLin.apply, [X, W, b])
    message = str(info.value)
    assert "input 1" in message and "'W'" in message
    found = re.search(r"index \((\d+), (\d+)\)", message)
    assert found, message
    i, j = int(found.group(1)), int(found.group(2))
    # both values of that entry: the wrong analytic one (2×) and the true one
    values = _floats(message[found.end() :])
    assert len(values) >= 2
    analytic, numeric = values[0], values[1]
    np.testing.assert_allclose(analytic, 2 * numeric, rtol=1e-4)
    # numeric is Σ_n X[n, i] v[n, j] for the gradcheck's projection v: a real entry of Xᵀ v
    assert abs(numeric) > 0
    assert 0 <= i < 3 and 0 <= j < 2


def test_gradcheck_passes_on_correct_and_returns_true():
    x = tape.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = tape.tensor([[1.5], [-0.5]], requires_grad=True)
    assert tape.gradcheck(lambda a, b: (a * b).tanh(), [x, y]) is True  # non-scalar output
    assert tape.gradcheck(lambda a: (a * a).sum(), [x]) is True
    assert tape.gradcheck(lambda a: a.sigmoid().mean(), x) is True
    assert x.grad is None and y.grad is None


def test_gradcheck_fails_on_an_op_slightly_wrong_and_respects_tolerances():
    class Off(tape.Function):
        # d/dx sin(x) with a 1e-4 relative error
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return np.sin(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved
            return (grad * np.cos(x) * (1 + 1e-4),)

    x = tape.tensor([0.3, 1.2], requires_grad=True)
    assert tape.gradcheck(Off.apply, [x], rtol=1e-3, atol=1e-5) is True
    with pytest.raises(tape.GradcheckError, match="input 0"):
        tape.gradcheck(Off.apply, [x], rtol=1e-7, atol=1e-9)


def test_gradcheck_ignores_inputs_that_do_not_require_grad():
    x = tape.tensor([0.5, 2.0], requires_grad=True)
    c = tape.tensor([3.0, 4.0])
    assert tape.gradcheck(lambda a, k: (a * k).sum(), [x, c]) is True


def test_function_is_differentiable_once_and_says_so():
    x = tape.tensor([1.5], requires_grad=True)
    (g,) = tape.grad(Square.apply(x).sum(), [x], create_graph=True)
    np.testing.assert_array_equal(np.asarray(g), [3.0])
    with pytest.raises(RuntimeError, match="Square"):
        tape.grad(g.sum(), [x])
