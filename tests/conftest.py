"""Fixtures shared by the tests."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture
def force_pool():
    """A function that makes a layer send every batch to its pool (``route="pool"``): parity
    tests on fast models would otherwise (rightly) stay in-process."""

    def force(layer):
        layer.route = "pool"
        return layer

    return force


@pytest.fixture(autouse=True)
def _sigint_untouched():
    """No test may leave this process ignoring or blocking Ctrl-C: every later subprocess would
    inherit it (the interrupt tests would see scenarios that cannot be interrupted)."""
    handler = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after_handler = signal.getsignal(signal.SIGINT)
    after_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    signal.signal(signal.SIGINT, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    assert (after_handler, after_mask) == (handler, mask), "the test changed SIGINT handling"
