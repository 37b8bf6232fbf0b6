"""Counters never go backwards while an LRU map evicts and --max-series folds;
each eviction and fold is counted; one bad metric never fails a scrape."""
import ctypes
import random
from collections import OrderedDict

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.exposition import generate_latest

from exporters.collector import MapCollector, Target
from tracers.spec import Label, Metric, TracerSpec


class CommKey(ctypes.Structure):
    _fields_ = [("comm", ctypes.c_char * 16)]


class SlotKey(ctypes.Structure):
    _fields_ = [("comm", ctypes.c_char * 16), ("slot", ctypes.c_uint32)]


class LruMap:
    """An LRU hash like the kernel's: a new key evicts the least recently used one."""

    def __init__(self, key_type, max_entries):
        self.key_type, self.max_entries = key_type, max_entries
        self.entries = OrderedDict()
        self.unseen = 0  # counts gained since the last read by entries evicted before the next

    def add(self, fields: tuple, n: int = 1) -> None:
        if fields not in self.entries and len(self.entries) == self.max_entries:
            _, (value, read) = self.entries.popitem(last=False)
            self.unseen += value - read
        value, read = self.entries.pop(fields, (0, 0))
        self.entries[fields] = (value + n, read)

    def items(self):
        for fields, (value, _) in self.entries.items():
            self.entries[fields] = (value, value)  # what a scrape saw (no LRU refresh: lookups don't)
        return [(self.key_type(*fields), ctypes.c_uint64(value)) for fields, (value, _) in self.entries.items()]


def exposition(registry) -> dict:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_forever(registry, maps_and_workload, scrapes: int):
    """Scrapes between bursts of work; every counter sample is checked to never
    go down or vanish. Returns the last exposition."""
    served = {}
    for _ in range(scrapes):
        maps_and_workload()
        now = exposition(registry)
        for key, value in served.items():
            name = key[0]
            if name.endswith(("_total", "_bucket", "_count", "_sum")):
                assert key in now, f"{key} vanished"
                assert now[key] >= value, f"{key} went from {value} to {now[key]}"
        served = now
    return served


def test_counter_over_an_lru_map_with_thousands_of_comms_never_goes_back():
    rng = random.Random(7)
    lru = LruMap(CommKey, 200)
    metric = Metric("reads_total", "Reads.", map="reads", labels=(Label("comm", "comm", "comm"),))
    spec = TracerSpec("fake", "fake", "fake.bpf.c", (), (metric,))
    registry = CollectorRegistry()
    MapCollector([Target(spec, "tp", {"reads": lru}.__getitem__)], registry=registry,
                 max_series=50, per_process=True)
    events = 0

    def work():
        nonlocal events
        for _ in range(300):
            # cold names come once and are evicted for good; hot ones stay
            comm = b"c%d" % events if rng.random() < 0.7 else b"hot%d" % rng.randrange(10)
            lru.add((comm,))
            events += 1
    last = scrape_forever(registry, work, 60)
    served = sum(v for (name, labels), v in last.items() if name == "bpfwatch_reads_total")
    other = last[("bpfwatch_reads_total", (("comm", "other"),))]
    assert 0 < other < served
    # Every count is served but what entries gained between a scrape and their eviction.
    assert served + lru.unseen == events
    assert len([k for k in last if k[0] == "bpfwatch_reads_total"]) == 51  # 50 and `other`
    evictions = last[("bpfwatch_map_evictions_total", (("map", "reads"), ("tracer", "fake")))]
    assert evictions >= 10000  # ~12600 distinct comms through 200 entries
    arrivals = last[("bpfwatch_series_folded_arrivals_total", (("metric", "reads_total"), ("tracer", "fake")))]
    assert arrivals > 1000


def test_histogram_and_its_sum_over_lru_maps_never_go_back():
    rng = random.Random(11)
    sizes, totals = LruMap(SlotKey, 100), LruMap(CommKey, 40)
    metric = Metric("read_size_bytes", "Sizes.", map="sizes", kind="histogram", buckets="exp2",
                    labels=(Label("comm", "comm", "comm"),), sum_map="totals")
    spec = TracerSpec("fake", "fake", "fake.bpf.c", (), (metric,))
    registry = CollectorRegistry()
    MapCollector([Target(spec, "tp", {"sizes": sizes, "totals": totals}.__getitem__)],
                 registry=registry, max_series=20, per_process=True)
    reads = 0

    def work():
        nonlocal reads
        for _ in range(200):
            comm, size = b"p%d" % (reads // 3), rng.choice((100, 5000, 70000))  # a name reads 3 times
            sizes.add((comm, size.bit_length()))
            totals.add((comm,), size)
            reads += 1
    last = scrape_forever(registry, work, 40)
    counts = sum(v for (name, _), v in last.items() if name == "bpfwatch_read_size_bytes_count")
    assert counts + sizes.unseen == reads


def test_a_metric_that_cannot_be_read_leaves_the_rest_served():
    class Broken:
        max_entries = 8

        def items(self):
            return [(CommKey(b"x"), "not a number")]  # decoding fails, as a missing field did
    good = Metric("good_total", "Good.", map="good")
    bad = Metric("bad_total", "Bad.", map="bad", labels=(Label("comm", "comm", "comm"),))
    spec = TracerSpec("fake", "fake", "fake.bpf.c", (), (bad, good))
    maps = {"good": LruMap(CommKey, 4), "bad": Broken()}
    maps["good"].add((b"a",), 5)
    registry = CollectorRegistry()
    MapCollector([Target(spec, "tp", maps.__getitem__)], registry=registry)
    for scrape in (1, 2):
        text = generate_latest(registry).decode()  # raised before: the whole scrape failed
        assert 'bpfwatch_good_total 5.0' in text
        assert "bpfwatch_bad_total{" not in text
        assert registry.get_sample_value("bpfwatch_map_read_errors_total",
                                         {"tracer": "fake", "map": "bad"}) == 2 * scrape  # this one scrapes too


def test_keys_read_another_way_are_not_taken_for_evictions():
    from exporters.ledger import EvictionLedger
    ledger = EvictionLedger()
    assert ledger.carry(("t", "m"), ("t", "map"), {7: (("a",), 5)}) == {}
    # the same entry, its key now as bytes (a batch read): nothing was evicted
    assert ledger.carry(("t", "m"), ("t", "map"), {b"\x07\0\0\0": (("a",), 6)}) == {}
    assert ledger.evictions == {("t", "map"): 0}
    assert ledger.carry(("t", "m"), ("t", "map"), {b"\x07\0\0\0": (("a",), 2)}) == {("a",): 6}
    assert ledger.evictions == {("t", "map"): 1}
