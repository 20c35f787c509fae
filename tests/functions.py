"""Custom Functions that several test files use, defined once.

Tests that need a wrong backward subclass ``Square`` and override ``backward``
only, so the forward and the mistake are both in view where they are tested.
"""

from __future__ import annotations

import tape


class Square(tape.Function):
    """``x²``, with its right backward ``2x·g``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return (2 * x * grad,)
