"""Every op, driven by the table in op_specs.py: forward vs NumPy, gradients vs
finite differences (first and second order), broadcasting, kinks and ties,
float32, and one tape record per call."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from op_specs import BY_NAME, SPECS, TORCH

import tape
from tape.ops import OPS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _leaves(arrays: list, dtype: type = np.float64) -> list:
    return [tape.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]


CASES = [pytest.param(s, kw, id=f"{s.name}-{i}") for s in SPECS for i, kw in enumerate(s.grid)]
BROADCASTS = [
    pytest.param(s, shapes, id=f"{s.name}-{'x'.join(map(str, shapes))}")
    for s in SPECS
    for shapes in s.broadcast
]
SPECIALS = [
    pytest.param(s, sp, id=f"{s.name}-{i}") for s in SPECS for i, sp in enumerate(s.special)
]


def test_every_op_has_a_row_in_the_table() -> None:
    missing = sorted(set(OPS) - set(BY_NAME))
    unknown = sorted(set(BY_NAME) - set(OPS))
    assert not missing, f"ops with no row in tests/op_specs.py: {missing}"
    assert not unknown, f"rows in tests/op_specs.py for ops tape does not have: {unknown}"


def test_every_op_has_a_row_in_the_docs() -> None:
    documented = set(re.findall(r"^\| `(\w+)`", DOCS.read_text(encoding="utf-8"), re.M))
    missing = sorted(set(OPS) - documented)
    unknown = sorted(documented - set(OPS))
    assert not missing, f"ops with no row in docs/ops.md: {missing}"
    assert not unknown, f"rows in docs/ops.md for ops tape does not have: {unknown}"


def test_every_op_is_exported_and_in_the_api_reference() -> None:
    api = (DOCS.parent / "api.md").read_text(encoding="utf-8")
    listed = set(re.search(r"members: \[([^\]]*)\]", api.split("## Operations")[1])[1].split(", "))
    for name in OPS:
        assert callable(getattr(tape, name, None)), (
            f"tape.{name} is missing: import it in tape/__init__.py"
        )
        assert name in tape.__all__, f"{name!r} is missing from tape.__all__"
        assert name in listed, f"{name!r} is missing from the ops members list in docs/api.md"


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_forward_matches_numpy(spec, kw) -> None:
    arrays = spec.sample(_rng(spec.name, kw), kw=kw)
    out = spec.call(*[tape.tensor(a) for a in arrays], **kw)
    expected = spec.ref(*arrays, **kw)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_one_record_named_after_the_op(spec, kw) -> None:
    xs = _leaves(spec.sample(_rng(spec.name, kw), kw=kw))
    out = spec.call(*xs, **kw)
    assert out.node.op == spec.name
    # the record's inputs are the leaves themselves: no hidden intermediate records
    assert len(out.node.inputs) == len(xs)
    assert all(i is x for i, x in zip(out.node.inputs, xs))


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_gradient_matches_finite_differences(spec, kw) -> None:
    xs = _leaves(spec.sample(_rng(spec.name, kw), kw=kw))
    assert tape.gradcheck(lambda *t: spec.call(*t, **kw), xs)


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_second_derivative_matches_finite_differences(spec, kw) -> None:
    """Differentiate the gradient: every VJP must itself be differentiable."""
    rng = _rng("order2", spec.name, kw)
    xs = _leaves(spec.sample(rng, kw=kw))
    v = rng.standard_normal(np.shape(spec.ref(*[x.data for x in xs], **kw)))
    weights = [rng.standard_normal(x.shape) for x in xs]

    def weighted_gradient(*ts):
        grads = tape.grad((spec.call(*ts, **kw) * v).sum(), list(ts), create_graph=True)
        return sum((g * w).sum() for g, w in zip(grads, weights))

    assert tape.gradcheck(weighted_gradient, xs)


@pytest.mark.parametrize(("spec", "shapes"), BROADCASTS)
def test_broadcasting(spec, shapes) -> None:
    arrays = spec.sample(_rng(spec.name, shapes), shapes)
    xs = _leaves(arrays)
    out = spec.call(*xs)
    np.testing.assert_allclose(out.data, spec.ref(*arrays), rtol=1e-12, atol=1e-15)
    out.backward(np.ones(out.shape))
    for x in xs:  # the gradient is summed back to each operand's own shape
        assert x.grad.shape == x.shape
    assert tape.gradcheck(spec.call, _leaves(arrays))


@pytest.mark.parametrize(("spec", "special"), SPECIALS)
def test_special_values(spec, special) -> None:
    xs = _leaves(list(special.inputs))
    out = spec.call(*xs, **special.kwargs)
    assert np.all(np.isfinite(out.data) | np.isnan([x.data for x in xs]).any()), special.why
    out.sum().backward()
    for x, expected in zip(xs, special.grads):
        np.testing.assert_allclose(x.grad, expected, rtol=1e-12, atol=1e-12, err_msg=special.why)


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_float32_in_float32_gradients_out(spec, kw) -> None:
    rng = _rng("float32", spec.name, kw)
    arrays = [a.astype(np.float32) for a in spec.sample(rng, kw=kw)]
    x32, x64 = _leaves(arrays, np.float32), _leaves(arrays, np.float64)
    out32, out64 = spec.call(*x32, **kw), spec.call(*x64, **kw)
    assert out32.dtype == np.float32
    v = rng.standard_normal(out64.shape)
    (out32 * v.astype(np.float32)).sum().backward()
    (out64 * v).sum().backward()
    for a, b in zip(x32, x64):
        assert a.grad.dtype == np.float32
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5)


# ---- against PyTorch, where it is installed -------------------------------------------------


def test_every_op_has_a_torch_spelling() -> None:
    missing = sorted(set(OPS) - set(TORCH))
    assert not missing, f"ops with no PyTorch spelling in tests/op_specs.py TORCH: {missing}"


def _torch_leaves(torch, arrays: list) -> list:
    return [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]


@pytest.mark.parametrize(("spec", "kw"), CASES)
def test_matches_torch(spec, kw) -> None:
    """Forward and gradient of <v, op(x)> against PyTorch's autograd, in float64."""
    torch = pytest.importorskip("torch")
    rng = _rng("torch", spec.name, kw)
    arrays = spec.sample(rng, kw=kw)
    ts = _torch_leaves(torch, arrays)
    expected = TORCH[spec.name](*ts, **kw)
    if expected is None:
        pytest.skip(f"PyTorch's {spec.name} has no form for {kw}")
    xs = _leaves(arrays)
    out = spec.call(*xs, **kw)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-14)
    v = rng.standard_normal(out.shape)
    (out * v).sum().backward()
    (expected * torch.tensor(v)).sum().backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        np.testing.assert_allclose(
            x.grad, t.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=f"input {i}"
        )


@pytest.mark.parametrize(("spec", "shapes"), BROADCASTS)
def test_broadcasting_matches_torch(spec, shapes) -> None:
    torch = pytest.importorskip("torch")
    arrays = spec.sample(_rng("torch", spec.name, shapes), shapes)
    ts, xs = _torch_leaves(torch, arrays), _leaves(arrays)
    expected, out = TORCH[spec.name](*ts), spec.call(*xs)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-14)
    expected.sum().backward()
    out.sum().backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        np.testing.assert_allclose(
            x.grad, t.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=f"input {i}"
        )


@pytest.mark.parametrize(("spec", "special"), SPECIALS)
def test_special_values_follow_torch(spec, special) -> None:
    """The gradient promised at each kink and tie is PyTorch's."""
    torch = pytest.importorskip("torch")
    ts = _torch_leaves(torch, list(special.inputs))
    TORCH[spec.name](*ts, **special.kwargs).sum().backward()
    for t, expected in zip(ts, special.grads):
        np.testing.assert_allclose(t.grad.numpy(), expected, atol=1e-12, err_msg=special.why)
