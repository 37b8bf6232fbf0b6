"""A Ctrl-C that lands between the ready line and the tracer's loop still
ends with a drain and a report (CI once lost a guard alert that way)."""
import argparse
import os
import signal

from tracers import runner
from tracers.runtime import loader


class Announced:
    """What announce() needs of a session."""

    class alternative:
        name = "test"


def test_a_signal_right_after_the_ready_line_still_gets_the_final_tick(capsys):
    ticks = []
    with loader.stop_on_signals():
        runner.announce(Announced, "nothing")
        os.kill(os.getpid(), signal.SIGINT)  # before the loop started
        runner.interval_loop(argparse.Namespace(interval=None, count=None, duration=None),
                             ticks.append)
    assert ticks == [True]
    assert "Hit Ctrl-C to end." in capsys.readouterr().err


def test_a_held_signal_is_seen_by_the_event_loop_and_then_released():
    with loader.stop_on_signals():
        loader.hold_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        with loader.deferred_signals():  # what poll_events enters: the stop is not forgotten
            assert loader.stop_requested()
        loader.release_signals(raise_pending=False)
        assert not loader._signals.defer


def test_signals_raise_again_after_the_session():
    with loader.stop_on_signals():
        loader.hold_signals()
    assert not loader._signals.defer and not loader.stop_requested()
