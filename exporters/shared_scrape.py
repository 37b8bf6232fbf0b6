"""Concurrent scrapes share collections instead of queueing for the GIL.

A collection reads every map and renders the body: milliseconds of Python
under the GIL, so N scrapes at once used to cost N collections back to
back. A scrape is answered by the first collection that *started after it
arrived*: one already running is too old for it (it may have read a map
before the request came), so it waits for the next one, which then serves
everyone who waited. N concurrent scrapes cost about two collections, and no
answer holds state older than its request. Nothing is kept once nobody
waits, so distinct `name[]` filters cannot pile up bodies.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable


class _Slot:
    def __init__(self):
        self.started = 0  # collections begun for this key
        self.done = 0  # the last one finished
        self.running = False
        self.body = None  # what `done` produced
        self.error = None
        self.users = 0  # requests holding the slot


class SharedScrapes:
    def __init__(self):
        self._cond = threading.Condition()
        self._slots: dict[Hashable, _Slot] = {}
        self.collections = 0  # for tests and telemetry

    def get(self, key: Hashable, collect: Callable[[], bytes]) -> bytes:
        with self._cond:
            slot = self._slots.setdefault(key, _Slot())
            slot.users += 1
            want = slot.started + 1  # the next collection to begin
            try:
                while True:
                    if slot.done >= want:
                        if slot.error is not None:
                            raise slot.error
                        return slot.body
                    if not slot.running:
                        return self._collect(slot, collect)
                    self._cond.wait()
            finally:
                slot.users -= 1
                if not slot.users and not slot.running:
                    del self._slots[key]

    def _collect(self, slot: _Slot, collect) -> bytes:
        """Called holding the condition; collects without it."""
        slot.started += 1
        slot.running = True
        generation = slot.started
        self.collections += 1
        self._cond.release()
        body, error = None, None
        try:
            body = collect()
        except BaseException as exc:
            error = exc
        finally:
            self._cond.acquire()
            slot.running = False
            slot.done, slot.body, slot.error = generation, body, error
            self._cond.notify_all()
        if error is not None:
            raise error
        return body
