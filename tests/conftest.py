"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def force_pool():
    """A function that makes a layer send every batch to its pool, as it would for slow solves:
    parity tests on fast models would otherwise (rightly) stay in-process."""

    def force(layer):
        layer._handle.batch._per_instance = 1.0
        return layer

    return force
