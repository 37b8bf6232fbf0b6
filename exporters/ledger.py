"""Served counters that never go backwards although an LRU map evicts.

The kernel drops an LRU map's least recently used entry when a new key
needs room, silently. A counter summed from map entries would then go
down, and Prometheus reads that as a reset. So the collector keeps, per
metric, the value each map entry had at the last scrape: an entry gone
since, or back with less (evicted and inserted again), was evicted; what it
had is carried into its label set for good (into `other` once that label set
can never be served), and the eviction is counted.

What an entry gained between the last scrape and its eviction is lost (no
one saw it); a map sized for the workload, or an `other` entry in the
kernel, avoids that. The evictions counter says how often it happened.
"""
from __future__ import annotations

import ctypes
from typing import Callable, Hashable

Raw = Hashable  # a map key as bytes (structs) or int (scalars)
LabelValues = tuple


def raw_key(key) -> Raw:
    """A map key as something hashable and stable across reads."""
    if isinstance(key, (int, bytes)):
        return key
    if isinstance(key, (bytearray, memoryview, ctypes.Structure, ctypes.Union, ctypes.Array)):
        return bytes(key)
    return int(key.value)


class EvictionLedger:
    def __init__(self):
        self._last: dict[tuple, dict[Raw, tuple[LabelValues, int]]] = {}
        self._carried: dict[tuple, dict[LabelValues, int]] = {}
        self.evictions: dict[tuple, int] = {}  # (tracer, map) -> entries seen evicted

    def carry(self, metric_key: tuple, map_key: tuple, seen: dict[Raw, tuple[LabelValues, int]],
              keep_under: Callable[[LabelValues], LabelValues] = lambda lv: lv) -> dict[LabelValues, int]:
        """What evicted entries of this metric had, by label set, since the start.

        seen: this scrape's entries (raw key -> (label values, value)); they
        are remembered for the next scrape. keep_under(lv): the label set an
        evicted entry's count is kept under from now on (lets the caller
        fold label sets that will never be served into one)."""
        carried = self._carried.setdefault(metric_key, {})
        last = self._last.get(metric_key, {})
        if last and seen and type(next(iter(last))) is not type(next(iter(seen))):
            last = {}  # keys read another way (ints, now bytes): not comparable, not evicted
        evicted = 0
        for raw, (lv, before) in last.items():
            now = seen.get(raw)
            if now is None or now[1] < before:
                evicted += 1
                dest = keep_under(lv)
                carried[dest] = carried.get(dest, 0) + before
        self._last[metric_key] = seen
        if evicted:
            self.evictions[map_key] = self.evictions.get(map_key, 0) + evicted
        else:
            self.evictions.setdefault(map_key, 0)
        return carried

    def forget(self, metric_key: tuple, drop: Callable[[LabelValues], bool]) -> None:
        """Stop carrying label sets no longer served (a container gone for good)."""
        carried = self._carried.get(metric_key, {})
        for lv in [lv for lv in carried if drop(lv)]:
            del carried[lv]
