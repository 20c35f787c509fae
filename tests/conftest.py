"""Shared fixtures for the engine tests."""

from __future__ import annotations

import gc

import pytest

import tape


@pytest.fixture
def fresh_tape() -> tape.Tape:
    """This thread's tape, emptied, with no garbage left to be collected mid-test.

    Tests that count records start from zero; the garbage collection first
    makes sure no leftover tensors of earlier tests die (and drop their
    records) while the test is counting.
    """
    gc.collect()
    current = tape.get_tape()
    current.clear()
    return current
