"""Long chains, long loops, freed memory, and threads."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
import weakref
from typing import ClassVar

import numpy as np

import tape

# ---- depth ---------------------------------------------------------------------------------------


def test_a_200000_node_chain_backprops_without_recursion_error():
    limit = sys.getrecursionlimit()
    x = tape.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):  # 200,000 records
        y = y * 0.99999
        y = y + 1e-3
    y.backward()
    assert sys.getrecursionlimit() == limit  # nobody raised the limit to get through
    # dy/dx = 0.99999¹⁰⁰⁰⁰⁰ ≈ 1/e: the additions contribute nothing, each mul its factor
    np.testing.assert_allclose(x.grad, 0.99999**100_000, rtol=1e-9)
    del y
    gc.collect()  # tearing the chain down must not recurse either


def test_a_deep_chain_through_tape_grad_and_a_wide_fan_in():
    x = tape.tensor([0.5, 1.5], requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + x * 1e-4  # x feeds every link: 20,000 contributions into one leaf
    (g,) = tape.grad(y.sum(), [x])
    np.testing.assert_allclose(g, 1 + 20_000 * 1e-4, rtol=1e-12)


# ---- memory --------------------------------------------------------------------------------------


def _seed_loss(X, W, b, Y):
    return ((X @ W + b).relu() - Y).pow(2).mean()


def test_forward_passes_without_backward_keep_tape_and_memory_flat(fresh_tape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3))
    Y = rng.standard_normal((4, 2))
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = tape.tensor(np.zeros(2), requires_grad=True)
    for _ in range(2_000):  # warm up caches and reach the tape's steady state
        loss = _seed_loss(X, W, b, Y)
    lengths = []
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            loss = _seed_loss(X, W, b, Y)
            if i % 5_000 == 0:
                lengths.append(len(fresh_tape))
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # only the last pass's 6 records are reachable (through ``loss``)
    assert lengths == [6] * len(lengths)
    assert len(fresh_tape) == 6
    # 120,000 records were made; keeping even one 72-byte weakref each would be ~8.6 MB
    assert growth < 1_000_000, f"memory grew by {growth} bytes"
    loss.backward()
    assert W.grad is not None


def test_dropped_graphs_free_their_arrays_with_or_without_backward():
    x = tape.tensor(np.ones(100_000), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h.data)
    loss = h.tanh().sum()
    del h, loss  # no backward: the tape must not keep anything alive
    assert ref() is None
    h = x * 3.0
    ref = weakref.ref(h.data)
    loss = h.tanh().sum()
    loss.backward()
    del h, loss
    assert ref() is None
    assert len([n for n in tape.get_tape() if n.inputs and n.inputs[0] is x]) == 0


class SavesABuffer(tape.Function):
    """Saves a large intermediate that is not one of its inputs (and lets tests watch it)."""

    saved_refs: ClassVar[list] = []

    @staticmethod
    def forward(ctx, x):
        mask = np.cos(x)  # computed here, needed by backward only
        ctx.save_for_backward(mask)
        SavesABuffer.saved_refs.append(weakref.ref(mask))
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved
        return (grad * mask,)


def test_saved_function_buffers_are_freed_by_backward_while_the_output_lives():
    SavesABuffer.saved_refs.clear()
    x = tape.tensor(np.linspace(0, 1, 100_000), requires_grad=True)
    y = SavesABuffer.apply(x)
    loss = y.sum()
    (ref,) = SavesABuffer.saved_refs
    gc.collect()
    assert ref() is not None  # the graph keeps it until backward
    loss.backward()
    np.testing.assert_allclose(x.grad, np.cos(x.data), rtol=1e-15)
    gc.collect()
    assert ref() is None, "ctx.saved outlived backward while the output is still alive"
    assert y.node is not None and loss.data.shape == ()  # both still referenced here


def test_retain_graph_keeps_saved_buffers_for_the_next_pass():
    x = tape.tensor(np.linspace(0, 1, 10), requires_grad=True)
    loss = SavesABuffer.apply(x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * np.cos(x.data), rtol=1e-15)


def test_a_released_graph_frees_its_values_while_its_output_lives():
    """API.md, Memory: after loss.backward() the graph keeps its structure, no values."""
    x = tape.tensor(np.ones(100_000), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h.data)
    loss = h.tanh().sum()  # tanh saves its output; mul saves only the constant 2.0
    out_ref = weakref.ref(loss.node.parents[0].saved[0])  # tanh's saved output
    del h
    gc.collect()
    assert ref() is None  # no VJP reads x * 2.0: freed during the forward pass
    assert out_ref() is not None  # tanh's output is saved until backward
    loss.backward()
    gc.collect()
    assert out_ref() is None and loss.node is not None  # freed by the pass, structure kept
    assert loss.node.inputs[0].shape == (100_000,)


# ---- threads -------------------------------------------------------------------------------------


def test_threads_record_on_their_own_tapes_and_get_correct_gradients():
    n_threads, steps = 4, 150
    barrier = threading.Barrier(n_threads, timeout=60)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    main_tape = tape.get_tape()
    main_x = tape.tensor([1.0], requires_grad=True)
    main_y = main_x * 2.0  # a live record on the main thread's tape
    main_len = len(main_tape)

    def work(k: int) -> None:
        try:
            own = tape.get_tape()
            report = {"tape": own, "start_len": len(own)}
            rng = np.random.default_rng(100 + k)
            X = rng.standard_normal((4, 3))
            Y = rng.standard_normal((4, 2))
            W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
            b = tape.tensor(rng.standard_normal(2), requires_grad=True)
            barrier.wait()
            # thread 0 turns recording off; the others must not be affected
            if k == 0:
                with tape.no_grad():
                    barrier.wait()
                    report["mode_inside"] = tape.is_grad_enabled()
                    report["no_grad_node"] = (W * 2.0).node
                    barrier.wait()
            else:
                barrier.wait()
                report["mode_inside"] = tape.is_grad_enabled()
                report["no_grad_node"] = "recorded" if (W * 2.0).node is not None else None
                barrier.wait()
            worst = 0.0
            for _ in range(steps):
                W.zero_grad()
                b.zero_grad()
                loss = _seed_loss(X, W, b, Y)
                assert tape.get_tape() is own
                loss.backward()
                z = X @ W.data + b.data
                dZ = 2 / z.size * (np.maximum(z, 0) - Y) * (z > 0)
                worst = max(
                    worst,
                    np.abs(W.grad - X.T @ dZ).max(),
                    np.abs(b.grad - dZ.sum(0)).max(),
                )
                with tape.no_grad():
                    W -= 0.01 * W.grad  # train a little, so every step differs
            report["worst"] = worst
            report["end_len"] = len(own)
            results[k] = report
        except BaseException as e:  # reported to the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == list(range(n_threads))
    tapes = [results[k]["tape"] for k in range(n_threads)]
    assert len({id(t) for t in tapes}) == n_threads
    assert all(t is not main_tape for t in tapes)
    for k in range(n_threads):
        r = results[k]
        assert r["start_len"] == 0  # a new thread's tape has none of the main thread's records
        assert r["worst"] < 1e-12
        assert r["end_len"] == 0  # every pass released what it recorded
    assert results[0]["mode_inside"] is False and results[0]["no_grad_node"] is None
    for k in range(1, n_threads):
        assert results[k]["mode_inside"] is True and results[k]["no_grad_node"] == "recorded"
    assert tape.is_grad_enabled()
    assert len(main_tape) == main_len and main_y.node in list(main_tape)


def test_tape_imported_from_a_zip_records_and_names_the_users_line(tmp_path):
    """A zipapp or pex has no package directory to list; the user's line is still found."""
    import subprocess
    import zipfile
    from pathlib import Path

    package = Path(tape.__file__).parent
    archive = tmp_path / "tape.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in package.glob("*.py"):
            z.write(path, f"tape/{path.name}")
    script = tmp_path / "user.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(archive)!r})\n"
        "import numpy as np, tape\n"
        "assert '.zip' in tape.__file__, tape.__file__\n"
        "x = tape.tensor(np.ones(3), requires_grad=True)\n"
        "loss = (x * 3.0).sum()\n"
        "loss.backward()\n"
        "print(x.grad.tolist())\n"
        "try:\n"
        "    loss.backward()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    grads, error = run.stdout.splitlines()[:2]
    assert grads == "[3.0, 3.0, 3.0]"
    assert "user.py:6" in error, error  # the line that recorded the sum, not a tape file
