"""The benchmarks compare like with like: each floor computes what its engine run computes.

``benchmarks/run.py`` times the engine against hand-written NumPy (the floor).
A ratio means something only if both sides do the same work, so each workload
runs here once, at a tiny size, and the two results must agree. No timing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("tape_benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _updates(before: list, after: list, lr: float) -> list:
    """The gradient each SGD step applied, ``(p_before − p_after) / lr``, summed over steps."""
    return [(b - a) / lr for b, a in zip(before, after)]


@pytest.mark.parametrize("steps", [1, 3])
def test_mlp_train_step(bench, steps):
    data = bench.mlp_data(batch=8, n_in=12, n_hidden=6, n_out=3)
    params = data[2]
    _, engine = bench.mlp_rep(bench.mlp_engine_step, data, steps)()
    _, floor = bench.mlp_rep(bench.mlp_floor_step, data, steps)()
    for e, f, p in zip(engine, floor, params):
        assert e.dtype == f.dtype == np.float32
        assert not np.array_equal(e, p)  # the step did move the parameters
    for e, f in zip(_updates(params, engine, bench.LR), _updates(params, floor, bench.LR)):
        np.testing.assert_allclose(e, f, rtol=1e-3, atol=1e-4)


def test_per_op_chain(bench):
    data = bench.perop_data(width=5)
    _, engine = bench.perop_engine(*data, n_ops=40)()
    _, floor = bench.perop_floor(*data, n_ops=40)()
    assert np.all(floor != 0)
    np.testing.assert_allclose(engine, floor, rtol=1e-12)


def test_fan_out(bench):
    data = bench.fanout_data(width=6, uses=7)
    _, engine = bench.fanout_engine(*data)()
    _, floor = bench.fanout_floor(*data)()
    np.testing.assert_allclose(engine, floor, rtol=1e-12)
    np.testing.assert_allclose(floor, np.sum(data[1], axis=0), rtol=1e-12)


def test_long_chain(bench):
    _, engine = bench.chain_engine(n=20)()
    _, floor = bench.chain_floor(n=20)()
    np.testing.assert_allclose(engine, floor, rtol=1e-12)
    np.testing.assert_allclose(floor, [bench.CHAIN_C**10], rtol=1e-12)


def test_memory_train_loops(bench):
    data = bench.mlp_data(batch=8, n_in=12, n_hidden=6, n_out=3)
    for keep_loss in (True, False):
        engine = bench.train_loop(bench.mlp_engine_step, data, 3, keep_loss)()
        floor = bench.train_loop(bench.mlp_floor_step, data, 3, keep_loss)()
        for e, f in zip(_updates(data[2], engine, bench.LR), _updates(data[2], floor, bench.LR)):
            np.testing.assert_allclose(e, f, rtol=1e-3, atol=1e-4)


def test_forward_passes(bench):
    X, Y, (W1, b1, W2, b2) = data = bench.mlp_data(batch=4, n_in=12, n_hidden=6, n_out=3)
    result = bench.forward_passes(data, passes=3)
    floor = ((np.maximum(X @ W1 + b1, 0) @ W2 + b2 - Y) ** 2).mean()
    np.testing.assert_allclose(result["loss"], floor, rtol=1e-5)


def test_compiled_runners_compute_what_the_floor_computes(bench):
    data = bench.mlp_data(batch=8, n_in=12, n_hidden=6, n_out=3)
    _, compiled = bench.mlp_rep(bench.mlp_compiled_step, data, 3)()
    _, floor = bench.mlp_rep(bench.mlp_floor_step, data, 3)()
    for c, f in zip(_updates(data[2], compiled, bench.LR), _updates(data[2], floor, bench.LR)):
        np.testing.assert_allclose(c, f, rtol=1e-3, atol=1e-4)
    x0, c, a = bench.perop_data(width=5)
    _, compiled = bench.perop_compiled(x0, c, a, n_ops=40)()
    _, floor = bench.perop_floor(x0, c, a, n_ops=40)()
    np.testing.assert_allclose(compiled, floor, rtol=1e-12)
    w0, cs = bench.fanout_data(width=6, uses=7)
    _, compiled = bench.fanout_compiled(w0, cs)()
    _, floor = bench.fanout_floor_both(w0, cs)()
    np.testing.assert_allclose(compiled, floor, rtol=1e-12)


def test_least_tape_computes_what_the_floor_computes(bench):
    # the yardstick's ratio is a bound only if it does the floor's arithmetic, all of it
    data = bench.perop_data(width=5)
    _, least = bench.perop_least(*data, n_ops=40)()
    _, floor = bench.perop_floor(*data, n_ops=40)()
    np.testing.assert_allclose(least, floor, rtol=1e-12)
    data = bench.fanout_data(width=6, uses=7)
    _, least = bench.fanout_least(*data)()
    np.testing.assert_allclose(least, np.sum(data[1], axis=0), rtol=1e-12)
    _, least = bench.chain_least(n=20)()
    np.testing.assert_allclose(least, [bench.CHAIN_C**10], rtol=1e-12)
    assert bench.LEAST_TAPE == []  # each pass clears its tape: repetitions do not pile up


def test_trace_times_are_measured(bench):
    sizes = {
        "mlp": {"batch": 8, "n_in": 12, "n_hidden": 6, "n_out": 3},
        "perop": {"width": 5, "n_ops": 40},
    }
    times = bench.trace_times(sizes, reps=1)
    assert set(times) == {"perop", "mlp"} and all(len(t) == 1 and t[0] > 0 for t in times.values())
