"""Functional transforms: ``grad``, ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``hvp``.

Each transform takes a function ``f`` written with tape ops on Tensors and
returns (or evaluates) a derivative of it, in the style of ``jax.grad`` and
``torch.func``. They are thin layers over one engine call,
``tape.grad(..., create_graph=...)``: the transform wraps the arguments it
differentiates as fresh leaves, runs ``f`` once, and walks the tape back.

**Arrays in, arrays out.**
The differentiated arguments may be NumPy arrays, Python floats or Tensors;
other arguments are passed through (a NumPy array becomes a Tensor without
grad, so ``f`` always sees Tensors). What comes back depends on whether the
result has to stay on the tape:

* **arrays** (``np.ndarray``) for an ordinary call, e.g. ``grad(f)(x)`` with
  ``x`` an array or a Tensor that does not require grad;
* **recorded Tensors** when the result depends on a tensor that requires
  grad and that the transform did not create itself: an argument passed as a
  Tensor with ``requires_grad=True`` (as an outer transform does), or a tensor
  ``f`` closes over (a model's parameters). That is what makes transforms
  compose: ``grad(grad(f))(x)`` is the second derivative, and a gradient
  penalty built with ``grad`` can itself be backpropagated.

Shapes, for an input ``x`` and an output ``y = f(x)``:

- ``grad(f)(x)``: ``x.shape`` (``f`` returns one element)
- ``vjp(f, x)`` → ``vjp_fn(u)``: ``u`` has ``y.shape``; the result is ``(x.shape,)``
- ``jvp(f, (x,), (t,))``: ``t`` has ``x.shape``; the tangent out ``y.shape``
- ``jacobian(f)(x)``: ``y.shape + x.shape``
- ``hessian(f)(x)``: ``x.shape + x.shape``
- ``hvp(f, x, v)``: ``v`` and the result have ``x.shape``

With a tuple ``argnums`` every per-input result becomes a tuple in the order
of ``argnums`` (``hessian``: a tuple of tuples, block ``[i][j]`` of shape
``x_i.shape + x_j.shape``).

**Forward mode without forward rules.**
``jvp`` uses the *double-VJP trick*. The VJP ``u ↦ Jᵀu`` is linear in ``u``;
recording it with ``create_graph=True`` for a dummy ``u`` and differentiating
``⟨Jᵀu, t⟩`` with respect to ``u`` gives ``J t``, the JVP, from two reverse
passes. The Higher order page of the docs works it through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autodiff import grad as tape_grad
from .autodiff import key_of
from .errors import real_gradient
from .ops import stack
from .record import Node, enable_grad, is_grad_enabled
from .tensors import Tensor

ArgNums = int | Sequence[int]

__all__ = ["grad", "hessian", "hvp", "jacobian", "jvp", "value_and_grad", "vjp"]


# ---- arguments in, results out --------------------------------------------------------------


def argnums_positions(argnums: ArgNums, n_args: int, who: str) -> tuple[tuple[int, ...], bool]:
    """``argnums`` as a tuple of distinct non-negative positions, and whether a tuple was given.

    ``who`` (``"func.grad"``, ``"tape.compile"``) starts the error messages.
    """
    several = not isinstance(argnums, int | np.integer)
    nums = tuple(argnums) if several else (argnums,)  # type: ignore[arg-type]
    if several and not nums:
        raise ValueError(f"{who}: argnums is empty; name at least one argument")
    positions = []
    for n in nums:
        if not isinstance(n, int | np.integer) or not -n_args <= n < n_args:
            raise ValueError(
                f"{who}: argnums={argnums!r} but the function was called with "
                f"{n_args} positional argument(s); argnums must index them"
            )
        positions.append(int(n) % n_args)
    if len(set(positions)) < len(positions):  # as torch.func: which copy would get the gradient?
        raise ValueError(
            f"{who}: argnums={argnums!r} names an argument twice (positions "
            f"{tuple(positions)}); name each argument once"
        )
    return tuple(positions), several


def _leaf(value: Any, what: str, position: int) -> Tensor:
    """The Tensor to differentiate with respect to, for one argument."""
    if isinstance(value, Tensor) and value.requires_grad:
        return value  # keep it: the caller wants the result on its tape
    data = value.data if isinstance(value, Tensor) else np.asarray(value)
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(
            f"func.{what}: argument {position} is {data.dtype}{list(data.shape)}, but only "
            "floating-point inputs have a derivative; pass floats (1.0, not 1) or "
            "np.asarray(x, dtype=np.float64)"
        )
    return Tensor(data, requires_grad=True)


class _Inputs:
    """One call of a transform: the arguments ``f`` receives and the tensors to differentiate.

    ``recorded`` says whether an argument already requires grad, so the result
    must stay on the tape. Used as a context manager: on exit the fresh leaves
    made here stop requiring grad. They are this call's private variables;
    once it returns they are constants to everyone else, and an outer
    transform must not mistake them for tensors its result depends on.
    """

    def __init__(self, args: Sequence[Any], positions: tuple[int, ...], what: str) -> None:
        self.args = [Tensor(a) if isinstance(a, np.ndarray) else a for a in args]
        self.wrt: list[Tensor] = []
        self.fresh: list[Tensor] = []
        for p in positions:
            leaf = _leaf(args[p], what, p)
            if leaf is not args[p]:
                self.fresh.append(leaf)
            self.args[p] = leaf
            self.wrt.append(leaf)
        self._entered, self._entered_lock = 0, threading.Lock()
        self.grad_on = is_grad_enabled()  # the caller's mode: f itself always runs recording
        self.recorded = self.grad_on and any(
            isinstance(a, Tensor) and a.requires_grad for a in args
        )

    def must_record(self, outs: Sequence[Tensor]) -> bool:
        """Whether results computed from ``outs`` have to stay on the tape."""
        return self.recorded or (self.grad_on and _reaches_others(outs, self.wrt))

    def leaf(self, data: np.ndarray) -> Tensor:
        """A private leaf that lives as long as this call (``jvp``'s dummy cotangent)."""
        t = Tensor(data, requires_grad=True)
        self.fresh.append(t)
        return t

    def __enter__(self) -> _Inputs:
        with self._entered_lock:  # vjp_fn called from several threads at once
            self._entered += 1
            for t in self.fresh:
                t.requires_grad = True
        return self

    def __exit__(self, *exc: object) -> None:
        with self._entered_lock:  # the last call to leave, not the first, ends them
            self._entered -= 1
            if not self._entered:
                for t in self.fresh:
                    t.requires_grad = False


def _reaches_others(outs: Sequence[Tensor], own: Sequence[Tensor]) -> bool:
    """Whether ``outs`` depend on a tensor that requires grad other than ``own``.

    That happens when ``f`` closes over such a tensor (a parameter, or the
    variable of an outer transform); the result must then stay on the tape.
    The walk stops at ``own``, so it costs what ``f`` recorded. It walks the
    records themselves (``node.parents``), not ``node.inputs``, whose stand-ins
    are new objects on every read.
    """
    mine = {t.node or t for t in own}
    todo = [t.node or t for t in outs if t.requires_grad]
    seen: set = set()  # records and leaves, held here, so none is mistaken for another
    while todo:
        key = todo.pop()
        if key in mine or key in seen:
            continue
        seen.add(key)
        if key.__class__ is not Node:  # a leaf that requires grad and is not ours
            return True
        todo.extend(k for k in map(key_of, key.parents) if k is not None)
    return False


def _outputs(out: Any, what: str) -> tuple[tuple[Tensor, ...], bool]:
    """The Tensors ``f`` returned, and whether it returned a tuple of them."""
    several = isinstance(out, tuple | list)
    outs = tuple(out) if several else (out,)
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            which = f"output {i}" if several else "its output"
            raise TypeError(
                f"func.{what}: f must return a Tensor (or a tuple of Tensors), but "
                f"{which} is {type(o).__name__}; compute it with tape ops on the Tensors "
                "f receives"
            )
    return outs, several


def _scalar(out: Any, what: str) -> Tensor:
    (o,), several = _outputs(out, what)
    if several:
        raise TypeError(
            f"func.{what}: f must return one scalar Tensor, got a tuple; with an auxiliary "
            "result pass has_aux=True and return (value, aux)"
        )
    if o.size != 1:
        raise ValueError(
            f"func.{what}: f must return a scalar, but its output has shape {o.shape}; "
            "reduce it (.sum(), .mean()) or use func.jacobian or func.vjp for vector outputs"
        )
    return o


def _split_aux(out: Any, has_aux: bool, what: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise TypeError(
            f"func.{what}: with has_aux=True, f must return a pair (value, aux), "
            f"got {type(out).__name__}"
        )
    return out[0], out[1]


def _plain(value: Any) -> Any:
    """Tensors inside ``value`` (nested tuples, lists, dicts) as arrays."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _zeros(like: Tensor, recorded: bool) -> Any:
    return _zeros_shaped(like.shape, like.dtype, recorded)


def _gradients(
    outs: Sequence[Tensor],
    wrt: Sequence[Tensor],
    seeds: Sequence[Any],
    recorded: bool,
) -> list[Any]:
    """``Σ_k seed_kᵀ ∂out_k/∂wrt`` for each tensor of ``wrt``; zeros where nothing flows.

    The graph is always retained: a transform must never release records it did
    not make (the caller's, reached under ``no_grad``), and its own die with the
    tensors of the call anyway.
    """
    active = [(o, s) for o, s in zip(outs, seeds) if o.requires_grad]
    if not active:
        return [_zeros(w, recorded) for w in wrt]
    found = tape_grad(
        [o for o, _ in active],
        list(wrt),
        grad_outputs=[s for _, s in active],
        retain_graph=True,
        create_graph=recorded,
        allow_unused=True,
    )
    if not recorded:  # the sum of two 0-d arrays is a NumPy scalar: hand back arrays
        found = [None if g is None else np.asarray(g) for g in found]
    return [_zeros(w, recorded) if g is None else g for g, w in zip(found, wrt)]


def _pack(values: Sequence[Any], several: bool) -> Any:
    return tuple(values) if several else values[0]


# ---- grad and value_and_grad ---------------------------------------------------------------


def value_and_grad(
    f: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """Transform ``f`` into a function returning ``(f(x), ∇f(x))`` from one forward pass.

    ``f`` takes Tensors and returns a scalar Tensor (or ``(scalar, aux)`` with
    ``has_aux=True``). The transformed function returns ``(value, grad)``, or
    with ``has_aux`` JAX's layout ``((value, aux), grad)``; ``grad`` has the
    shape of the argument, or is a tuple when ``argnums`` is a tuple.

    >>> f = lambda x: (x * x).sum()
    >>> value, g = tape.func.value_and_grad(f)(np.array([1.0, 2.0]))
    >>> value, g                           # |x|², 2x
    (array(5.), array([2., 4.]))
    """
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(
    f: Callable[..., Any], argnums: ArgNums, has_aux: bool, what: str
) -> Callable[..., Any]:
    """``value_and_grad``, whose errors name ``what`` the user called (``grad``, ``hessian``)."""

    def value_and_grad_f(*args: Any) -> Any:
        positions, several = argnums_positions(argnums, len(args), f"func.{what}")
        with _Inputs(args, positions, what) as inputs, enable_grad():
            out = f(*inputs.args)
            out, aux = _split_aux(out, has_aux, what)
            value = _scalar(out, what)
            recorded = inputs.must_record([value])
            seed = np.ones(value.shape, dtype=value.dtype)
            grads = _gradients([value], inputs.wrt, [seed], recorded)
        if not recorded:
            value, aux = value.data, _plain(aux)
        g = _pack(grads, several)
        return ((value, aux), g) if has_aux else (value, g)

    value_and_grad_f.__name__ = f"value_and_grad_{getattr(f, '__name__', 'f')}"
    value_and_grad_f.__doc__ = f"The value and gradient of {getattr(f, '__name__', 'f')}."
    return value_and_grad_f


def grad(f: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False) -> Callable[..., Any]:
    """Transform a scalar function ``f`` into the function ``x ↦ ∇f(x)``.

    ``∇f(x)[i] = ∂f/∂x[i]``, computed by one reverse pass. With ``argnums`` a
    tuple the result is a tuple of gradients; with ``has_aux=True``, ``f``
    returns ``(value, aux)`` and the result is ``(grad, aux)`` as in JAX.
    Called on arrays it returns arrays; called on Tensors that require grad it
    returns recorded Tensors, so transforms compose.

    >>> f = lambda x: (x ** 3).sum()
    >>> tape.func.grad(f)(np.array([1.0, 2.0]))                # 3x²
    array([ 3., 12.])
    >>> d2 = tape.func.grad(lambda x: tape.func.grad(f)(x).sum())
    >>> d2(np.array([1.0, 2.0]))                                 # 6x
    array([ 6., 12.])
    """
    return _grad(f, argnums, has_aux, "grad")


def _grad(f: Callable[..., Any], argnums: ArgNums, has_aux: bool, what: str) -> Callable[..., Any]:
    both = _value_and_grad(f, argnums, has_aux, what)

    def grad_f(*args: Any) -> Any:
        result, g = both(*args)
        return (g, result[1]) if has_aux else g

    grad_f.__name__ = f"grad_{getattr(f, '__name__', 'f')}"
    grad_f.__doc__ = f"The gradient of {getattr(f, '__name__', 'f')}."
    return grad_f


# ---- vjp and jvp -----------------------------------------------------------------------------


def _cotangents(values: Any, outs: Sequence[Tensor], several: bool, what: str) -> list[Any]:
    given = tuple(values) if several and isinstance(values, tuple | list) else (values,)
    if len(given) != len(outs):
        raise ValueError(
            f"func.{what}: f returned {len(outs)} output(s) but {len(given)} cotangent(s) "
            "were given; pass one per output, each of the output's shape"
        )
    seeds = []
    for i, (u, o) in enumerate(zip(given, outs)):
        data = real_gradient(
            u.data if isinstance(u, Tensor) else u, f"func.{what}: cotangent {i}", o
        )
        if data.shape != o.shape:
            raise ValueError(
                f"func.{what}: cotangent {i} has shape {data.shape} but output {i} has "
                f"shape {o.shape}; a cotangent has its output's shape"
            )
        seeds.append(
            u if isinstance(u, Tensor) and u.requires_grad else data.astype(o.dtype, copy=False)
        )
    return seeds


def vjp(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], tuple]]:
    """Evaluate ``f(*primals)`` and return it with ``vjp_fn: u ↦ uᵀJ``, one entry per primal.

    ``J`` is the Jacobian of ``f`` at ``primals``; ``vjp_fn(u)`` returns the
    tuple ``(uᵀ ∂f/∂x₁, uᵀ ∂f/∂x₂, ...)`` for a cotangent ``u`` of the output's
    shape. The forward pass runs once and ``vjp_fn`` can be called any number
    of times (the graph is kept until ``vjp_fn`` is dropped). ``f`` may return
    a tuple of Tensors; then ``u`` is a tuple too.

    >>> out, vjp_fn = tape.func.vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> vjp_fn(np.array([1.0, 0.0]))                       # u ⊙ 2x
    (array([2., 0.]),)
    >>> vjp_fn(np.array([0.0, 1.0]))
    (array([0., 4.]),)
    """
    if not primals:
        raise TypeError("func.vjp: give at least one primal, vjp(f, x, ...)")
    inputs = _Inputs(primals, tuple(range(len(primals))), "vjp")
    with inputs, enable_grad():
        outs, several = _outputs(f(*inputs.args), "vjp")
        recorded = inputs.must_record(outs)

    def vjp_fn(cotangent: Any) -> tuple:
        seeds = _cotangents(cotangent, outs, several, "vjp")
        graph = is_grad_enabled() and (
            recorded or any(isinstance(s, Tensor) and s.requires_grad for s in seeds)
        )
        with inputs:  # the primals are variables again while the graph is walked
            return tuple(_gradients(outs, inputs.wrt, seeds, graph))

    shown = outs if recorded else tuple(o.data for o in outs)
    return _pack(shown, several), vjp_fn


def _as_tuple(values: Any) -> tuple[tuple, bool]:
    several = isinstance(values, tuple | list)
    return (tuple(values) if several else (values,)), several


def jvp(f: Callable[..., Any], primals: Any, tangents: Any) -> tuple[Any, Any]:
    """Evaluate ``f(*primals)`` and the directional derivative ``J t`` along ``tangents``.

    ``primals`` and ``tangents`` are tuples (or single arrays) of the same
    shapes; the result is ``(out, tangent_out)`` with ``tangent_out`` of the
    output's shape: ``Σᵢ ∂f/∂xᵢ · tᵢ``.

    tape only records reverse-mode rules, so this uses the double-VJP trick:
    ``g(u) = Jᵀu`` is linear in ``u``, so the reverse derivative of ``⟨g(u), t⟩``
    with respect to ``u`` is ``J t``. Two reverse passes, the first recorded
    with ``create_graph=True`` for a dummy ``u`` whose value never matters.

    >>> out, t_out = tape.func.jvp(lambda x: x ** 2, (np.array([1.0, 3.0]),),
    ...                            (np.array([1.0, 1.0]),))
    >>> t_out                                             # 2x · t
    array([2., 6.])
    """
    xs, _ = _as_tuple(primals)  # the output's structure, not the input's, shapes the result
    inputs = _Inputs(xs, tuple(range(len(xs))), "jvp")
    ts, tangents_recorded = _directions(tangents, inputs, "jvp", "tangent")
    with inputs, enable_grad():
        outs, several = _outputs(f(*inputs.args), "jvp")
        recorded = tangents_recorded or inputs.must_record(outs)
        active = [o for o in outs if o.requires_grad]
        # the dummy cotangents u: any value would do, since Jᵀu is linear in u
        us = [inputs.leaf(np.zeros(o.shape, dtype=o.dtype)) for o in active]
        found: dict[int, Any] = {}
        if active:
            vjps = tape_grad(
                active, inputs.wrt, grad_outputs=us, create_graph=True, allow_unused=True
            )
            pairs = [(g, t) for g, t in zip(vjps, ts) if g is not None and g.requires_grad]
            if pairs:  # ∂⟨Jᵀu, t⟩/∂u = J t
                jt = _gradients([g for g, _ in pairs], us, [t for _, t in pairs], recorded)
                found = {id(o): g for o, g in zip(active, jt)}
        results = [found[id(o)] if id(o) in found else _zeros(o, recorded) for o in outs]
    shown = outs if recorded else tuple(o.data for o in outs)
    return _pack(shown, several), _pack(results, several)


def _directions(values: Any, inputs: _Inputs, what: str, noun: str) -> tuple[list[Any], bool]:
    """Check one direction (tangent, ``v``) per primal, of its shape; say if one requires grad."""
    given, _ = _as_tuple(values)
    wrt = inputs.wrt
    if len(given) != len(wrt):
        raise ValueError(
            f"func.{what}: {len(wrt)} primal(s) but {len(given)} {noun}(s); give one "
            f"{noun} per primal, of the primal's shape"
        )
    directions, recorded = [], False
    for i, (d, w) in enumerate(zip(given, wrt)):
        data = real_gradient(d.data if isinstance(d, Tensor) else d, f"func.{what}: {noun} {i}", w)
        if data.shape != w.shape:
            raise ValueError(
                f"func.{what}: {noun} {i} has shape {data.shape} but primal {i} has shape "
                f"{w.shape}; a {noun} has its primal's shape"
            )
        if isinstance(d, Tensor) and d.requires_grad and inputs.grad_on:
            directions.append(d)
            recorded = True
        else:
            directions.append(data.astype(w.dtype, copy=False))
    return directions, recorded


# ---- jacobian, hessian, hvp ----------------------------------------------------------------


def _jacobian_of(out: Tensor, wrt: Sequence[Tensor], recorded: bool) -> list[Any]:
    """Rows ``∂out[k]/∂wrt`` for every entry ``k`` of ``out``, one reverse pass each."""
    if not out.requires_grad or out.size == 0:
        return [_zeros_shaped(out.shape + w.shape, w.dtype, recorded) for w in wrt]
    rows: list[list[Any]] = [[] for _ in wrt]
    for k in range(out.size):
        seed = np.zeros(out.size, dtype=out.dtype)
        seed[k] = 1  # the k-th row of the identity picks out the k-th output
        for row, g in zip(rows, _gradients([out], wrt, [seed.reshape(out.shape)], recorded)):
            row.append(g)
    if recorded:
        return [stack(row).reshape(out.shape + w.shape) for row, w in zip(rows, wrt)]
    return [np.stack(row).reshape(out.shape + w.shape) for row, w in zip(rows, wrt)]


def _zeros_shaped(shape: tuple, dtype: Any, recorded: bool) -> Any:
    zeros = np.zeros(shape, dtype=dtype)
    return Tensor(zeros) if recorded else zeros


def jacobian(f: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """Transform ``f`` into ``x ↦ J``, the full Jacobian ``J[i..., j...] = ∂f(x)[i...]/∂x[j...]``.

    The result has shape ``out.shape + x.shape``; it is built row by row, one
    reverse pass per output entry. A tuple ``argnums`` gives a tuple of
    Jacobians; if ``f`` returns a tuple of Tensors the result is a tuple over
    the outputs (each a tuple over ``argnums`` when that is a tuple).

    >>> J = tape.func.jacobian(lambda x: x[:2] * x[2])(np.array([1.0, 2.0, 3.0]))
    >>> J                                           # [[x₂, 0, x₀], [0, x₂, x₁]]
    array([[3., 0., 1.],
           [0., 3., 2.]])
    """

    def jacobian_f(*args: Any) -> Any:
        positions, several_in = argnums_positions(argnums, len(args), "func.jacobian")
        with _Inputs(args, positions, "jacobian") as inputs, enable_grad():
            outs, several_out = _outputs(f(*inputs.args), "jacobian")
            recorded = inputs.must_record(outs)
            per_output = [_pack(_jacobian_of(o, inputs.wrt, recorded), several_in) for o in outs]
        return _pack(per_output, several_out)

    jacobian_f.__name__ = f"jacobian_{getattr(f, '__name__', 'f')}"
    jacobian_f.__doc__ = f"The Jacobian of {getattr(f, '__name__', 'f')}."
    return jacobian_f


def hessian(f: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """Transform a scalar ``f`` into ``x ↦ H``, ``H[i..., j...] = ∂²f/∂x[i...]∂x[j...]``.

    The Jacobian of the gradient, ``jacobian(grad(f))``: the inner ``grad``
    records its backward pass, the outer differentiates that record once per
    entry. ``H`` has shape ``x.shape + x.shape``; with a tuple ``argnums`` it
    is a tuple of tuples whose block ``[i][j]`` has shape ``xᵢ.shape + xⱼ.shape``.

    >>> f = lambda x: x[0] ** 2 * x[1]
    >>> tape.func.hessian(f)(np.array([1.0, 2.0]))    # [[2x₁, 2x₀], [2x₀, 0]]
    array([[4., 2.],
           [2., 0.]])
    """
    h = jacobian(_grad(f, argnums, False, "hessian"), argnums)
    h.__name__ = f"hessian_{getattr(f, '__name__', 'f')}"
    h.__doc__ = f"The Hessian of {getattr(f, '__name__', 'f')}."
    return h


def hvp(f: Callable[..., Any], primals: Any, v: Any) -> tuple[Any, Any]:
    """Evaluate a scalar ``f`` at ``primals`` and the Hessian-vector product ``H v``.

    As ``torch.autograd.functional.hvp``: ``primals`` and ``v`` are a tuple (or
    a single array) of the same shapes, and the result is ``(f(x), H v)`` with
    ``H v`` shaped like ``primals``. It never builds ``H``: since ``H`` is
    symmetric, ``H v = ∇ₓ⟨∇f(x), v⟩``, two reverse passes, the first recorded.

    >>> f = lambda x: (x ** 3).sum()                   # H = diag(6x)
    >>> out, hv = tape.func.hvp(f, np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    >>> hv
    array([ 6., 12.])
    """
    xs, several = _as_tuple(primals)
    inputs = _Inputs(xs, tuple(range(len(xs))), "hvp")
    vs, v_recorded = _directions(v, inputs, "hvp", "v")
    with inputs, enable_grad():
        out = _scalar(f(*inputs.args), "hvp")
        recorded = v_recorded or inputs.must_record([out])
        results = [_zeros(w, recorded) for w in inputs.wrt]
        if out.requires_grad:
            grads = tape_grad(out, inputs.wrt, create_graph=True, allow_unused=True)
            pairs = [(g, d) for g, d in zip(grads, vs) if g is not None and g.requires_grad]
            if pairs:  # ∇ₓ⟨∇f(x), v⟩ = H v
                results = _gradients(
                    [g for g, _ in pairs], inputs.wrt, [d for _, d in pairs], recorded
                )
    return (out if recorded else out.data), _pack(results, several)
