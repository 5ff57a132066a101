"""Fixtures shared by the tests."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture(scope="session")
def paper_tiny(tmp_path_factory):
    """``(folder, run)``: ``run(module, seeds)`` runs a paper experiment's tiny setting (examples/paper/)
    once per session into ``folder`` and returns its summary, so that each experiment's tests and
    the report's test share the runs."""
    folder = tmp_path_factory.mktemp("paper")
    done = {}

    def run(module, seeds=(1, 2)):
        if module.NAME not in done:
            args = ["--tiny", "--seeds", *map(str, seeds), "--quiet", "--out", str(folder)]
            done[module.NAME] = module.main(args)
        return done[module.NAME]

    return folder, run


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
