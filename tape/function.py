"""Ops and custom Functions, and ``apply``: the one door to the tape.

Every differentiable operation, built-in or user-written, is an ``Op``:
a forward on NumPy arrays plus its vector-Jacobian product (VJP). ``apply``
runs the forward and, when grad mode is on and an input requires grad,
records one ``tape.record.Node``. Nothing else writes to the tape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import add_note, code_location, describe, label
from .record import Node, state, user_code
from .tensors import Tensor, grad_tensor_in

_NO_PARAMS: dict = {}


OUT = 0  # in a read list: the forward's result; input i is i + 1, its shape -(i + 1)
ALL_VALUES, ALL_SHAPES = "*", "*shape"  # a variadic op's inputs, all of them


class Op:
    """A primitive: ``forward(*arrays, **params)`` and its VJPs.

    The VJP is one formula per input, ``vjp_i(g, <reads>, **params)``, so the
    engine evaluates only the ones whose input needs a gradient (the floor for
    a linear layer never computes ``dX`` for the data). Variadic ops
    (``concatenate``) and Functions give one ``vjp_all`` returning a tuple.

    A VJP's parameter list says what it reads, and the record saves exactly
    that: ``out`` (the forward's result), an input by its forward name (``x``),
    or only its shape (``x_shape``). ``lambda g: g`` saves nothing.
    """

    __slots__ = (
        "name",
        "forward",
        "inputs",
        "variadic",
        "params",
        "vjps",
        "calls",
        "vjp_all",
        "saves",
        "save",
        "save_for",
        "once",
        "hint",
    )

    def __init__(self, name: str, forward: Callable[..., Any]) -> None:
        self.name = name
        self.forward = forward
        sig = inspect.signature(forward).parameters.values()
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.inputs = tuple(p.name for p in sig if p.default is p.empty and p.kind in positional)
        self.variadic = next((p.name for p in sig if p.kind == p.VAR_POSITIONAL), None)
        # "out" is the VJP's word for the result, never a parameter (NumPy's ufuncs take one)
        self.params = {
            p.name: p.default for p in sig if p.default is not p.empty and p.name != "out"
        }
        self.vjps: tuple | None = None
        self.calls: tuple = ()  # per input: call(g, saved, params) runs its VJP on what it reads
        self.vjp_all: Callable[..., Any] | None = None
        self.saves: tuple = ()
        self.save = _saver(())
        # save_for[x_grad][y_grad]: a two-input record saves only what the VJPs of the
        # inputs that need a gradient read (x * c keeps c, not x), None in the other slots
        self.save_for = ((self.save, self.save), (self.save, self.save))
        # A Function's backward runs on arrays only: differentiable once.
        self.once = False
        self.hint: Callable[..., str | None] | None = None  # names the fix in forward errors

    @property
    def n_inputs(self) -> int:
        """How many tensor inputs; -1 for a variadic op."""
        return -1 if self.variadic else len(self.inputs)

    def defvjp(self, *vjps: Callable[..., Any]) -> Op:
        """Register one VJP formula per input, in argument order."""
        if len(vjps) != len(self.inputs) or self.variadic:
            raise TypeError(
                f"{self.name}: defvjp needs {len(self.inputs)} formulas, got {len(vjps)}"
            )
        reads = [self._reads(f) for f in vjps]
        self.saves = tuple(sorted({k for r in reads for k in r}, key=_save_order))
        self.vjps, self.save = vjps, _saver(self.saves)
        if len(reads) == 2:
            self.save_for = tuple(
                tuple(_only(self.saves, {*(reads[0] if x else ()), *(reads[1] if y else ())})
                      for y in (False, True))
                for x in (False, True)
            )  # fmt: skip
        self.calls = tuple(
            _caller(f, tuple(self.saves.index(k) for k in r), bool(self.params))
            for f, r in zip(vjps, reads)
        )
        return self

    def defvjp_all(self, vjp: Callable[..., Any]) -> Op:
        """Register one VJP that returns the gradients of all inputs as a tuple."""
        self.saves = self._reads(vjp)
        self.vjp_all, self.save = vjp, _saver(self.saves, len(self.inputs))
        self.save_for = ((self.save, self.save), (self.save, self.save))
        return self

    def sources(self, n: int) -> list:
        """What a record of ``n`` inputs saved, in order.

        ``OUT`` is the result, ``i + 1`` input ``i``, ``-(i + 1)`` its shape; a
        variadic op reads as many as it was given.
        """
        return expand(self.saves, len(self.inputs), n)

    def _reads(self, vjp: Callable[..., Any]) -> tuple:
        """What a VJP reads, from its parameter names (after ``g``, before the op's params)."""
        reads: list[Any] = []
        for p in list(inspect.signature(vjp).parameters.values())[1:]:
            name = p.name
            if name in self.params or p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD):
                break
            if name == "out":
                reads.append(OUT)
            elif name in self.inputs:
                reads.append(self.inputs.index(name) + 1)
            elif name.endswith("_shape") and name[:-6] in self.inputs:
                reads.append(-(self.inputs.index(name[:-6]) + 1))
            elif self.variadic and name in (self.variadic, f"{self.variadic}_shape"):
                reads.append(ALL_VALUES if name == self.variadic else ALL_SHAPES)
            else:
                known = ", ".join(["out", *self.inputs, *(f"{i}_shape" for i in self.inputs)])
                raise TypeError(
                    f"{self.name}: the VJP reads {name!r}, which is none of {known} "
                    f"or the op's parameters ({', '.join(self.params) or 'none'})"
                )
        return tuple(reads)

    def call(self, *args: Any, **params: Any) -> Any:
        """Apply to Tensors (recording), or run the bare forward on arrays.

        VJP formulas call internal ops this way, so one formula serves both the
        fast path (arrays) and ``create_graph=True`` (Tensors).
        """
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, params)
        return self.forward(*args, **params)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def _save_order(k: Any) -> Any:
    return (2, k) if isinstance(k, str) else (1, -k) if k < 0 else (0, k)


def _caller(
    vjp: Callable[..., Any], picks: tuple, params: bool
) -> Callable[[Any, tuple, dict], Any]:
    """``call(g, saved, params)`` for one VJP: its reads picked from ``saved``, without a loop."""
    if not params:  # most ops: no keyword arguments to pass at all
        if not picks:
            return lambda g, saved, params: vjp(g)
        if len(picks) == 1:
            (i,) = picks
            return lambda g, saved, params: vjp(g, saved[i])
        if len(picks) == 2:
            i, j = picks
            return lambda g, saved, params: vjp(g, saved[i], saved[j])
    return lambda g, saved, params: vjp(g, *[saved[k] for k in picks], **params)


def _only(saves: tuple, needed: set) -> Callable[[Any, tuple], tuple]:
    """A saver for ``saves`` that fills only the ``needed`` slots (``None`` elsewhere)."""
    if set(saves) <= needed:
        return _saver(saves)
    if saves == (1, 2):  # the common binary layouts without a loop
        return _only_x if 1 in needed else _only_y
    full = _saver(saves)
    keep = tuple(k in needed for k in saves)
    return lambda out, arrays: tuple([v if k else None for v, k in zip(full(out, arrays), keep)])


def _only_x(out: Any, arrays: tuple) -> tuple:
    return (arrays[0], None)


def _only_y(out: Any, arrays: tuple) -> tuple:
    return (None, arrays[1])


def expand(saves: tuple, fixed: int, n: int) -> list:
    """A read list with a variadic op's ``*``/``*shape`` spelled out for ``n`` inputs."""
    sources: list[int] = []
    for k in saves:
        if k == ALL_VALUES:
            sources.extend(range(fixed + 1, n + 1))
        elif k == ALL_SHAPES:
            sources.extend(range(-(fixed + 1), -(n + 1), -1))
        else:
            sources.append(k)
    return sources


def _saver(saves: tuple, fixed: int = 0) -> Callable[[Any, tuple], tuple]:
    """``save(out, arrays)`` for one read list: the common ones without a loop."""
    if not saves:
        return lambda out, arrays: ()
    if saves == (OUT,):
        return lambda out, arrays: (out,)
    if saves == (1,):
        return lambda out, arrays: (arrays[0],)
    if saves == (1, 2):
        return lambda out, arrays: arrays
    if saves == (ALL_VALUES,) and not fixed:
        return lambda out, arrays: arrays

    def save(out: Any, arrays: tuple) -> tuple:
        return tuple(
            [
                out if k == OUT else arrays[k - 1] if k > 0 else np.shape(arrays[-k - 1])
                for k in expand(saves, fixed, len(arrays))
            ]
        )

    return save


def apply(op: Op, args: tuple, params: dict = _NO_PARAMS) -> Tensor:
    """Run ``op`` forward; record one Node if grad mode is on and an input needs grad."""
    n = len(args)  # the common cases unrolled: this runs for every op
    x_grad = y_grad = False
    if n == 2:
        x, y = args
        if isinstance(x, Tensor):
            xd, x_grad = x.data, x.requires_grad
        elif type(x) in _SEQUENCES:  # a list constant becomes an array: VJPs read its .shape
            xd = x = constant(x, op.name)
        else:
            xd = x
        if isinstance(y, Tensor):
            yd, y_grad = y.data, y.requires_grad
        elif type(y) in _SEQUENCES:
            yd = y = constant(y, op.name)
        else:
            yd = y
        arrays = (xd, yd)
    elif n == 1:
        x = args[0]
        if isinstance(x, Tensor):
            arrays, x_grad = (x.data,), x.requires_grad
        else:
            if type(x) in _SEQUENCES:
                x = constant(x, op.name)
            arrays = (x,)
    else:
        args = tuple([constant(a, op.name) if type(a) in _SEQUENCES else a for a in args])
        arrays = tuple([a.data if isinstance(a, Tensor) else a for a in args])
        x_grad = any(isinstance(a, Tensor) and a.requires_grad for a in args)
    try:
        out = op.forward(*arrays, **params) if params else op.forward(*arrays)
    except (ValueError, TypeError, IndexError) as e:
        raise _forward_error(op, args, params, e) from e
    if out.__class__ is not np.ndarray:
        if op.once and not isinstance(out, np.generic | int | float):
            raise TypeError(
                f"{op.name}.forward returned {type(out).__name__}; a tape.Function's forward "
                "returns one array (write one Function per output)"
            )
        out = np.asarray(out)
    tape = state.recording
    if tape is None:  # recording is off, or detect_anomaly checks every result
        if state.anomaly:
            _check_forward_finite(op, args, out)
        tape = state.tape if state.grad_enabled else None
    result = _new(Tensor)  # wrap(out), inlined
    result.data = out
    result.node = result._grad = result._name = None
    if tape is None or not (x_grad or y_grad):
        result.requires_grad = False
        return result
    # Each input's parent: the record that made it, the leaf itself, or the constant.
    if n == 2:
        parents = (x.node or x if x_grad else x, y.node or y if y_grad else y)
        save = op.save_for[x_grad][y_grad]
        if (save is _only_y and yd is y) or (save is _only_x and xd is x):
            # x * c reads only c, a plain constant ``parents`` holds already: the record
            # saves ``parents`` itself (the other slot is never read) and no second tuple
            saved = parents
        else:
            saved = save(out, arrays)
    elif n == 1:
        parents, saved = (x.node or x,), op.save(out, arrays)
    else:
        parents = tuple([a.node or a if isinstance(a, Tensor) else a for a in args])
        saved = op.save(out, arrays)
    result.requires_grad = True
    result.node = Node(op, parents, saved, params, result, tape)
    return result


_new = object.__new__
_SEQUENCES = (list, tuple)


def constant(values: Any, what: str) -> np.ndarray:
    """A list operand (or a clamp bound) as the constant array it is; a Tensor inside that
    requires grad is refused, because the list's array would silently drop its gradient."""
    held = grad_tensor_in(values) if state.grad_enabled else None
    if held is not None:
        raise TypeError(
            f"{what}: a list holds {label(held)}, which requires grad; a list is read as a "
            "constant array, so its gradient would be lost; build it with tape.stack([...]) "
            "(or tape.concatenate) instead"
        )
    return np.asarray(values)


def _forward_error(op: Op, args: tuple, params: dict, e: Exception) -> Exception:
    """NumPy's complaint, prefixed with the op, its operands, and the op's hint for a fix.

    An operand with a name (``t.name``, an ``nn`` parameter's ``'0.W'``) shows it.
    """
    operands = ", ".join(
        f"'{a.name}' {describe(a)}" if isinstance(a, Tensor) and a.name else describe(a)
        for a in args
    )
    shown = "".join(f", {k}={_shown(v)}" for k, v in params.items() if k != "ctx")
    fix = op.hint(*args, **params) if op.hint is not None else None
    message = f"{op.name}({operands}{shown}): {e}" + (f"; {fix}" if fix else "")
    # API.md's classes: shapes and axes ValueError (NumPy's AxisError is one), dtypes TypeError
    kind = next(k for k in (ValueError, TypeError, IndexError) if isinstance(e, k))
    return kind(message)


def _shown(value: Any) -> str:
    """A parameter as an error shows it: an array (alone or in an index tuple) by its shape."""
    if isinstance(value, tuple):
        parts = [describe(v) if isinstance(v, np.ndarray) else repr(v) for v in value]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return describe(value) if isinstance(value, np.ndarray) else repr(value)


def _check_forward_finite(op: Op, args: tuple, out: np.ndarray) -> None:
    if out.dtype.kind in "fc" and not np.isfinite(out).all():
        operands = ", ".join(describe(a) for a in args)
        raise FloatingPointError(
            f"detect_anomaly: {op.name}({operands}) at {code_location(user_code(2))} "
            "produced NaN or Inf in forward"
        )


class Context:
    """What a custom Function's ``forward`` leaves for its ``backward``.

    Call ``ctx.save_for_backward(*arrays)`` and read ``ctx.saved``; any other
    attribute may be set too (``ctx.axis = 0``).
    """

    def __init__(self) -> None:
        self.saved: tuple | None = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays


class Function:
    """A custom op with a hand-written backward.

    Subclass it with two static methods working on NumPy arrays, then call
    ``MyOp.apply(*tensors, **kw)``; it is recorded on the tape like a built-in.

    >>> class Square(tape.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         (x,) = ctx.saved
    ...         return (2 * x * grad,)
    >>> x = tape.tensor([3.0], requires_grad=True)
    >>> Square.apply(x).sum().backward()
    >>> x.grad
    array([6.])
    """

    _op: Op

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

        def forward(*arrays: Any, ctx: Context, **kw: Any) -> Any:
            return cls.forward(ctx, *arrays, **kw)

        def vjp_all(g: Any, *, ctx: Context, **kw: Any) -> Any:
            if ctx.saved is None:
                raise RuntimeError(f"{cls.__name__}: its saved values were released")
            return cls.backward(ctx, g)

        op = Op(cls.__name__, forward)
        op.defvjp_all(vjp_all)
        op.once = True
        cls._op = op

    @staticmethod
    def forward(ctx: Context, *arrays: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise TypeError("a tape.Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx: Context, grad: Any) -> Any:  # pragma: no cover
        raise TypeError("a tape.Function subclass must define backward(ctx, grad)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` on the inputs' arrays and record the call on the tape."""
        try:
            return apply(cls._op, args, {"ctx": Context(), **kwargs})
        except Exception as e:
            add_note(e, f"(in {cls.__name__}.forward)")
            raise


__all__ = ["Context", "Function", "Op", "apply"]
