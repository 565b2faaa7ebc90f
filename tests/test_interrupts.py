"""Signals noted inside StepInterrupts are raised at the loop's next check, not where they land."""

from __future__ import annotations

import os
import signal

import pytest

from grmodel.interrupts import StepInterrupts, Terminated


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt),
                                                (signal.SIGTERM, Terminated)])
def test_a_signal_waits_for_the_check(signum, raised):
    before = signal.getsignal(signum)
    with pytest.raises(raised), StepInterrupts() as interrupts:
        interrupts.check()  # nothing pending: no effect
        os.kill(os.getpid(), signum)  # delivered here, in the main thread
        assert interrupts.pending == signum  # noted, not raised
        interrupts.check()
        pytest.fail("check() did not raise")
    assert signal.getsignal(signum) == before


def test_a_second_signal_stops_at_once():
    with pytest.raises(KeyboardInterrupt), StepInterrupts():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the second Ctrl-C did not raise")


def test_a_signal_after_the_last_check_is_raised_when_the_context_ends():
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt), StepInterrupts():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)  # a background job starts with SIGINT ignored
