"""Concurrent scrapes share collections, and none is answered with a
collection that began before it arrived."""
import threading
import time

import pytest

from exporters.shared_scrape import SharedScrapes


def test_concurrent_scrapes_cost_two_collections_and_none_is_older_than_its_request():
    shared = SharedScrapes()
    began = []
    gate = threading.Event()

    def collect():
        began.append(time.monotonic())
        gate.wait(5)  # the first collection runs while the others arrive
        return str(len(began)).encode()
    results = {}

    def scrape(i):
        arrived = time.monotonic()
        results[i] = (arrived, shared.get("text", collect))
    first = threading.Thread(target=scrape, args=(0,))
    first.start()
    while not began:
        time.sleep(0.001)
    others = [threading.Thread(target=scrape, args=(i,)) for i in range(1, 20)]
    for t in others:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in [first, *others]:
        t.join(10)
    assert shared.collections == 2
    assert results[0][1] == b"1" and {results[i][1] for i in range(1, 20)} == {b"2"}
    assert all(began[int(body) - 1] >= arrived for arrived, body in results.values())
    assert shared._slots == {}  # nothing kept once nobody waits


def test_a_failed_collection_fails_its_waiters_and_the_next_scrape_collects_again():
    shared = SharedScrapes()
    with pytest.raises(OSError):
        shared.get("k", lambda: (_ for _ in ()).throw(OSError("map gone")))
    assert shared.get("k", lambda: b"ok") == b"ok"
    assert shared.collections == 2


def test_keys_do_not_share():
    shared = SharedScrapes()
    assert shared.get("text", lambda: b"t") == b"t"
    assert shared.get("openmetrics", lambda: b"o") == b"o"
