"""Benchmarks: the engine against the same work hand-written in NumPy (the floor).

Run ``python benchmarks/run.py`` (``--quick`` for a smoke run, ``--only NAME``
for one workload, ``--profile`` for a cProfile of the per-op chain). Every
workload runs in a fresh child process, which pins BLAS to one thread, does one
warm-up matmul, then times the engine and the floor interleaved (A B A B ...)
so that machine noise hits both alike. The table shows the best repetition of
each side, their ratio engine / floor next to the target, and the ratio of the
medians as a check on noise. See ``benchmarks/README.md``.

The floor computes exactly what the engine computes, no more: the seed
formulas written out by hand (``dW = Xᵀ dZ``, ...), no ``dX`` for data that
needs no gradient, nothing for an ``add`` whose VJP passes ``g`` on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Two-thread BLAS on a shared machine swings timings tenfold; the variables
    # only take effect if they are set before NumPy loads its BLAS.
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    # Measure the tape of this tree, not whichever one happens to be installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import gc
import importlib.metadata
import json
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import tape

torch: Any = None  # an optional extra column, loaded only by the timing children (_load_torch)

perf_counter = time.perf_counter

# A repetition returns its timings in seconds ({"time": ..., and optional parts
# such as "forward"}) and what it computed, so tests can compare engine and floor.
Rep = Callable[[], tuple[dict[str, float], Any]]


# ---- sizes -------------------------------------------------------------------------------

FULL = {
    "mlp": {"batch": 512, "n_in": 784, "n_hidden": 256, "n_out": 10, "steps": 10, "reps": 31},
    "perop": {"width": 8, "n_ops": 2000, "reps": 41},
    "fanout": {"width": 256, "uses": 1000, "reps": 31},
    "chain": {"n": 1_000_000, "n_small": 250_000, "reps": 3, "reps_small": 5},
    "memory": {"steps": 200},
    "flat": {"passes": 10_000, "batch": 16},
}
QUICK = {
    "mlp": {"batch": 512, "n_in": 784, "n_hidden": 256, "n_out": 10, "steps": 3, "reps": 5},
    "perop": {"width": 8, "n_ops": 2000, "reps": 9},
    "fanout": {"width": 256, "uses": 1000, "reps": 9},
    "chain": {"n": 100_000, "n_small": 25_000, "reps": 2, "reps_small": 2},
    "memory": {"steps": 20},
    "flat": {"passes": 1_000, "batch": 16},
}
LR = 0.01


# ---- measuring ---------------------------------------------------------------------------


def warm_up() -> None:
    """One large matmul: a fresh process's first one is ~3× slower (BLAS buffers, page faults)."""
    a = np.ones((1024, 1024), dtype=np.float32)
    a @ a


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb() -> float:
    """Resident set size now, in MB."""
    try:
        return _status_kb("VmRSS") / 1024
    except (OSError, KeyError):  # not Linux: the peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Make the kernel forget the peak RSS so far (Linux ≥ 4.0); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Peak resident set size since the last ``reset_peak``, in MB."""
    try:
        return _status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_growth(fn: Callable[[], Any]) -> dict[str, float]:
    """Run ``fn`` and return how far the peak RSS rose over the RSS before it."""
    gc.collect()
    base = rss_mb()
    exact = reset_peak()
    fn()
    peak = peak_mb()
    return {"base_mb": base, "peak_mb": peak, "growth_mb": peak - base, "exact": exact}


_GC_SECONDS = [0.0, 0.0]  # total time in the cyclic collector; start of the current run


def _gc_clock(phase: str, info: dict) -> None:
    """A ``gc.callbacks`` hook: adds up the time the cyclic garbage collector runs."""
    if phase == "start":
        _GC_SECONDS[1] = perf_counter()
    else:
        _GC_SECONDS[0] += perf_counter() - _GC_SECONDS[1]


def interleave(runners: dict[str, Rep], reps: int, warmup: int = 1) -> dict[str, dict]:
    """Run the repetitions A B A B ...; return each runner's timings as lists."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, dict[str, list[float]]] = {name: {} for name in runners}
    for _ in range(reps):
        for name, run in runners.items():
            gc.collect()  # the previous runner's garbage is not this one's bill
            parts, _ = run()
            for key, value in parts.items():
                times[name].setdefault(key, []).append(value)
    return times


# ---- the yardstick: the least a tape written in Python costs ---------------------------------
#
# A record is a tuple ``(output, ((parent, vjp), ...))`` appended to one list; ``least_backward``
# walks it newest first and adds each VJP's result into its parent's ``grad``. Nothing else: no
# checks of shapes, dtypes or in-place changes, no source line per record, no freeing of saved
# values, no flows kept for diagrams, no per-thread tape. Its ratio is Python's own price of a
# tape (a call per op, a closure per VJP, a tuple per record); the engine's ratio minus this one
# is what the engine's promises cost. Only the ops the per-op chain and the fan-out use.

LEAST_TAPE: list[tuple] = []


class LeastValue:
    __slots__ = ("data", "grad")

    def __init__(self, data: Any) -> None:
        self.data, self.grad = data, None

    # Each op records inline: a helper call per op would bill the yardstick a call it need not pay
    def __mul__(self, c: np.ndarray) -> LeastValue:  # times a constant
        out = LeastValue(self.data * c)
        LEAST_TAPE.append((out, ((self, lambda g: g * c),)))
        return out

    def __add__(self, other: Any) -> LeastValue:  # a constant, or another value
        if other.__class__ is LeastValue:
            out = LeastValue(self.data + other.data)
            LEAST_TAPE.append((out, ((self, _pass), (other, _pass))))
        else:
            out = LeastValue(self.data + other)
            LEAST_TAPE.append((out, ((self, _pass),)))
        return out

    def tanh(self) -> LeastValue:
        y = np.tanh(self.data)
        out = LeastValue(y)
        LEAST_TAPE.append((out, ((self, lambda g: g * (1 - y * y)),)))
        return out

    def relu(self) -> LeastValue:
        y = np.maximum(self.data, 0)
        out = LeastValue(y)
        LEAST_TAPE.append((out, ((self, lambda g: g * (y > 0)),)))
        return out


def _pass(g: Any) -> Any:
    return g


def least_backward(y: LeastValue, seed: np.ndarray) -> None:
    y.grad = seed
    for out, edges in reversed(LEAST_TAPE):
        for parent, vjp in edges:
            part = vjp(out.grad)
            parent.grad = part if parent.grad is None else parent.grad + part


def least_clear() -> None:
    """Drop the yardstick's records, after the timing: freeing them is not its bill."""
    LEAST_TAPE.clear()


# ---- 1. MLP train step ---------------------------------------------------------------------


def mlp_data(batch: int, n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> tuple:
    """Data, targets and PyTorch-style uniform(±1/√fan_in) parameters, all float32."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, n_in)).astype(np.float32)
    Y = rng.standard_normal((batch, n_out)).astype(np.float32)

    def uniform(fan_in: int, shape: tuple) -> np.ndarray:
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    params = [
        uniform(n_in, (n_in, n_hidden)),
        uniform(n_in, (n_hidden,)),
        uniform(n_hidden, (n_hidden, n_out)),
        uniform(n_hidden, (n_out,)),
    ]
    return X, Y, params


def mlp_engine_step(X: np.ndarray, Y: np.ndarray, params: list, lr: float = LR) -> tuple:
    """One engine train step as a closure, and the parameter Tensors it updates."""
    x = tape.tensor(X)  # data: no gradient wanted, so no dX is computed
    ws = [tape.tensor(p, requires_grad=True) for p in params]
    W1, b1, W2, b2 = ws

    def step() -> tape.Tensor:
        loss = (((x @ W1 + b1).relu() @ W2 + b2 - Y) ** 2).mean()
        loss.backward()
        with tape.no_grad():
            for p in ws:
                p.data -= lr * p.grad
                p.grad = None
        return loss

    return step, ws


def mlp_floor_step(X: np.ndarray, Y: np.ndarray, params: list, lr: float = LR) -> tuple:
    """The same train step written out with the seed formulas."""
    ws = [p.copy() for p in params]

    def step() -> np.ndarray:
        W1, b1, W2, b2 = ws
        z1 = X @ W1 + b1
        a1 = np.maximum(z1, 0)
        d = a1 @ W2 + b2 - Y
        loss = (d**2).mean()
        dz2 = (2 / d.size) * d  # dMSE/dz2
        dW2 = a1.T @ dz2
        db2 = dz2.sum(axis=0)
        dz1 = (dz2 @ W2.T) * (z1 > 0)  # relu'(0) = 0
        dW1 = X.T @ dz1  # dW = Xᵀ dZ; no dX: the data needs no gradient
        db1 = dz1.sum(axis=0)
        for p, g in zip(ws, (dW1, db1, dW2, db2)):
            p -= lr * g
        return loss

    return step, ws


def mlp_loss(W1: Any, b1: Any, W2: Any, b2: Any, X: Any, Y: Any) -> Any:
    """The MLP's loss as a function of its parameters and data, for ``tape.compile``."""
    return (((X @ W1 + b1).relu() @ W2 + b2 - Y) ** 2).mean()


def mlp_compiled_step(X: np.ndarray, Y: np.ndarray, params: list, lr: float = LR) -> tuple:
    """The train step through ``tape.compile``: generated NumPy, traced once before timing."""
    ws = [p.copy() for p in params]
    compiled = tape.compile(mlp_loss, argnums=(0, 1, 2, 3))
    compiled(*ws, X, Y)  # the trace; timed apart, in the "trace" workload

    def step() -> np.ndarray:
        loss, grads = compiled(*ws, X, Y)
        for p, g in zip(ws, grads):
            p -= lr * g
        return loss

    return step, ws


def mlp_torch_step(X: np.ndarray, Y: np.ndarray, params: list, lr: float = LR) -> tuple:
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    ws = [torch.tensor(p, requires_grad=True) for p in params]
    W1, b1, W2, b2 = ws

    def step() -> Any:
        loss = (((x @ W1 + b1).relu() @ W2 + b2 - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in ws:
                p -= lr * p.grad
                p.grad = None
        return loss

    return step, ws


def mlp_rep(make_step: Callable[..., tuple], data: tuple, steps: int) -> Rep:
    """A repetition of ``steps`` train steps, timed per step.

    The loop keeps the last loss bound while the next step runs, as a user's
    ``for ...: loss = step()`` does.
    """
    step, ws = make_step(*data)

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        for _ in range(steps):
            loss = step()
        elapsed = perf_counter() - t0
        del loss
        return {"time": elapsed / steps}, [np.array(getattr(p, "data", p)) for p in ws]

    return rep


# ---- 2. per-op overhead: a long chain of tiny ops ------------------------------------------


def perop_data(width: int, seed: int = 1) -> tuple:
    """Start, scale and shift chosen so 500 rounds of ``relu(tanh(h·c + a))`` stay normal."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 0.5, width), rng.uniform(0.9, 1.1, width), rng.uniform(0, 0.1, width)


def perop_engine(x0: np.ndarray, c: np.ndarray, a: np.ndarray, n_ops: int) -> Rep:
    """Forward and backward of ``n_ops`` ops (mul, add, tanh, relu repeated)."""
    seed = np.ones_like(x0)

    def rep() -> tuple[dict[str, float], Any]:
        x = tape.tensor(x0, requires_grad=True)
        gc0, t0 = _GC_SECONDS[0], perf_counter()
        h = x
        for _ in range(n_ops // 4):
            h = (h * c + a).tanh().relu()
        gc1, t1 = _GC_SECONDS[0], perf_counter()
        h.backward(seed)
        gc2, t2 = _GC_SECONDS[0], perf_counter()
        times = {"time": t2 - t0, "forward": t1 - t0, "backward": t2 - t1}
        times.update(gc_time=gc2 - gc0, gc_forward=gc1 - gc0, gc_backward=gc2 - gc1)
        return {k: v / n_ops for k, v in times.items()}, x.grad

    return rep


def perop_floor(x0: np.ndarray, c: np.ndarray, a: np.ndarray, n_ops: int) -> Rep:
    seed = np.ones_like(x0)

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        h, saved = x0, []
        for _ in range(n_ops // 4):
            h = np.tanh(h * c + a)
            saved.append(h)  # tanh's output: both VJPs below need it
            h = np.maximum(h, 0)
        t1 = perf_counter()
        g = seed
        for s in reversed(saved):
            g = g * (s > 0)  # relu
            g = g * (1 - s * s)  # tanh
            g = g * c  # mul; add passes g on unchanged
        t2 = perf_counter()
        return {
            "time": (t2 - t0) / n_ops,
            "forward": (t1 - t0) / n_ops,
            "backward": (t2 - t1) / n_ops,
        }, g

    return rep


def perop_least(x0: np.ndarray, c: np.ndarray, a: np.ndarray, n_ops: int) -> Rep:
    """The same chain through the yardstick tape (``LeastValue``)."""
    seed = np.ones_like(x0)

    def rep() -> tuple[dict[str, float], Any]:
        x = LeastValue(x0)
        t0 = perf_counter()
        h = x
        for _ in range(n_ops // 4):
            h = (h * c + a).tanh().relu()
        t1 = perf_counter()
        least_backward(h, seed)
        t2 = perf_counter()
        least_clear()
        times = {"time": t2 - t0, "forward": t1 - t0, "backward": t2 - t1}
        return {k: v / n_ops for k, v in times.items()}, x.grad

    return rep


def perop_chain(x: Any, c: np.ndarray, a: np.ndarray, n_ops: int) -> Any:
    """The per-op chain as a function, summed to a scalar for ``tape.compile``."""
    h = x
    for _ in range(n_ops // 4):
        h = (h * c + a).tanh().relu()
    return h.sum()


def perop_compiled(x0: np.ndarray, c: np.ndarray, a: np.ndarray, n_ops: int) -> Rep:
    """Forward and backward of the chain through ``tape.compile`` (one extra op: the sum)."""
    compiled = tape.compile(lambda x: perop_chain(x, c, a, n_ops))
    compiled(x0)  # the trace; timed apart, in the "trace" workload

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        _, g = compiled(x0)
        return {"time": (perf_counter() - t0) / n_ops}, g

    return rep


def perop_torch(x0: np.ndarray, c: np.ndarray, a: np.ndarray, n_ops: int) -> Rep:
    tc, ta, seed = (
        torch.from_numpy(c),
        torch.from_numpy(a),
        torch.ones(len(x0), dtype=torch.float64),
    )

    def rep() -> tuple[dict[str, float], Any]:
        x = torch.tensor(x0, requires_grad=True)
        t0 = perf_counter()
        h = x
        for _ in range(n_ops // 4):
            h = (h * tc + ta).tanh().relu()
        t1 = perf_counter()
        h.backward(seed)
        t2 = perf_counter()
        return {
            "time": (t2 - t0) / n_ops,
            "forward": (t1 - t0) / n_ops,
            "backward": (t2 - t1) / n_ops,
        }, x.grad.numpy()

    return rep


# ---- 3. fan-out: one tensor used a thousand times ------------------------------------------


def fanout_data(width: int, uses: int, seed: int = 2) -> tuple:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(width), list(rng.standard_normal((uses, width)))


def fanout_engine(w0: np.ndarray, cs: list) -> Rep:
    """``w·c₀ + w·c₁ + ...``: the backward pass sums ``len(cs)`` contributions into w."""
    seed = np.ones_like(w0)

    def rep() -> tuple[dict[str, float], Any]:
        w = tape.tensor(w0, requires_grad=True)
        total = w * cs[0]
        for c in cs[1:]:
            total = total + w * c
        t0 = perf_counter()
        total.backward(seed)
        return {"time": perf_counter() - t0}, w.grad

    return rep


def fanout_floor(w0: np.ndarray, cs: list) -> Rep:
    seed = np.ones_like(w0)

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        g = seed  # the adds pass it on unchanged
        dw = g * cs[0]
        for c in cs[1:]:
            dw += g * c  # one contribution per use
        return {"time": perf_counter() - t0}, dw

    return rep


def fanout_least(w0: np.ndarray, cs: list) -> Rep:
    """The same fan-out through the yardstick tape (``LeastValue``)."""
    seed = np.ones_like(w0)

    def rep() -> tuple[dict[str, float], Any]:
        w = LeastValue(w0)
        total = w * cs[0]
        for c in cs[1:]:
            total = total + w * c
        t0 = perf_counter()
        least_backward(total, seed)
        t1 = perf_counter()
        least_clear()
        return {"time": t1 - t0}, w.grad

    return rep


def fanout_sum(w: Any, cs: list) -> Any:
    total = w * cs[0]
    for c in cs[1:]:
        total = total + w * c
    return total.sum()


def fanout_compiled(w0: np.ndarray, cs: list) -> Rep:
    """Forward and backward of the fan-out through ``tape.compile`` (compiled code has no
    separate backward), against ``fanout_floor_both``."""
    compiled = tape.compile(lambda w: fanout_sum(w, cs))
    compiled(w0)  # the trace

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        _, g = compiled(w0)
        return {"time": perf_counter() - t0}, g

    return rep


def fanout_floor_both(w0: np.ndarray, cs: list) -> Rep:
    """The fan-out's forward and backward by hand: the floor for the compiled row."""

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        total = w0 * cs[0]
        for c in cs[1:]:
            total += w0 * c
        total.sum()
        dw = cs[0].copy()  # g = 1 everywhere: each use contributes its c
        for c in cs[1:]:
            dw += c
        return {"time": perf_counter() - t0}, dw

    return rep


def trace_times(sizes: dict, reps: int = 5) -> dict[str, list[float]]:
    """Seconds from ``tape.compile(f)`` to the first result (trace, write, compile, run)."""
    s, p = sizes["mlp"], sizes["perop"]
    X, Y, params = mlp_data(s["batch"], s["n_in"], s["n_hidden"], s["n_out"])
    x0, c, a = perop_data(p["width"])
    times: dict[str, list[float]] = {"perop": [], "mlp": []}
    for _ in range(reps):
        t0 = perf_counter()
        tape.compile(lambda x: perop_chain(x, c, a, p["n_ops"]))(x0)
        t1 = perf_counter()
        tape.compile(mlp_loss, argnums=(0, 1, 2, 3))(*params, X, Y)
        t2 = perf_counter()
        times["perop"].append(t1 - t0)
        times["mlp"].append(t2 - t1)
        gc.collect()
    return times


def fanout_torch(w0: np.ndarray, cs: list) -> Rep:
    tcs, seed = [torch.from_numpy(c) for c in cs], torch.ones(len(w0), dtype=torch.float64)

    def rep() -> tuple[dict[str, float], Any]:
        w = torch.tensor(w0, requires_grad=True)
        total = w * tcs[0]
        for c in tcs[1:]:
            total = total + w * c
        t0 = perf_counter()
        total.backward(seed)
        return {"time": perf_counter() - t0}, w.grad.numpy()

    return rep


# ---- 4. a very long chain ------------------------------------------------------------------

CHAIN_C, CHAIN_A = 0.999999, 1e-6  # c^500000 ≈ 0.6: the gradient stays a normal float


def chain_engine(n: int) -> Rep:
    """``h = h·c``, ``h = h + a`` alternating, ``n`` records on (1,)-shaped tensors."""
    seed = np.ones(1)

    def rep() -> tuple[dict[str, float], Any]:
        x = tape.tensor(np.ones(1), requires_grad=True)
        gc0, t0 = _GC_SECONDS[0], perf_counter()
        h = x
        for _ in range(n // 2):
            h = h * CHAIN_C + CHAIN_A
        gc1, t1 = _GC_SECONDS[0], perf_counter()
        h.backward(seed)
        gc2, t2 = _GC_SECONDS[0], perf_counter()
        times = {"time": t2 - t1, "forward": t1 - t0, "gc_time": gc2 - gc1, "gc_forward": gc1 - gc0}
        return {k: v / n for k, v in times.items()}, x.grad

    return rep


def chain_least(n: int) -> Rep:
    """The same chain through the yardstick tape (``LeastValue``)."""
    seed = np.ones(1)

    def rep() -> tuple[dict[str, float], Any]:
        x = LeastValue(np.ones(1))
        h = x
        for _ in range(n // 2):
            h = h * CHAIN_C + CHAIN_A
        t0 = perf_counter()
        least_backward(h, seed)
        t1 = perf_counter()
        least_clear()
        return {"time": (t1 - t0) / n}, x.grad

    return rep


def chain_floor(n: int) -> Rep:
    seed = np.ones(1)

    def rep() -> tuple[dict[str, float], Any]:
        t0 = perf_counter()
        h = np.ones(1)
        for _ in range(n // 2):
            h = h * CHAIN_C + CHAIN_A
        t1 = perf_counter()
        g = seed
        for _ in range(n // 2):
            g = g * CHAIN_C  # the add passes g on unchanged
        t2 = perf_counter()
        return {"time": (t2 - t1) / n, "forward": (t1 - t0) / n}, g

    return rep


# ---- 5. memory -----------------------------------------------------------------------------


def train_loop(
    make_step: Callable[..., tuple], data: tuple, steps: int, keep_loss: bool = True
) -> Callable[[], Any]:
    """A plain training loop of ``steps`` steps.

    With ``keep_loss`` the last loss stays bound while the next step runs, as
    in a user's ``for ...: loss = step()``; without, it is dropped at once.
    """
    step, ws = make_step(*data)

    def loop() -> Any:
        loss = None
        for _ in range(steps):
            if keep_loss:
                loss = step()
            else:
                step()
        del loss
        return [np.array(getattr(p, "data", p)) for p in ws]

    return loop


def forward_passes(data: tuple, passes: int) -> dict[str, Any]:
    """``passes`` forward passes that never call backward: tape length and RSS, start and end."""
    X, Y, params = data
    x = tape.tensor(X)
    W1, b1, W2, b2 = (tape.tensor(p, requires_grad=True) for p in params)
    records = tape.get_tape()
    start = max(1, passes // 100)  # past the first allocations
    out: dict[str, Any] = {"max_tape_len": 0}
    for i in range(1, passes + 1):
        loss = (((x @ W1 + b1).relu() @ W2 + b2 - Y) ** 2).mean()
        if i == start:
            out.update(start_pass=i, start_tape_len=len(records), start_rss_mb=rss_mb())
        if i % 500 == 0:
            out["max_tape_len"] = max(out["max_tape_len"], len(records))
    out.update(end_pass=passes, end_tape_len=len(records), end_rss_mb=rss_mb(), loss=loss.item())
    return out


# ---- children: one workload per fresh process ------------------------------------------------


def _load_torch() -> bool:
    """Import PyTorch if it is installed; the memory children never do (it costs 200 MB)."""
    global torch
    if os.environ.get("TAPE_BENCH_NO_TORCH"):
        return False
    try:
        import torch as loaded
    except ImportError:
        return False
    torch = loaded
    torch.set_num_threads(1)
    return True


def _with_torch(runners: dict[str, Rep], make: Callable[[], Rep]) -> dict[str, Rep]:
    if _load_torch():
        runners["torch"] = make()
    return runners


def child(kind: str, arg: str, sizes: dict) -> dict[str, Any]:
    """Run one measurement in this (fresh) process and return its raw numbers."""
    warm_up()
    gc.callbacks.append(_gc_clock)
    if kind == "mlp":
        s = sizes["mlp"]
        data = mlp_data(s["batch"], s["n_in"], s["n_hidden"], s["n_out"])
        runners = {
            "engine": mlp_rep(mlp_engine_step, data, s["steps"]),
            "floor": mlp_rep(mlp_floor_step, data, s["steps"]),
            "compiled": mlp_rep(mlp_compiled_step, data, s["steps"]),
        }
        _with_torch(runners, lambda: mlp_rep(mlp_torch_step, data, s["steps"]))
        return interleave(runners, s["reps"])
    if kind == "perop":
        s = sizes["perop"]
        data = perop_data(s["width"])
        runners = {
            "engine": perop_engine(*data, s["n_ops"]),
            "floor": perop_floor(*data, s["n_ops"]),
            "compiled": perop_compiled(*data, s["n_ops"]),
            "least": perop_least(*data, s["n_ops"]),
        }
        _with_torch(runners, lambda: perop_torch(*data, s["n_ops"]))
        return interleave(runners, s["reps"], warmup=3)
    if kind == "fanout":
        s = sizes["fanout"]
        data = fanout_data(s["width"], s["uses"])
        runners = {
            "engine": fanout_engine(*data),
            "floor": fanout_floor(*data),
            "compiled": fanout_compiled(*data),
            "floor_both": fanout_floor_both(*data),
            "least": fanout_least(*data),
        }
        _with_torch(runners, lambda: fanout_torch(*data))
        return interleave(runners, s["reps"], warmup=3)
    if kind == "trace":
        return trace_times(sizes)
    if kind == "chain":
        s = sizes["chain"]
        # no warm-up repetition: at this size there is nothing left to warm
        big = interleave(
            {"engine": chain_engine(s["n"]), "floor": chain_floor(s["n"])}, s["reps"], warmup=0
        )
        small = interleave(
            {
                "engine": chain_engine(s["n_small"]),
                "floor": chain_floor(s["n_small"]),
                "least": chain_least(s["n_small"]),
            },
            s["reps_small"],
            warmup=0,
        )
        return {"big": big, "small": small}
    if kind == "chain-mem":
        n = sizes["chain"]["n"]
        rep = chain_engine(n) if arg == "engine" else chain_floor(n)
        return peak_growth(rep)
    if kind == "mlp-mem":
        s, m = sizes["mlp"], sizes["memory"]
        data = mlp_data(s["batch"], s["n_in"], s["n_hidden"], s["n_out"])
        side, _, drop = arg.partition("-")
        make = mlp_engine_step if side == "engine" else mlp_floor_step
        return peak_growth(train_loop(make, data, m["steps"], keep_loss=not drop))
    if kind == "flat":
        s, f = sizes["mlp"], sizes["flat"]
        data = mlp_data(f["batch"], s["n_in"], s["n_hidden"], s["n_out"])
        return forward_passes(data, f["passes"])
    raise ValueError(f"unknown child kind {kind!r}")


def spawn(kind: str, arg: str, quick: bool) -> dict[str, Any]:
    """Run ``child(kind, arg)`` in a fresh interpreter and return what it printed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, arg]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if kind == "memory":
        # glibc raises its mmap threshold after the first large free, so where a 512 KB
        # array lands, and with it a loop's RSS growth, depends on the process's history:
        # the hand-written loop's swung 1.2-2.5 MB between identical runs. A fixed threshold
        # (glibc's default) maps every large array alike, so growth is what each loop holds.
        env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} {arg} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    engine: float | None = None
    floor: float | None = None
    target: float | None = None  # for the ratio, or for the engine's value when absolute
    absolute: bool = False
    ratio: float | None = None
    median_ratio: float | None = None
    torch: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.engine is not None and self.floor and not self.absolute:
            self.ratio = self.engine / self.floor

    @property
    def meets(self) -> bool | None:
        if self.target is None:
            return None
        value = self.engine if self.absolute else self.ratio
        return None if value is None else value <= self.target


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def timing_row(
    label: str, times: dict, key: str, scale: float, target: float | None, note: str = ""
) -> Row:
    """Best (minimum) times and their ratio; the ratio of the medians as a noise check.

    Noise on a shared machine only ever adds time, so each side's fastest
    repetition is the best estimate of its cost; when the median ratio
    agrees, the figure is trustworthy.
    """
    e, f = times["engine"][key], times["floor"][key]
    t = times.get("torch", {}).get(key)
    return Row(
        label,
        min(e) * scale,
        min(f) * scale,
        target,
        median_ratio=statistics.median(e) / statistics.median(f),
        torch=None if t is None else min(t) * scale,
        note=note,
    )


def compiled_row(times: dict, key: str, scale: float, target: float | None, note: str = "") -> Row:
    """The ``tape.compile`` runner of a workload against the same floor, as its own row."""
    return timing_row(
        "  tape.compile", {"engine": times["compiled"], "floor": times["floor"]}, key, scale,
        target, note,
    )  # fmt: skip


def least_row(times: dict, scale: float) -> Row:
    """The yardstick tape (``LeastValue``) against the same floor: no target, a bound."""
    least = {"engine": times["least"], "floor": times["floor"]}
    note = "a bare Python tape: no checks, lines, release, flows"
    return timing_row("  least Python tape", least, "time", scale, None, note)


def _gc_share(times: dict, part: str, what: str) -> str:
    """What share of the engine's ``part`` the cyclic garbage collector took (best rep)."""
    e = times["engine"]
    i = min(range(len(e[part])), key=e[part].__getitem__)
    return f"GC: {100 * e['gc_' + part][i] / e[part][i]:.0f}% of the engine's {what}"


def collect(names: list[str], quick: bool) -> list[Row]:
    """Run the selected workloads, each in its own process, and build the table's rows."""
    rows: list[Row] = []
    sizes = QUICK if quick else FULL
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = perf_counter()
        if name == "mlp":
            r = spawn("mlp", "-", quick)
            s = sizes["mlp"]
            label = f"MLP train step {s['batch']}x{s['n_in']}-{s['n_hidden']}-{s['n_out']} f32 (ms)"
            rows.append(timing_row(label, r, "time", 1e3, 1.03))
            rows.append(compiled_row(r, "time", 1e3, 1.0))
        elif name == "perop":
            r = spawn("perop", "-", quick)
            n = sizes["perop"]["n_ops"]
            label = f"per-op chain, {n} ops, fwd+bwd (us/op)"
            rows.append(timing_row(label, r, "time", 1e6, 3.0, _gc_share(r, "time", "fwd+bwd")))
            for part in ("forward", "backward"):
                label = f"  {part} only (us/op)"
                rows.append(timing_row(label, r, part, 1e6, None, _gc_share(r, part, part)))
            rows.append(compiled_row(r, "time", 1e6, 1.1, "fwd+bwd, one more op (the sum)"))
            rows.append(least_row(r, 1e6))
        elif name == "fanout":
            r = spawn("fanout", "-", quick)
            uses = sizes["fanout"]["uses"]
            rows.append(timing_row(f"fan-out, w used {uses}x, backward (ms)", r, "time", 1e3, 3.0))
            both = {"compiled": r["compiled"], "floor": r["floor_both"]}
            rows.append(compiled_row(both, "time", 1e3, 1.1, "fwd+bwd, against fwd+bwd by hand"))
            rows.append(least_row(r, 1e3))
        elif name == "trace":
            r = spawn("trace", "-", quick)
            n = sizes["perop"]["n_ops"]
            for key, label, target in (
                ("perop", f"tape.compile: trace+compile, {n}-op chain (ms)", 500.0),
                ("mlp", "tape.compile: trace+compile, MLP step (ms)", 50.0),
            ):
                best = min(r[key]) * 1e3
                median = statistics.median(r[key]) * 1e3
                rows.append(
                    Row(label, best, target=target, absolute=True, note=f"median {median:.0f} ms")
                )
        elif name == "chain":
            s = sizes["chain"]
            big, small = spawn("chain", "-", quick).values()
            k = f"{s['n'] // 1000}k"
            label = f"{k}-node chain, backward (us/node)"
            rows.append(
                timing_row(label, big, "time", 1e6, 4.0, _gc_share(big, "time", "backward"))
            )
            label = "  forward (us/node)"
            rows.append(
                timing_row(label, big, "forward", 1e6, None, _gc_share(big, "forward", "forward"))
            )
            ks = f"{s['n_small'] // 1000}k"
            rows.append(
                timing_row(f"  {ks}-node chain, backward (us/node)", small, "time", 1e6, None)
            )
            rows.append(least_row(small, 1e6))
            lin = {w: min(big[w]["time"]) / min(small[w]["time"]) for w in big}
            rows.append(
                Row(
                    f"  linearity: us/node {k} / {ks}",
                    lin["engine"],
                    lin["floor"],
                    1.25,
                    absolute=True,
                    ratio=None,
                    note="1.00 = linear",
                )
            )
            mem = {w: spawn("chain-mem", w, quick) for w in ("engine", "floor")}
            rows.append(
                Row(
                    f"{k}-node chain, peak RSS growth (MB)",
                    mem["engine"]["growth_mb"],
                    mem["floor"]["growth_mb"],
                    300.0 if not quick else None,
                    absolute=True,
                    note="" if mem["engine"]["exact"] else "peak not resettable",
                )
            )
        elif name == "memory":
            steps = sizes["memory"]["steps"]
            mem = {w: spawn("mlp-mem", w, quick) for w in ("engine", "floor")}
            rows.append(
                Row(
                    f"{steps} MLP train steps, peak RSS growth (MB)",
                    mem["engine"]["growth_mb"],
                    mem["floor"]["growth_mb"],
                    1.15,
                    note=f"start RSS {mem['engine']['base_mb']:.0f} / "
                    f"{mem['floor']['base_mb']:.0f} MB; last loss kept during next step",
                )
            )
            mem = {w: spawn("mlp-mem", w + "-drop", quick) for w in ("engine", "floor")}
            rows.append(
                Row(
                    "  same, loss dropped before the next step",
                    mem["engine"]["growth_mb"],
                    mem["floor"]["growth_mb"],
                )
            )
        elif name == "flat":
            r = spawn("flat", "-", quick)
            p0, p1 = r["start_pass"], r["end_pass"]
            rows.append(
                Row(
                    f"{p1} fwd passes, no backward: tape len",
                    r["end_tape_len"],
                    target=r["start_tape_len"],
                    absolute=True,
                    note=f"{r['start_tape_len']} at pass {p0}, max {r['max_tape_len']}, "
                    f"{r['end_tape_len']} at {p1}",
                )
            )
            growth = r["end_rss_mb"] - r["start_rss_mb"]
            rows.append(
                Row(
                    "  RSS growth (MB)",
                    growth,
                    target=5.0,
                    absolute=True,
                    note=f"{r['start_rss_mb']:.1f} MB at pass {p0}, "
                    f"{r['end_rss_mb']:.1f} MB at {p1}",
                )
            )
        print(f"  ({perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return rows


def render(rows: list[Row]) -> str:
    has_torch = any(r.torch is not None for r in rows)
    head = ["workload", "engine", "floor", "ratio", "target", "meets", "(median)"]
    if has_torch:
        head += ["torch", "torch/floor"]
    head.append("note")
    table = [head]
    for r in rows:
        if r.target is None:
            target = ""
        elif r.absolute:
            target = f"<= {_num(r.target)}"
        else:
            target = f"<= {r.target:.2f}x"
        meets = {None: "", True: "yes", False: "NO"}[r.meets]
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        median = "" if r.median_ratio is None else f"({r.median_ratio:.2f}x)"
        line = [r.label, _num(r.engine), _num(r.floor), ratio, target, meets, median]
        if has_torch:
            tr = f"{r.torch / r.floor:.2f}x" if r.torch is not None and r.floor else ""
            line += [_num(r.torch) if r.torch is not None else "", tr]
        line.append(r.note)
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = []
    for i, row in enumerate(table):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        cells.append(row[-1])
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def header(quick: bool) -> str:
    blas = ", ".join(
        f"{v}={os.environ.get(v, 'unset')}"
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    try:
        torch_v = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_v = "not installed"
    if os.environ.get("TAPE_BENCH_NO_TORCH"):
        torch_v += " (off)"
    return (
        f"tape {tape.__version__} | Python {platform.python_version()} | NumPy {np.__version__} | "
        f"torch {torch_v}\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs | "
        f"{blas} | mode: {'quick' if quick else 'full'}\n"
        "times: best of interleaved repetitions; ratio = engine / floor of those; (median) = "
        "the same ratio of the medians, a noise check"
    )


def profile_perop(quick: bool) -> None:
    """Print a cProfile of the engine on the per-op chain, the hottest functions first."""
    import cProfile
    import pstats

    warm_up()
    s = (QUICK if quick else FULL)["perop"]
    rep = perop_engine(*perop_data(s["width"]), s["n_ops"])
    rep()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(s["reps"]):
        rep()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)


WORKLOADS = ("mlp", "perop", "fanout", "trace", "chain", "memory", "flat")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps, smaller sizes (< 1 min)")
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the per-op chain")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_torch:
        os.environ["TAPE_BENCH_NO_TORCH"] = "1"  # the children inherit it
    if args.child:
        result = child(*args.child, QUICK if args.quick else FULL)
        print(json.dumps(result))
        return 0
    if args.profile:
        profile_perop(args.quick)
        return 0
    print(header(args.quick), flush=True)
    t0 = perf_counter()
    rows = collect(list(args.only or WORKLOADS), args.quick)
    print()
    print(render(rows))
    print(f"\n(total {perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
