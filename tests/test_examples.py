"""Every script in examples/ runs, in its own process, and prints what it promises.

Each example states a result (the engine agrees with the hand-derived
gradients, gradcheck catches the wrong backward, the MLP reaches its stated
test accuracy); these tests run the script as a user would, with
``python examples/NAME.py``, and read those lines. Examples that need the
optional ``examples`` extra (scikit-learn, matplotlib, tqdm) are skipped when
it is missing, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 120  # seconds; each script takes a few


def run(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/name`` with this interpreter; return its stdout, failing on exit != 0."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{output}"
    return done.stdout


MINE = {
    "linear_backward",
    "fastai_backprop",
    "why_accumulate",
    "custom_function",
    "train_mlp",
    "train_digits_compiled",
}


@pytest.mark.parametrize(
    "script", sorted(p.name for p in EXAMPLES.glob("*.py") if p.stem not in MINE)
)
def test_other_examples_run(script: str, tmp_path: Path) -> None:
    # a script without its own test below still has to run cleanly and say something
    assert run(script, cwd=tmp_path).strip()


def test_the_examples_this_file_checks_exist() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} >= MINE


def test_linear_backward(tmp_path: Path) -> None:
    out = run("linear_backward.py", cwd=tmp_path)
    for formula in ("dW = X.T @ dout", "db = dout.sum(0)", "dX = dout @ W.T"):
        line = next(line for line in out.splitlines() if line.startswith(formula))
        assert line.endswith("engine agrees: True"), line
    assert "(3, 4) @ (4, 2) -> (3, 2)" in out  # the shapes that force the formula
    assert "equals X.T @ dout: True" in out  # the broadcast form of lin_grad
    assert "False" not in out


def test_fastai_backprop(tmp_path: Path) -> None:
    out = run("fastai_backprop.py", cwd=tmp_path)
    for name in ("W1", "b1", "W2", "b2", "X"):
        assert re.search(rf"d loss/d{name} .* equal: True", out), name
    assert "all gradients equal: True" in out
    assert "False" not in out


def test_why_accumulate(tmp_path: Path) -> None:
    out = run("why_accumulate.py", cwd=tmp_path)
    assert "contributions into x: 3 + 2 + 2 = 7" in out
    assert "x.grad with +=: 7" in out
    assert "x.grad with  =: 2" in out  # assignment keeps only the last contribution
    assert "after two backwards: w.grad = [4. 8.]" in out
    assert "after zero_grad:     w.grad = None" in out
    assert "accumulated over 4 micro-batches of 2 == one batch of 8: True" in out


def test_custom_function(tmp_path: Path) -> None:
    out = run("custom_function.py", cwd=tmp_path)
    assert "gradcheck(Lin.apply):    True" in out
    assert "gradcheck(BadLin.apply): caught the wrong backward:" in out
    assert re.search(r"gradcheck: input 2 'b' \(float64\[2\]\)", out)  # names the bad input
    assert "= 1/5: a mean over the rows" in out
    assert "Lin inside an MSE loss gives the same gradients as nn.Linear: True" in out


def test_train_mlp(tmp_path: Path) -> None:
    for module in ("sklearn", "matplotlib", "tqdm"):
        pytest.importorskip(
            module,
            reason=f"train_mlp.py needs {module}, from the examples extra: "
            "pip install -e '.[examples]'",
        )
    out_dir = tmp_path / "out"
    out = run("train_mlp.py", "--out", str(out_dir), cwd=tmp_path)
    assert "digits: 1347 training and 450 test images" in out
    found = re.search(r"^test accuracy: (\d\.\d+) \(stated: at least 0\.95\)$", out, re.M)
    assert found, out
    accuracy = float(found.group(1))
    assert accuracy >= 0.95
    assert f"reloaded into a fresh model: test accuracy {found.group(1)}" in out
    png = out_dir / "train_mlp_loss.png"
    assert f"loss curve written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a real plot, not an empty canvas


def test_train_digits_compiled(tmp_path: Path) -> None:
    pytest.importorskip(
        "sklearn",
        reason="train_digits_compiled.py needs scikit-learn, from the examples extra: "
        "pip install -e '.[examples]'",
    )
    out = run("train_digits_compiled.py", cwd=tmp_path)
    assert "compiled == eager: parameters after 1290 steps differ by at most" in out
    worst = float(re.search(r"differ by at most (\S+)$", out, re.M).group(1))
    assert worst < 1e-9
    assert "traces: 2 (one per batch shape" in out
    assert re.search(r"^time per step: eager \d+ us, compiled \d+ us \(", out, re.M), out
    found = re.search(r"^test accuracy: (\d\.\d+) \(stated: at least 0\.95\)$", out, re.M)
    assert found and float(found.group(1)) >= 0.95, out
    assert "dW1 = X.T @ dmatmul" in out and "dX" not in out  # the data gets no gradient
