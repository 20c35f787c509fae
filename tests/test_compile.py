"""tape.compile and tape.code: generated NumPy agrees with the engine, and says what it does.

Every op of the op table, random DAGs with fan-out and broadcasting, float64
and float32: the compiled step returns what ``tape.func.value_and_grad``
returns, on the inputs it was traced with and on fresh ones of the same
shapes (which is what catches a value frozen into the code). The generated
source runs without tape; what a trace cannot see raises ``TraceError``.
"""

from __future__ import annotations

import gc
import linecache
import subprocess
import sys
import traceback

import numpy as np
import pytest
from hypothesis import given
from op_specs import SPECS
from test_hypothesis import SETTINGS, programs, run

import tape
from tape.cli import seed_network
from tape.compile import FORMS
from tape.ops import OPS

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-12}  # the same arithmetic, in the same order


def assert_same(compiled: tuple, eager: tuple, dtype: type) -> None:
    """``(value, grads)`` pairs agree: same shapes and dtypes, values to the dtype's tolerance."""
    tol = TOLERANCE[dtype]
    (v1, g1), (v2, g2) = compiled, eager
    np.testing.assert_allclose(v1, v2, rtol=tol, atol=tol)
    g1 = g1 if isinstance(g1, tuple) else (g1,)
    g2 = g2 if isinstance(g2, tuple) else (g2,)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        assert isinstance(a, np.ndarray)
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---- every op of the op table -------------------------------------------------------------


def _cases() -> list:
    cases = []
    for spec in SPECS:
        for i, kw in enumerate(spec.grid):
            cases.append(pytest.param(spec, kw, None, id=f"{spec.name}-grid{i}"))
        for i, shapes in enumerate(spec.broadcast):
            cases.append(pytest.param(spec, {}, shapes, id=f"{spec.name}-bcast{i}"))
    return cases


def test_every_op_has_a_code_form() -> None:
    assert set(OPS) <= set(FORMS), f"no code form in tape/compile.py for {set(OPS) - set(FORMS)}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("spec", "kw", "shapes"), _cases())
def test_op_compiled_equals_value_and_grad(spec, kw, shapes, dtype) -> None:
    rng = np.random.default_rng(0)
    xs = [x.astype(dtype) for x in spec.sample(rng, shapes, kw)]
    weights = rng.standard_normal(np.shape(spec.ref(*xs, **kw))).astype(dtype)

    def f(*ts):
        return (spec.call(*ts, **kw) * weights).sum()  # every output entry weighs differently

    argnums = tuple(range(len(xs)))
    step = tape.compile(f, argnums)
    reference = tape.func.value_and_grad(f, argnums)
    assert_same(step(*xs), reference(*xs), dtype)
    fresh = [x.astype(dtype) for x in spec.sample(rng, shapes, kw)]  # new values, same shapes
    assert_same(step(*fresh), reference(*fresh), dtype)
    assert step.traces == 1


SPECIALS = [
    pytest.param(s, sp, id=f"{s.name}-{i}") for s in SPECS for i, sp in enumerate(s.special)
]


@pytest.mark.parametrize(("spec", "special"), SPECIALS)
def test_op_compiled_at_kinks_and_ties(spec, special) -> None:
    xs = [np.asarray(x, dtype=np.float64) for x in special.inputs]

    def f(*ts):
        return spec.call(*ts, **special.kwargs).sum()

    argnums = tuple(range(len(xs)))
    _, grads = tape.compile(f, argnums)(*xs)
    for g, expected in zip(grads, special.grads):
        np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-12, err_msg=special.why)


# ---- random DAGs with fan-out and broadcasting --------------------------------------------


@SETTINGS
@given(programs())
def test_random_dags_compiled_equal_value_and_grad(case) -> None:
    leaves, program = case
    argnums = tuple(range(len(leaves)))

    def f(*xs):
        return run(program, list(xs)).sum()

    for dtype in (np.float64, np.float32):
        xs = [leaf.astype(dtype) for leaf in leaves]
        step = tape.compile(f, argnums)
        assert_same(step(*xs), tape.func.value_and_grad(f, argnums)(*xs), dtype)
        shifted = [np.tanh(x + 0.5).astype(dtype) for x in xs]
        assert_same(step(*shifted), tape.func.value_and_grad(f, argnums)(*shifted), dtype)


# ---- the seed network and the MLP ---------------------------------------------------------


def seed_loss(W, b, X, y):
    z = X @ W + b
    z.name = "z"
    return ((z.relu() - y) ** 2).mean()


def seed_data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    b, y = rng.standard_normal(2), rng.standard_normal((4, 2))
    return [a.astype(dtype) for a in (W, b, X, y)]


def test_seed_network_reads_like_the_hand_derivation() -> None:
    W, b, X, y = seed_data()
    source = tape.compile(seed_loss, argnums=(0, 1)).source(W, b, X, y)
    assert "dW = X.T @ dz" in source
    assert "db = dz.sum(axis=0)" in source
    assert "dX" not in source  # X is data: nobody asked for its gradient
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import numpy as np"]
    assert "# matmul  test_compile.py:" in source  # op and the user's line


def test_seed_source_runs_with_numpy_only() -> None:
    W, b, X, y = seed_data()
    step = tape.compile(seed_loss, argnums=(0, 1))
    namespace = {"np": np}
    exec(step.source(W, b, X, y), namespace)
    value, (dW, db) = namespace["seed_loss_value_and_grad"](W, b, X, y)
    expected_value, (eW, eb) = tape.func.value_and_grad(seed_loss, argnums=(0, 1))(W, b, X, y)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(dW, eW, rtol=1e-12)
    np.testing.assert_allclose(db, eb, rtol=1e-12)


def test_seed_source_runs_where_tape_cannot_be_imported(tmp_path) -> None:
    net = seed_network()
    source = tape.code(net["loss"])
    script = tmp_path / "run_generated.py"
    script.write_text(
        "import sys\n"
        "sys.modules['tape'] = None  # importing tape now fails\n"
        "import numpy as np\n"
        f"{source}\n"
        "rng = np.random.default_rng(0)\n"
        "X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))\n"
        "b, y = rng.standard_normal(2), rng.standard_normal((4, 2))\n"
        "value, grads = value_and_grad(X, W, b, y)\n"
        "print(repr(float(value)))\n"
        "for g in grads:\n"
        "    print(g.tobytes().hex())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    lines = done.stdout.split()
    net["loss"].backward()
    assert float(lines[0]) == pytest.approx(float(net["loss"].data), rel=1e-12)
    for line, name in zip(lines[1:], ("X", "W", "b")):
        got = np.frombuffer(bytes.fromhex(line)).reshape(net[name].shape)
        np.testing.assert_allclose(got, net[name].grad, rtol=1e-12, atol=1e-15)


def test_code_of_a_recorded_graph() -> None:
    net = seed_network()
    source = tape.code(net["loss"])
    for line in ("dW = X.T @ dz", "db = dz.sum(axis=0)", "dX = dz @ W.T", "a = np.maximum(z, 0)"):
        assert line in source, source
    only_w = tape.code(net["loss"], inputs=[net["W"]])
    assert "dW = X.T @ dz" in only_w and "dX" not in only_w and "db" not in only_w
    stray = tape.tensor(np.ones(2), requires_grad=True, name="U")  # as tape.grad: a slip
    with pytest.raises(ValueError, match=r"input 0 \('U' float64\[2\]\) does not reach"):
        tape.code(net["loss"], inputs=[stray])
    with pytest.raises(ValueError, match=r"input 0 \(float64\[2\] made by mul\) does not"):
        tape.code(net["loss"], inputs=[stray * 2])  # a result elsewhere: no leaf, same slip
    with pytest.raises(RuntimeError, match="does not require grad"):
        tape.code(net["loss"], inputs=[np.ones(2)])  # an array: tape.grad's own error
    net["loss"].backward()  # releases the graph
    with pytest.raises(RuntimeError, match="released"):
        tape.code(net["loss"])


def mlp_loss(W1, b1, W2, b2, X, Y):
    return (((X @ W1 + b1).relu() @ W2 + b2 - Y) ** 2).mean()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_step_no_gradient_for_the_data(dtype) -> None:
    rng = np.random.default_rng(1)
    shapes = [(64, 32), (32,), (32, 10), (10,), (128, 64), (128, 10)]
    args = [rng.standard_normal(s).astype(dtype) for s in shapes]
    step = tape.compile(mlp_loss, argnums=(0, 1, 2, 3))
    assert_same(step(*args), tape.func.value_and_grad(mlp_loss, (0, 1, 2, 3))(*args), dtype)
    source = step.source(*args)
    assert "dX" not in source and "W1.T" not in source  # no dX = dZ W1ᵀ


def test_cross_entropy_with_integer_targets_follows_the_targets() -> None:
    loss_fn = tape.nn.CrossEntropyLoss()

    def f(W, X, labels):
        return loss_fn(X @ W, labels)

    rng = np.random.default_rng(2)
    W, X = rng.standard_normal((5, 3)), rng.standard_normal((8, 5))
    step = tape.compile(f)
    for labels in (rng.integers(0, 3, 8), rng.integers(0, 3, 8)):
        assert_same(step(W, X, labels), tape.func.value_and_grad(f)(W, X, labels), np.float64)
    assert step.traces == 1


@pytest.mark.parametrize(
    "view",
    [
        lambda x: x.squeeze(),
        lambda x: x.expand_dims(0),
        lambda x: x.flip(0),
        lambda x: tape.split(x, 2)[1],
        lambda x: x.reshape(2, 3),
        lambda x: x.T,
        lambda x: x[1:],
        lambda x: x.broadcast_to((2, 6, 1)),
        lambda x: tape.einsum("ij->ji", x),
        lambda x: x.detach() + 0 * x,
    ],
    ids=["squeeze", "expand_dims", "flip", "split", "reshape", "T", "slice", "broadcast_to",
         "einsum", "detach"],
)  # fmt: skip
def test_views_of_the_arguments_are_never_written_into(view) -> None:
    x = np.arange(1.0, 7.0).reshape(6, 1)

    def f(x):
        return ((view(x) * 3.0 + 1.0) * 2.0).sum()

    kept = x.copy()
    value, grad = tape.compile(f)(x)
    assert np.array_equal(x, kept)  # a view shares x's memory: writing into it writes x
    assert_same((value, grad), tape.func.value_and_grad(f)(x), np.float64)


def test_arguments_in_any_memory_order_give_the_engine_s_bits() -> None:
    def f(x, y):
        return ((x * 2.0 + y) * 3.0).sum()  # written into a buffer, then summed

    # the code is cached by shapes and dtypes only, so it must not depend on the layout:
    # writing into x * 2.0 would keep Fortran order where the engine's x * 2.0 + y is in
    # C order, and a sum in another order differs in the last bit, now and then
    rng = np.random.default_rng(6)
    step = tape.compile(f, argnums=(0, 1))
    for _ in range(20):
        x = rng.standard_normal((5, 7)).astype(np.float32)
        y = rng.standard_normal((5, 7)).astype(np.float32)
        for args in ((x, y), (np.asfortranarray(x), y), (x.T.copy().T, y)):
            compiled, eager = step(*args), tape.func.value_and_grad(f, (0, 1))(*args)
            assert compiled[0] == eager[0]
            assert all(np.array_equal(g, h) for g, h in zip(compiled[1], eager[1]))
    assert step.traces == 1


def test_python_numbers_stay_python_numbers() -> None:
    # mean's VJP divides by the count, a Python int: NumPy keeps float32 for float32 / 12,
    # where float32 / np.int64(12) would be float64
    step = tape.compile(lambda x: (x.mean() * x).sum())
    x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    value, grad = step(x)
    assert value.dtype == grad.dtype == np.float32
    assert_same((value, grad), tape.func.value_and_grad(lambda x: (x.mean() * x).sum())(x),
                np.float32)  # fmt: skip
    assert "np.int64" not in step.source(x)


def test_a_uniform_float32_constant_clamped_stays_float32() -> None:
    # a constant with one value is written as a literal, but np.clip reads a literal x
    # as float64: x is written as np.float32(...)
    c = tape.tensor([0.5, 0.5], dtype=np.float32)
    for f in (lambda lo: c.clamp(min=lo).exp().sum(), lambda hi: c.clamp(max=hi).exp().sum()):
        bound = np.array([0.0, 1.0], dtype=np.float32)
        value, grad = tape.compile(f)(bound)
        assert value.dtype == grad.dtype == np.float32
        assert_same((value, grad), tape.func.value_and_grad(f)(bound), np.float32)


def test_an_empty_constant_keeps_its_shape() -> None:
    # tolist() of a (0, 3) array is [], which would come back with shape (0,)
    c = np.zeros((0, 3))
    f = lambda x: (x[np.array([False, False])] * c).sum()
    x = np.ones((2, 3))
    assert_same(tape.compile(f)(x), tape.func.value_and_grad(f)(x), np.float64)


# ---- caching and retracing ---------------------------------------------------------------------


def test_traces_once_per_shapes_and_dtypes() -> None:
    step = tape.compile(lambda x, y: (x * y).sum())
    a, b = np.ones(3), np.arange(3.0)
    step(a, b)
    step(a + 1, b * 2)
    assert step.traces == 1
    step(np.ones(4), np.ones(4))  # new shapes
    assert step.traces == 2
    step(a.astype(np.float32), b.astype(np.float32))  # new dtypes
    assert step.traces == 3
    step(a, b)  # the first signature again: cached
    assert step.traces == 3


def test_threads_calling_it_first_at_once_trace_once() -> None:
    import threading

    step = tape.compile(lambda x: (x.tanh() * x).sum())
    x = np.linspace(-1.0, 1.0, 6)
    start, results = threading.Barrier(8), []

    def call() -> None:
        start.wait()  # all eight make the first call together
        results.append(step(x))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert step.traces == 1 and len(results) == 8
    for value, grad in results:
        assert_same((value, grad), tape.func.value_and_grad(lambda x: (x.tanh() * x).sum())(x),
                    np.float64)  # fmt: skip


def test_a_compiled_step_can_be_deep_copied() -> None:
    # a trainer holding one is deep-copied (a lock per step once made that fail)
    import copy

    step = tape.compile(lambda x: (x * x).sum())
    step(np.ones(3))
    twin = copy.deepcopy(step)
    assert_same(twin(np.ones(3)), step(np.ones(3)), np.float64)


def test_python_scalars_are_fixed_per_trace() -> None:
    step = tape.compile(lambda x, k: (x**k).sum())
    x = np.array([1.0, 2.0])
    assert step(x, 2)[1].tolist() == [2.0, 4.0]
    assert step(x, 3)[1].tolist() == [3.0, 12.0]
    assert step(x, 2)[1].tolist() == [2.0, 4.0]
    assert step.traces == 2


def test_closed_over_parameters_are_read_on_each_call() -> None:
    model = tape.nn.Linear(3, 2, seed=0)
    step = tape.compile(lambda x: model(x).tanh().sum())
    x = np.random.default_rng(3).standard_normal((4, 3))
    first = step(x)[1]
    with tape.no_grad():
        model.weight.data *= 2  # an optimizer step, say
    again = step(x)[1]
    assert_same((step(x)[0], again), tape.func.value_and_grad(lambda x: model(x).tanh().sum())(x),
                np.float64)  # fmt: skip
    assert not np.allclose(first, again)
    assert step.traces == 1


def test_results_are_fresh_writable_arrays() -> None:
    step = tape.compile(lambda x, y: (x + y).sum(), argnums=(0, 1))
    x = np.ones(3)
    _, (dx, dy) = step(x, x)
    assert dx is not dy and dx.flags.writeable and not np.shares_memory(dx, dy)
    dx += 1  # the caller owns it
    assert dy.tolist() == [1.0, 1.0, 1.0] and x.tolist() == [1.0, 1.0, 1.0]


# ---- custom Functions -------------------------------------------------------------------------


class Lin(tape.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved
        return grad @ w.T, x.T @ grad


def test_custom_function_is_called_through_its_own_forward_and_backward() -> None:
    def f(w, b, x):
        return (Lin.apply(x, w) + b).tanh().sum()

    rng = np.random.default_rng(4)
    args = [rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((4, 3))]
    step = tape.compile(f, argnums=(0, 1))
    assert_same(step(*args), tape.func.value_and_grad(f, (0, 1))(*args), np.float64)
    source = step.source(*args)
    assert "_function_forward(Lin, x, w)" in source and "_function_backward(Lin" in source


# ---- what a trace cannot see ------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 1])
def test_prod_compiled_on_one_zero_pattern_is_right_for_another(axis) -> None:
    # prod's VJP once read its zero mask off the values, so a trace froze the mask it saw
    f = lambda x: tape.prod(x, axis=axis).sum()
    step = tape.compile(f)
    step(np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    for x in ([[1.0, 0.0, 3.0], [0.0, 0.0, 2.0]], [[1.0, 2.0, 3.0], [4.0, 5.0, 0.5]]):
        x = np.array(x)
        assert_same(step(x), tape.func.value_and_grad(f)(x), np.float64)
    assert step.traces == 1


@pytest.mark.parametrize(
    ("f", "what"),
    [
        (lambda x: x.sum() * float(x.sum()), "float"),
        (lambda x: x.sum() * int(x.sum()), "int"),
        (lambda x: x.sum() * x.sum().item(), "item"),
        (lambda x: x.sum() * len(x.tolist()), "tolist"),
        (lambda x: x.sum() if x.sum() > 0 else -x.sum(), "bool"),
        (lambda x: x[x > 0].sum(), "boolean mask"),
        (lambda x: x.sum() * np.asarray(x)[0], "np.asarray"),  # a value read as an array
        (lambda x: x.sum() * x.numpy().max(), r"t\.numpy\(\)"),
    ],
)
def test_trace_error_names_the_line(f, what) -> None:
    with pytest.raises(tape.TraceError, match=rf"{what}.*test_compile\.py:\d+|test_compile\.py"):
        tape.compile(f)(np.array([1.0, -2.0, 3.0]))


@pytest.mark.parametrize(
    "f",
    [
        lambda x: tape.where(x > 0, x, 0.1 * x).sum(),  # a mask made in the forward
        lambda x: tape.where(~(x > 0), x, 0.1 * x).sum(),
        lambda x: (x * x.detach()).sum(),  # the value follows x, the gradient stops
        lambda x: x[(x > 0).astype(int)].sum(),  # an index computed from x
        lambda x: x[np.argmax(x)] * x.abs().sum() + x.max(),
        lambda x: (x.abs() * np.sign(x)).sum(),
    ],
    ids=["where", "invert", "detach", "astype-index", "argmax", "sign"],
)
def test_values_off_the_tape_are_recomputed_not_frozen(f) -> None:
    rng = np.random.default_rng(5)
    step = tape.compile(f)
    for _ in range(3):  # different signs each call: a frozen mask would show
        x = rng.standard_normal(6)
        assert_same(step(x), tape.func.value_and_grad(f)(x), np.float64)
    assert step.traces == 1


def test_control_flow_on_shapes_is_fine() -> None:
    def f(x):
        return x.sum() if x.shape[0] > 2 else (x * x).sum()

    step = tape.compile(f)
    assert step(np.ones(3))[1].tolist() == [1.0, 1.0, 1.0]
    assert step(np.ones(2))[1].tolist() == [2.0, 2.0]


def test_a_traceback_inside_generated_code_shows_the_line() -> None:
    step = tape.compile(lambda x: x.log().sum())
    step(np.ones(2))
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError) as info:
        step(np.zeros(2))
    text = "".join(traceback.format_exception(info.value))
    assert "<tape.compile:" in text and "np.log(x)" in text


def test_source_without_arguments_says_it_needs_a_call_s_arguments() -> None:
    step = tape.compile(lambda x: (x * x).sum())
    with pytest.raises(TypeError, match=r"step.source\(X, W\).*shapes and dtypes"):
        step.source()
    assert "def " in step.source(np.ones(3)) and step.traces == 1


def test_an_op_without_a_code_form_is_refused_naming_it():
    from tape.function import Op, apply

    cube = Op("toy_cube", lambda x: x**3).defvjp(lambda g, x: 3 * g * x**2)
    compiled = tape.compile(lambda x: apply(cube, (x,)).sum())
    with pytest.raises(tape.TraceError, match=r"'toy_cube' .* has no code form; add one to FORMS"):
        compiled(np.ones(3))


# ---- what a compiled function keeps --------------------------------------------------------------


def test_a_dropped_compiled_function_takes_its_source_lines_along() -> None:
    # linecache shows the generated lines in tracebacks; it must not keep them forever
    def ours() -> set:
        return {k for k in linecache.cache if k.startswith("<tape.compile:")}

    before = ours()
    step = tape.compile(lambda w: (w * w).sum())
    step(np.ones(3))
    added = ours() - before
    assert len(added) == 1
    del step
    gc.collect()
    assert not ours() & added


def test_a_compiled_function_keeps_its_latest_traces_only(monkeypatch) -> None:
    monkeypatch.setattr(sys.modules["tape.compile"], "CACHE_LIMIT", 3)
    f = lambda w: (w * w).sum()
    step = tape.compile(f)
    for n in range(1, 6):  # a new shape each call: a trace each
        step(np.ones(n))
    assert step.traces == 5 and len(step._cache) == 3
    value, grad = step(np.arange(1.0, 2.0))  # shape (1,): its trace went, so it traces again
    assert step.traces == 6 and value == 1.0 and grad.tolist() == [2.0]


def test_a_choice_between_constants_by_a_traced_condition_is_recomputed() -> None:
    # no gradient flows through where(x > 0, 1.0, -1.0), so nothing was recorded and the
    # first call's signs were frozen into the code
    f = lambda x: (tape.where(x > 0, 1.0, -1.0) * x).sum()
    step = tape.compile(f)
    step(np.array([1.0, 2.0, 3.0]))
    x = np.array([-1.0, 2.0, -3.0])
    assert_same(step(x), tape.func.value_and_grad(f)(x), np.float64)
    assert step.traces == 1


def test_a_gradient_that_is_a_constant_of_the_code_is_the_callers_own() -> None:
    # d(x·w)/dx is the constant w itself: handing the code's array out let a caller's
    # g *= 0 (an optimizer's in-place update) change every later call
    w = np.array([1.0, -1.0, 1.0])
    step = tape.compile(lambda x: (x * w).sum())
    x = np.array([1.0, 2.0, 3.0])
    _, g = step(x)
    g *= 0
    value, g = step(x)
    assert value == 2.0 and g.tolist() == [1.0, -1.0, 1.0]
