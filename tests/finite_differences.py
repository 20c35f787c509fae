"""Central differences shared by the higher-order and transform tests."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def numeric_jacobian(f, x: np.ndarray) -> np.ndarray:
    """Central differences of an array function: shape ``f(x).shape + x.shape``."""
    x = np.array(x, dtype=np.float64)
    out_shape = np.shape(f(x))
    jac = np.empty(out_shape + x.shape)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += EPS
        down[idx] -= EPS
        jac[(..., *idx)] = (np.asarray(f(up)) - np.asarray(f(down))) / (2 * EPS)
    return jac
