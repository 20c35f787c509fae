"""Bugs found by review, each pinned by the smallest program that showed it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tape


def test_an_input_changed_in_place_after_recording_is_refused():
    w = tape.tensor([1.0], requires_grad=True)
    c = tape.tensor([3.0])  # a constant: changing it needs no no_grad
    y = (w * c).sum()
    c += 100  # the VJP of mul needs the old c
    with pytest.raises(RuntimeError, match=r"input 1 .* of 'mul' .* changed in place"):
        y.backward()
    assert w.grad is None


def test_a_parameter_stepped_before_a_retained_backward_is_refused():
    w = tape.tensor([2.0], requires_grad=True)
    y = (w * w).sum()
    y.backward(retain_graph=True)
    tape.optim.SGD([w], lr=1.0).step()  # w changes in place
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()
    np.testing.assert_array_equal(w.grad, [4.0])  # only the first pass counted


def test_training_loops_that_rebuild_the_graph_are_unaffected():
    w = tape.tensor([2.0], requires_grad=True)
    opt = tape.optim.SGD([w], lr=0.25)
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()  # w ← w − 0.25·2w = w/2
    np.testing.assert_allclose(w.data, [0.25])


def test_load_state_dict_counts_as_an_in_place_change():
    layer = tape.nn.Linear(2, 1, seed=0)
    y = layer(tape.tensor([[1.0, 2.0]])).sum()
    layer.load_state_dict({k: v + 1 for k, v in layer.state_dict().items()})
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()


def test_a_graph_that_crosses_threads_is_walked_in_one_order():
    """Record indices are one sequence for all threads (they were per-thread)."""
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    made: dict = {}

    def worker():
        h = x * 3.0  # recorded on the worker's tape
        made["h"] = h * 2.0

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    h2 = made["h"]
    calls = []
    h2.register_hook(lambda g: calls.append(g.copy()))
    y = (h2 * x).sum() + (x * x).sum()  # recorded here, after the worker's records
    y.backward()
    # d/dx [6x·x + x·x] = 14x, and the hook saw h2's whole gradient once
    np.testing.assert_allclose(x.grad, 14 * x.data)
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], x.data)


def test_transpose_with_negative_axes():
    c = np.arange(6.0).reshape(2, 3)
    x = tape.tensor(np.ones((3, 2)), requires_grad=True)
    (x.transpose(-1, 0) * c).sum().backward()
    np.testing.assert_array_equal(x.grad, c.T)


def test_clamp_with_tensor_bounds():
    x = tape.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    y = x.clamp(min=tape.tensor(0.0), max=tape.tensor(1.0))
    np.testing.assert_array_equal(y.data, [0.0, 0.5, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


def test_list_constants_work_in_backward():
    x = tape.tensor(np.ones((2, 2)), requires_grad=True)
    (x @ [[1.0], [2.0]]).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 2.0], [1.0, 2.0]])
    x.grad = None
    tape.concatenate([x, [[5.0, 6.0]]]).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 2)))


def test_concatenate_refuses_axis_none_with_a_fix():
    x = tape.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"reshape\(-1\)"):
        tape.concatenate([x, x], axis=None)


def test_astype_to_integers_leaves_the_graph():
    x = tape.tensor([1.7, 2.2], requires_grad=True)
    n = x.astype(np.int64)
    assert n.dtype == np.int64 and not n.requires_grad and n.node is None
    f = x.astype(np.float32)
    assert f.requires_grad and f.node.op == "astype"


def test_a_function_returning_a_tuple_is_refused():
    class Two(tape.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2, a * 3

        @staticmethod
        def backward(ctx, grad):
            return (grad,)

    with pytest.raises(TypeError, match=r"Two\.forward returned tuple"):
        Two.apply(tape.tensor([1.0], requires_grad=True))


def test_a_function_backward_error_names_the_function_and_line():
    class Broken(tape.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            return (grad @ np.ones((5, 5)),)  # wrong shapes: NumPy raises

    y = Broken.apply(tape.tensor([1.0, 2.0], requires_grad=True)).sum()
    with pytest.raises(ValueError) as info:
        y.backward()
    notes = info.value.__notes__
    assert any("'Broken'" in note and "test_regressions.py" in note for note in notes)


def test_a_hook_replacement_takes_the_tensor_dtype_and_is_not_aliased():
    x = tape.tensor([1.0, 2.0], dtype=np.float32, requires_grad=True)
    kept = np.array([5.0, 6.0])  # float64
    x.register_hook(lambda g: kept)
    (x * 2).sum().backward()
    assert x.grad.dtype == np.float32
    x.grad += 1
    np.testing.assert_array_equal(kept, [5.0, 6.0])


def test_a_stale_hook_handle_cannot_remove_a_newer_hook():
    x = tape.tensor([1.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append("h1"))
    h2 = x.register_hook(lambda g: seen.append("h2"))
    h2.remove()
    x.register_hook(lambda g: seen.append("h3"))
    h2.remove()  # again: must not touch h3
    (x * 1.0).sum().backward()
    assert seen == ["h1", "h3"]


def test_grad_outputs_may_be_a_numpy_scalar():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    (g,) = tape.grad(x.sum(), [x], grad_outputs=np.float32(2.0))
    np.testing.assert_array_equal(g, [2.0, 2.0])


def test_diagram_edges_replay_the_seed_backward_used():
    x = tape.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    y.backward(np.array([1.0, 0.0]))
    graph = tape.to_networkx(y)
    flows = [d for _, _, d in graph.edges(data=True) if "grad" in d]
    assert flows, "edges should carry the gradient that flowed"
    assert any(np.array_equal(d["grad"], x.grad) for d in flows)


def test_a_leaf_flagged_by_hand_on_integer_data_fails_loudly():
    n = tape.tensor([1, 2, 3])
    n.requires_grad = True
    with pytest.raises(TypeError, match="integer"):
        (n * 1.5).sum().backward()
