"""Issue 10's contract: what records keep, what a pass frees, threads, in-place writes, stand-ins.

Records save only what their VJP reads and a releasing pass frees it (API.md,
Autodiff: Memory); leaf accumulation is thread-safe; an in-place write through
any alias of a saved value is caught at backward; freed intermediates are
stand-ins that keep the graph's structure.
"""

import gc
import inspect
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import tape
from tape import autodiff
from tape.record import reachable

# ---- what a record saves ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "saved"),
    [
        (lambda x, w: x + w, 0),  # add reads nothing
        (lambda x, w: x.relu(), 1),  # relu its output
        (lambda x, w: x.tanh(), 1),  # tanh its output
        (lambda x, w: x @ w.T, 2),  # matmul both inputs
        (lambda x, w: x.sum(axis=0), 1),  # sum only a shape
    ],
)
def test_a_record_saves_only_what_its_vjp_reads(make, saved):
    x = tape.tensor(np.ones((3, 2)), requires_grad=True)
    w = tape.tensor(np.ones((3, 2)), requires_grad=True)
    node = make(x, w).node
    assert len(node.saved) == saved
    arrays = [v for v in node.saved if isinstance(v, np.ndarray)]
    if node.op == "sum":
        assert arrays == [] and node.saved == ((3, 2),)  # the shape, never the values


def test_a_record_whose_vjp_reads_only_a_plain_constant_keeps_no_second_tuple():
    x = tape.tensor(np.ones(3), requires_grad=True)
    c = np.full(3, 2.0)
    for node in ((x * c).node, (c * x).node, (x * 4.0).node):
        assert node.saved is node.parents  # the constant is held once, by parents
    w = tape.tensor(np.full(3, 5.0))  # a constant Tensor: its array is what the VJP reads
    node = (x * w).node
    assert node.saved is not node.parents and node.saved[1] is w.data
    (x * c).sum().backward()
    assert np.array_equal(x.grad, c)


def test_an_intermediate_no_vjp_reads_is_freed_during_the_forward():
    x = tape.tensor(np.ones(100_000), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h.data)
    loss = (h + 1.0).sum()  # add and sum read nothing of h
    del h
    gc.collect()
    assert ref() is None and loss.node is not None


def _mlp(rng: np.random.Generator):
    """The issue's loop: a 128→64→1 MLP on a fresh batch of 256 rows each step, plain SGD."""
    w1 = tape.tensor(rng.standard_normal((128, 64)) * 0.1, requires_grad=True)
    w2 = tape.tensor(rng.standard_normal((64, 1)) * 0.1, requires_grad=True)

    def step() -> tape.Tensor:
        nonlocal w1, w2  # updated in place (w -= ...), as a user's loop does
        x = tape.tensor(rng.standard_normal((256, 128)))
        y = tape.tensor(rng.standard_normal((256, 1)))
        loss = (((x @ w1).relu() @ w2) - y).pow(2).mean()
        loss.backward()
        with tape.no_grad():
            w1 -= 0.001 * w1.grad
            w2 -= 0.001 * w2.grad
        w1.zero_grad()
        w2.zero_grad()
        return loss

    return step


def _classifier(rng: np.random.Generator):
    """tape.nn and tape.optim: a classifier on 1024 rows, whose loss indexes by the labels."""
    model = tape.nn.Sequential(tape.nn.Linear(32, 16), tape.nn.ReLU(), tape.nn.Linear(16, 10))
    opt = tape.optim.SGD(model.parameters(), lr=0.01)
    criterion = tape.nn.CrossEntropyLoss()

    def step() -> tape.Tensor:
        x = rng.standard_normal((1024, 32))
        labels = rng.integers(0, 10, 1024)  # 8 KB of index the loss's getitem takes
        loss = criterion(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def _growth_per_step(make_step, keep_tensor: bool, steps: int = 60) -> float:
    step = make_step(np.random.default_rng(0))
    kept = []
    for _ in range(5):  # warm up caches (interned shapes, call sites)
        step()
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(steps):
        loss = step()
        kept.append(loss if keep_tensor else loss.item())
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return grown / steps


@pytest.mark.parametrize("loop", [_mlp, _classifier], ids=["mlp", "nn classifier"])
def test_a_loop_that_keeps_its_losses_grows_by_at_most_5_kb_a_step(loop):
    # 300 steps in the measurement; 60 show the same per-step growth
    per_step = _growth_per_step(loop, keep_tensor=True) - _growth_per_step(loop, keep_tensor=False)
    assert per_step <= 5 * 1024, f"{per_step:.0f} bytes per step over keeping floats"


@pytest.mark.parametrize("constant", [np.ones, lambda shape: tape.tensor(np.ones(shape))])
def test_backward_frees_saved_values_and_constants_and_keeps_the_structure(constant):
    x = tape.tensor(np.ones((200, 50)), requires_grad=True)
    data = constant((200, 50))  # an array or a Tensor without grad, no one else will hold
    ref_const = weakref.ref(data)
    loss = (x * data).tanh().sum()
    tanh = loss.node.parents[0]
    ref_saved = weakref.ref(tanh.saved[0])
    del data
    gc.collect()
    assert ref_const() is not None and ref_saved() is not None  # the graph needs them
    loss.backward()
    gc.collect()
    assert ref_const() is None and ref_saved() is None
    shapes = [(n.op, [t.shape for t in n.inputs]) for n in reachable([loss.node])]
    assert shapes == [("mul", [(200, 50), (200, 50)]), ("tanh", [(200, 50)]), ("sum", [(200, 50)])]


class _Scale(tape.Function):
    @staticmethod
    def forward(ctx, x, factors):
        ctx.scale = float(factors[0])  # the backward needs a number, not the array
        return x * ctx.scale

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.scale,)


# An op that takes an array as a parameter, not an input: the array's dtype, and
# (x, the array) -> a scalar
ARRAY_PARAMETERS = {
    "an index": (int, lambda x, a: x[a].sum()),
    "an index in a tuple": (int, lambda x, a: x[None, a].sum()),
    "a condition": (bool, lambda x, a: tape.where(a, x[:1], 0.0).sum()),
    "a clamp bound": (float, lambda x, a: x[:1].clamp(min=a).sum()),
    "a Function's keyword argument": (float, lambda x, a: _Scale.apply(x, factors=a).sum()),
}


@pytest.mark.parametrize("how", ["backward", "tape.clear()"])
@pytest.mark.parametrize("case", ARRAY_PARAMETERS)
def test_a_releasing_pass_frees_the_arrays_an_op_took_as_parameters(case, how):
    # PyTorch frees an index or a condition after backward; a kept loss must not hold them
    dtype, f = ARRAY_PARAMETERS[case]
    x = tape.tensor(np.arange(4.0), requires_grad=True)
    a = np.random.default_rng(0).integers(0, 4, 1000).astype(dtype)  # nobody else holds it
    ref = weakref.ref(a)
    loss = f(x, a)
    del a
    gc.collect()
    assert ref() is not None  # the record needs it until then
    if how == "backward":
        loss.backward()
    else:
        tape.get_tape().clear()
    gc.collect()
    assert ref() is None
    tape.to_dot(loss)  # a diagram still draws the released record (the array's shape stays)


@pytest.mark.parametrize("records", [10, 2 * autodiff.FLOW_RECORDS])
def test_after_backward_nothing_holds_a_graph_its_tensors_dropped(records):
    # the latest pass's flows (a small graph) or its "flows not kept" mark (a large one)
    # must not keep the graph alive once the user lets go of it
    def live_records() -> int:
        gc.collect()
        return sum(type(o) is tape.record.Node for o in gc.get_objects())

    x = tape.tensor([1.0], requires_grad=True)
    before = live_records()
    h = x
    for _ in range(records):
        h = h * 1.5
    h.backward()
    del h  # a small graph's released records keep their flows for a diagram until the next pass
    assert live_records() - before <= (records if records <= autodiff.FLOW_RECORDS else 0)
    (x * 2).backward()
    assert live_records() - before <= 1


@pytest.mark.parametrize("draw", [False, True])
def test_a_retained_graph_frees_its_saved_values_when_dropped(draw):
    # the thread holds only released records for their flows: a graph that still holds its
    # saved values (retain_graph=True, a diagram's own pass) goes as soon as it is dropped
    x = tape.tensor(np.ones((100, 50)), requires_grad=True)
    loss = (x * 2.0).tanh().sum()
    ref = weakref.ref(loss.node.parents[0].saved[0])  # tanh's output
    if draw:
        tape.to_networkx(loss, flow=True)  # the diagram's own pass
    else:
        loss.backward(retain_graph=True)
    del loss
    gc.collect()
    assert ref() is None


def test_tape_clear_frees_what_the_records_saved():
    x = tape.tensor(np.ones(50_000), requires_grad=True)
    y = x.exp()
    ref = weakref.ref(y.node.saved[0])
    out = y.sum()
    del y
    tape.get_tape().clear()
    gc.collect()
    assert ref() is None
    with pytest.raises(RuntimeError, match=r"tape\.clear\(\)"):
        out.backward()


# ---- threads ----------------------------------------------------------------------------------


@pytest.fixture
def frequent_switches():
    """Threads switch every microsecond instead of every 5 ms: races show in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _in_threads(work, n_threads: int) -> list:
    """Run ``work(k)`` in ``n_threads`` threads started together; return what they raised."""
    barrier = threading.Barrier(n_threads, timeout=60)
    errors: list = []

    def run(k):
        try:
            barrier.wait()
            work(k)
        except BaseException as e:  # reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_backpropagating_into_one_leaf_give_exactly_the_sum():
    w = tape.tensor(np.zeros(1000), requires_grad=True)
    n_threads, passes = 4, 25

    def work(k):
        for _ in range(passes):
            (w * float(k + 1)).sum().backward()

    assert _in_threads(work, n_threads) == []
    expected = passes * sum(range(1, n_threads + 1))  # 25 · (1 + 2 + 3 + 4)
    np.testing.assert_array_equal(w.grad, np.full(1000, float(expected)))


def test_threads_changing_tensors_in_place_keep_the_version_registry_whole(frequent_switches):
    # past 1024 registered buffers each change prunes the registry; threads once pruned it
    # while others wrote to it, and a change that raised there was never registered
    held = [tape.tensor(np.zeros(3)) for _ in range(1100)]
    with tape.no_grad():
        for t in held:
            t += 1.0
    silently_wrong = []

    def work(k):
        w = tape.tensor(np.ones(3), requires_grad=True)
        for _ in range(300):
            batch = tape.tensor(np.ones(3))
            loss = (w * batch).sum()  # mul saves batch for w's gradient
            with tape.no_grad():
                batch -= 0.5
            try:
                loss.backward()
                silently_wrong.append(w.grad)
            except RuntimeError:
                pass  # the change was seen, as it must be

    assert _in_threads(work, 4) == []
    assert silently_wrong == []


def test_threads_registering_hooks_on_one_tensor_keep_every_hook(frequent_switches):
    lost = 0
    for _ in range(300):
        w = tape.tensor(np.ones(3), requires_grad=True)  # a fresh shared parameter
        calls = []
        register = lambda k, w=w, calls=calls: w.register_hook(lambda g: calls.append(1))
        assert _in_threads(register, 8) == []
        (w * 2.0).sum().backward()
        lost += 8 - len(calls)
    assert lost == 0


# ---- in-place writes through any alias --------------------------------------------------------


ROUTES = {
    "the tensor itself": lambda w: w.__iadd__(1.0),
    "a view": lambda w: w.T.__iadd__(1.0),
    "a slice": lambda w: w[1:].__imul__(2.0),
    "a reshape": lambda w: w.reshape(2, 2).__isub__(1.0),
    "detach()": lambda w: w.detach().__iadd__(1.0),
    "NumPy out=": lambda w: np.add(w, 1.0, out=w),
    "np.copyto": lambda w: np.copyto(w, np.zeros(4)),
    "item assignment": lambda w: w.__setitem__(0, 5.0),
    # NumPy functions and ufunc methods that write into their first argument
    "np.put": lambda w: np.put(w, [0], [9.0]),
    "np.putmask": lambda w: np.putmask(w, np.array([True, False, True, False]), 9.0),
    "np.place": lambda w: np.place(w, np.array([True, False, True, False]), [9.0]),
    "np.fill_diagonal": lambda w: np.fill_diagonal(w.reshape(2, 2), 9.0),
    "np.put_along_axis": lambda w: np.put_along_axis(w, np.array([0]), 9.0, axis=0),
    "np.add.at": lambda w: np.add.at(w, [0, 0], 1.0),
    "np.put on detach()": lambda w: np.put(w.detach(), [3], [9.0]),
    "np.put(a=w)": lambda w: np.put(a=w, ind=[0], v=[9.0]),
    "np.copyto(dst=w)": lambda w: np.copyto(dst=w, src=np.zeros(4)),
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_write_through_any_alias_of_a_saved_value_is_caught_at_backward(route):
    w = tape.tensor(np.arange(1.0, 5.0), requires_grad=True, name="w")
    x = tape.tensor(np.ones(4), requires_grad=True)
    loss = (x * w).sum()  # mul saves w for x's gradient
    with tape.no_grad():
        ROUTES[route](w)
    with pytest.raises(RuntimeError, match=r"'w'.*'mul' \(recorded at .*test_memory\.py:\d+\)"):
        loss.backward()
    assert x.grad is None and w.grad is None  # nothing was written


@pytest.mark.parametrize("route", ROUTES)
def test_a_write_no_vjp_reads_is_allowed(route):
    w = tape.tensor(np.arange(1.0, 5.0), requires_grad=True)
    loss = (w + 1.0).sum()  # add reads neither input
    with tape.no_grad():
        ROUTES[route](w)
    loss.backward()
    np.testing.assert_array_equal(w.grad, np.ones(4))


# A VJP that reads an array the op took as a parameter: an index Tensor, a condition Tensor.
# (x, the parameter Tensor) -> loss; the parameter's name in the record; the op
READ_THROUGH_PARAMETERS = {
    "an index": (lambda x, p: x[p].sum(), [0, 1], "key", "getitem"),
    "an index in a tuple": (lambda x, p: x[None, p].sum(), [0, 1], "key", "getitem"),
    "a condition": (lambda x, p: tape.where(p, x, 0.0).sum(), [True, False, True], "cond", "where"),
}


@pytest.mark.parametrize("case", READ_THROUGH_PARAMETERS)
def test_a_changed_index_or_condition_tensor_is_caught_at_backward(case):
    f, value, parameter, op = READ_THROUGH_PARAMETERS[case]
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    p = tape.tensor(value)
    loss = f(x, p)
    p[:] = p.data[::-1]  # the VJP would route the gradient by the new values
    with pytest.raises(RuntimeError, match=rf"parameter '{parameter}' .* of '{op}' \(recorded at"):
        loss.backward()
    assert x.grad is None


def test_a_change_to_a_functions_keyword_argument_is_allowed():
    # a Function's backward reads its context only, never what its forward took by keyword
    class AddBias(tape.Function):
        @staticmethod
        def forward(ctx, x, bias):
            return x + bias

        @staticmethod
        def backward(ctx, g):
            return (g,)

    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = tape.tensor([1.0, 1.0, 1.0])
    y = AddBias.apply(x, bias=b.data)
    b += 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("given_as", ["input", "keyword"])
def test_a_change_to_what_a_function_saved_is_caught(given_as):
    # its backward reads ctx.saved: a change there, whatever the array came in as, is caught
    class Scale(tape.Function):
        @staticmethod
        def forward(ctx, x, w=None):
            w = x if w is None else w
            ctx.save_for_backward(w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved
            return (g * w,)

    x = tape.tensor([1.0, 2.0], requires_grad=True)
    w = tape.tensor([3.0, 4.0])
    y = Scale.apply(x) if given_as == "input" else Scale.apply(x, w=w.data)
    with tape.no_grad():
        (x if given_as == "input" else w).__iadd__(1.0)
    with pytest.raises(
        RuntimeError, match=r"what its forward saved \(0: float64\[2\]\) of 'Scale'"
    ):
        y.sum().backward()


def test_item_assignment_while_recording_is_refused_before_anything_is_written():
    c = tape.tensor(np.arange(4.0), requires_grad=True)
    before = c.data.copy()
    with pytest.raises(RuntimeError, match="in place while recording"):
        c[1:] *= 0  # the slice is recorded, so its *= refuses first
    with pytest.raises(RuntimeError, match="item assignment"):
        c[0] = 1.0
    np.testing.assert_array_equal(c.data, before)


@pytest.mark.parametrize(
    "value", [np.ones(3), "text", np.ones(2, dtype=complex), tape.tensor(np.ones((2, 2)))]
)
def test_bad_item_assignment_changes_nothing(value):
    c = tape.tensor(np.arange(4.0))
    before = c.data.copy()
    with pytest.raises((ValueError, TypeError)):
        c[1:3] = value
    np.testing.assert_array_equal(c.data, before)


# ---- stand-ins ---------------------------------------------------------------------------------


def test_stand_ins_keep_shape_dtype_name_and_record_and_refuse_data():
    x = tape.tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    h = x * 2.0
    h.name = "h"
    node = h.node
    loss = (h + 1.0).sum()
    del h
    gc.collect()
    (standin, _) = loss.node.parents[0].inputs
    assert standin.shape == (4, 3) and standin.dtype == np.float32
    assert standin.name == "h" and standin.node is node and standin.requires_grad
    with pytest.raises(RuntimeError, match=r"'mul' \(#\d+\) was freed"):
        _ = standin.data
    held = tape.tensor(np.ones(2), requires_grad=True)
    assert (held * 3.0).node.inputs[0] is held  # a tensor someone holds is that very tensor


def test_to_dot_after_a_releasing_backward_labels_every_edge():
    x = tape.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="x")
    b = tape.tensor(np.ones(3), requires_grad=True, name="b")
    loss = ((x + b).tanh() * x).sum()
    loss.backward()  # releases the graph: no replay is possible
    graph = tape.to_networkx(loss)
    for u, v, attrs in graph.edges(data=True):
        if graph.nodes[u]["kind"] == "op" or graph.nodes[u]["requires_grad"]:
            assert "grad" in attrs, (u, v, attrs)
    source = tape.to_dot(loss).source
    assert source.count("+= ") >= 5 and "sum over axis 0" in source


def test_to_dot_after_a_backward_from_a_temporary_labels_every_edge():
    # the loss was never held: the flows stay until the thread's next pass all the same
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    w = tape.tensor([0.0, 1.0, 2.0], requires_grad=True, name="w")
    out = x * w
    (out * 2.0).sum().backward()
    source = tape.to_dot(out).source
    assert "+= [0, 2, 4]" in source and "+= [2, 4, 6]" in source  # 2w into x, 2x into w


def test_only_the_latest_pass_shows_its_flows_on_a_retained_graph():
    # retained records keep their flows on themselves; the thread's next pass makes them stale
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 2.0
    a, b = (h * 1.0).sum(), (h * 3.0).sum()
    a.backward(retain_graph=True)
    assert a.node.sent is not None
    b.backward(retain_graph=True)
    assert a.node.sent is None  # a's own records: only the first pass walked them
    assert b.node.sent is not None and h.node.sent[0].tolist() == [3.0, 3.0, 3.0]


def test_a_long_pass_after_a_diagram_leaves_no_stale_labels():
    # a diagram's own pass keeps every record's flows; a later pass too long to keep its own
    # must not leave the diagram's (seeded with ones) showing as if they were its
    x = tape.tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    h = x
    for _ in range(autodiff.FLOW_RECORDS + 10):
        h = h * 1.0
    tape.to_networkx(h.sum(), flow=True)  # walks with a seed of ones
    h.backward(np.full(3, 5.0), retain_graph=True)
    assert h.node.sent is None
    assert "+= [1, 1, 1]" not in tape.to_dot(h).source


# ---- the walk ----------------------------------------------------------------------------------


def test_the_walk_with_its_accumulate_fits_on_one_screen():
    lines = [
        line
        for line in inspect.getsource(autodiff.walk).splitlines()
        if line.strip() and not line.strip().startswith(("#", '"""'))
    ]
    body = lines[lines.index(next(x for x in lines if "grads: dict" in x)) :]
    assert len(body) <= 30, "\n".join(body)
