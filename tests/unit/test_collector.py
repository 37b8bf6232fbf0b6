"""The collector against fake maps shaped like BCC's (ctypes keys and values)."""
import ctypes
import math

from prometheus_client import CollectorRegistry, generate_latest

from exporters.collector import MapCollector, Target, linear_buckets
from tracers.mapdata import number
from tracers.decoders import syscall_number
from tracers.spec import Label, Metric, TracerSpec


class Stats(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("total_ns", ctypes.c_uint64)]


class ErrKey(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint32), ("err", ctypes.c_uint32)]


class ProcKey(ctypes.Structure):
    _fields_ = [("comm", ctypes.c_char * 16), ("slot", ctypes.c_uint32)]


class FakeMap:
    """items() like BCC; batch=False makes items_lookup_batch fail like an old kernel."""

    def __init__(self, items, max_entries=1024, batch=True):
        self._items, self.max_entries, self.batch = list(items), max_entries, batch
        self.batch_calls = self.item_calls = 0

    def items(self):
        self.item_calls += 1
        return list(self._items)

    def items_lookup_batch(self):
        self.batch_calls += 1
        if not self.batch:
            raise Exception("BPF_MAP_LOOKUP_BATCH has failed: Invalid argument")
        yield from self._items


def percpu(*values):
    return (Stats * len(values))(*[Stats(c, 0) for c in values])


def spec(*metrics, name="fake"):
    return TracerSpec(name=name, summary="fake", c_file="fake.bpf.c", alternatives=(),
                      metrics=tuple(metrics))


def collector(maps, metrics, stats=None, **kw):
    registry = CollectorRegistry()
    target = Target(spec(*metrics), "tracepoint", maps.__getitem__,
                    (lambda: stats) if stats else None)
    return registry, MapCollector([target], registry=registry, **kw)


SYSCALLS = Metric("syscalls_total", "Syscalls.", map="syscalls",
                  labels=(Label("syscall", "", "syscall_name"),), value_field="count")


def test_percpu_array_counter_sums_cpus_and_skips_zero_slots():
    nr = syscall_number("getppid")
    items = [(ctypes.c_uint32(i), percpu(0, 0)) for i in range(512)]
    items[nr] = (ctypes.c_uint32(nr), percpu(30, 7))
    reg, _ = collector({"syscalls": FakeMap(items, 512)}, [SYSCALLS])
    assert reg.get_sample_value("bpfwatch_syscalls_total", {"syscall": "getppid"}) == 37
    text = generate_latest(reg).decode()
    assert text.count("bpfwatch_syscalls_total{") == 1  # zero slots are not series
    assert reg.get_sample_value("bpfwatch_map_entries", {"tracer": "fake", "map": "syscalls"}) == 512
    assert reg.get_sample_value("bpfwatch_map_max_entries", {"tracer": "fake", "map": "syscalls"}) == 512


def test_counters_follow_the_map_and_never_reset_it():
    m = FakeMap([(ctypes.c_uint32(39), percpu(5, 0))])
    reg, _ = collector({"syscalls": m}, [SYSCALLS])
    assert reg.get_sample_value("bpfwatch_syscalls_total", {"syscall": "getpid"}) == 5
    m._items = [(ctypes.c_uint32(39), percpu(5, 9))]
    assert reg.get_sample_value("bpfwatch_syscalls_total", {"syscall": "getpid"}) == 14
    assert m._items  # the collector only reads


def test_batch_reads_first_then_falls_back_for_good():
    good, bad = FakeMap([(1, 2)]), FakeMap([(1, 2)], batch=False)
    g = Metric("g", "Gauge.", map="good", kind="gauge")
    b = Metric("b", "Gauge.", map="bad", kind="gauge")
    reg, _ = collector({"good": good, "bad": bad}, [g, b])
    for _ in range(3):  # each get_sample_value is one scrape
        assert reg.get_sample_value("bpfwatch_b") == 2
    assert (good.batch_calls, good.item_calls) == (3, 0)
    assert (bad.batch_calls, bad.item_calls) == (1, 3)  # tried once, then per-key


def test_struct_key_labels_through_decoders():
    m = Metric("errors_total", "Errors.", map="errs", labels=(
        Label("syscall", "nr", "syscall_name"), Label("errno", "err", "errno_name")))
    items = [(ErrKey(syscall_number("openat"), 2), ctypes.c_uint64(4)),
             (ErrKey(syscall_number("openat"), 13), ctypes.c_uint64(1))]
    reg, _ = collector({"errs": FakeMap(items)}, [m])
    assert reg.get_sample_value("bpfwatch_errors_total", {"syscall": "openat", "errno": "ENOENT"}) == 4
    assert reg.get_sample_value("bpfwatch_errors_total", {"syscall": "openat", "errno": "EACCES"}) == 1


def test_decoder_errors_are_counted_and_the_key_skipped():
    m = Metric("conns_total", "Connections.", map="c", labels=(Label("addr", "", "inet4"),))
    items = [(ctypes.c_uint32(0x0100007F), 3), (b"\x01\x02", 5)]  # the second is no address
    reg, _ = collector({"c": FakeMap(items)}, [m])
    assert reg.get_sample_value("bpfwatch_conns_total", {"addr": "127.0.0.1"}) == 3
    assert "bpfwatch_conns_total{addr=" in generate_latest(reg).decode()  # third scrape
    assert reg.get_sample_value("bpfwatch_decoder_errors_total",
                                {"tracer": "fake", "metric": "conns_total", "decoder": "inet4"}) == 3


def test_exp2_histogram_in_base_units_with_sum():
    m = Metric("lat_seconds", "Latency.", map="h", kind="histogram", buckets="exp2",
               multiplier=1e-6, sum_map="hsum")
    # slot 0: v == 0, slot 3: 4..7 us, slot 10: 512..1023 us
    items = [(ctypes.c_uint32(0), ctypes.c_uint64(2)), (ctypes.c_uint32(3), ctypes.c_uint64(5)),
             (ctypes.c_uint32(10), ctypes.c_uint64(1))]
    reg, _ = collector({"h": FakeMap(items), "hsum": FakeMap([(0, 1000)])}, [m])
    bucket = lambda le: reg.get_sample_value("bpfwatch_lat_seconds_bucket", {"le": le})
    assert bucket("1e-06") == 2
    assert bucket("4e-06") == 2
    assert bucket("8e-06") == 7
    assert bucket("0.000512") == 7
    assert bucket("0.001024") == 8
    assert bucket("+Inf") == 8
    assert reg.get_sample_value("bpfwatch_lat_seconds_count") == 8
    assert math.isclose(reg.get_sample_value("bpfwatch_lat_seconds_sum"), 1000e-6)


def test_histogram_buckets_never_shrink_and_count_without_sum_map():
    m = Metric("size_bytes", "Sizes.", map="h", kind="histogram", buckets="exp2")
    h = FakeMap([(ctypes.c_uint32(5), ctypes.c_uint64(1))])
    reg, _ = collector({"h": h}, [m])
    assert reg.get_sample_value("bpfwatch_size_bytes_bucket", {"le": "32.0"}) == 1
    assert reg.get_sample_value("bpfwatch_size_bytes_count") == 1
    assert reg.get_sample_value("bpfwatch_size_bytes_sum") is None
    h._items = [(ctypes.c_uint32(2), ctypes.c_uint64(1)), (ctypes.c_uint32(5), ctypes.c_uint64(1))]
    assert reg.get_sample_value("bpfwatch_size_bytes_bucket", {"le": "32.0"}) == 2
    h._items = [(ctypes.c_uint32(2), ctypes.c_uint64(3))]  # slot 5 evicted: bounds and its count stay
    assert reg.get_sample_value("bpfwatch_size_bytes_bucket", {"le": "32.0"}) == 4
    assert reg.get_sample_value("bpfwatch_map_evictions_total", {"tracer": "fake", "map": "h"}) == 1


def test_linear_histogram_bounds():
    assert linear_buckets({0: 1, 2: 4}, width=10, multiplier=0.001, top=2) == [
        (0.01, 1), (0.02, 1), (0.03, 5), (math.inf, 5)]
    m = Metric("q", "Queue.", map="h", kind="histogram", buckets="linear", bucket_width=5)
    reg, _ = collector({"h": FakeMap([(1, 2)])}, [m])
    assert reg.get_sample_value("bpfwatch_q_bucket", {"le": "5.0"}) == 0
    assert reg.get_sample_value("bpfwatch_q_bucket", {"le": "10.0"}) == 2


def test_per_process_labels_are_summed_away_unless_asked():
    m = Metric("reads_bytes", "Reads.", map="h", kind="histogram", buckets="exp2",
               labels=(Label("comm", "comm", "comm"),))
    items = [(ProcKey(b"cat", 3), 2), (ProcKey(b"dd", 3), 5), (ProcKey(b"dd\xff\n", 1), 1)]
    reg, _ = collector({"h": FakeMap(items)}, [m])
    assert reg.get_sample_value("bpfwatch_reads_bytes_bucket", {"le": "8.0"}) == 8
    reg, _ = collector({"h": FakeMap(items)}, [m], per_process=True)
    assert reg.get_sample_value("bpfwatch_reads_bytes_bucket", {"comm": "dd", "le": "8.0"}) == 5
    assert reg.get_sample_value("bpfwatch_reads_bytes_bucket",  # escaped: the bytes come back
                                {"comm": "dd\\xff\\x0a", "le": "8.0"}) == 1


def test_max_series_folds_the_rest_into_other_and_keeps_admitted_series():
    m = Metric("errors_total", "Errors.", map="errs", labels=(Label("errno", "", "errno_name"),))
    emap = FakeMap([(ctypes.c_uint32(e), ctypes.c_uint64(100 - e)) for e in (1, 2, 3)])
    reg, _ = collector({"errs": emap}, [m], max_series=2)
    value = lambda e: reg.get_sample_value("bpfwatch_errors_total", {"errno": e})
    assert (value("EPERM"), value("ENOENT"), value("other")) == (99, 98, 97)
    assert reg.get_sample_value("bpfwatch_series_folded", {"tracer": "fake", "metric": "errors_total"}) == 1
    # a new big series does not push an admitted one into `other`
    emap._items.append((ctypes.c_uint32(4), ctypes.c_uint64(1000)))
    assert (value("EPERM"), value("ENOENT"), value("other")) == (99, 98, 1097)
    assert reg.get_sample_value("bpfwatch_series_folded", {"tracer": "fake", "metric": "errors_total"}) == 2


def test_self_telemetry_and_unattached_tracers():
    reg = CollectorRegistry()
    attached = Target(spec(name="a"), "raw_tracepoint", {}.__getitem__,
                      lambda: {"events_dropped": 3, "map_update_failures": 4})
    missing = Target(spec(name="b"), why="no usable hook")
    MapCollector([attached, missing], registry=reg, version="0.1.0")
    assert reg.get_sample_value("bpfwatch_program_attached", {"tracer": "a", "hook": "raw_tracepoint"}) == 1
    assert reg.get_sample_value("bpfwatch_program_attached", {"tracer": "b", "hook": "none"}) == 0
    assert reg.get_sample_value("bpfwatch_events_dropped_total", {"tracer": "a"}) == 3
    assert reg.get_sample_value("bpfwatch_map_update_failures_total", {"tracer": "a"}) == 4
    assert reg.get_sample_value("bpfwatch_scrape_duration_seconds") >= 0
    assert "bpfwatch_build_info{" in generate_latest(reg).decode()


def test_a_failing_map_read_is_counted_not_fatal():
    reg, _ = collector({}, [SYSCALLS])
    assert reg.get_sample_value("bpfwatch_map_read_errors_total", {"tracer": "fake", "map": "syscalls"}) == 1
    assert reg.get_sample_value("bpfwatch_program_attached", {"tracer": "fake", "hook": "tracepoint"}) == 1


def test_number_reads_scalars_fields_and_percpu_copies():
    assert number(7) == 7
    assert number(ctypes.c_uint64(7)) == 7
    assert number(Stats(3, 9), "total_ns") == 9
    assert number((ctypes.c_uint64 * 3)(1, 2, 3)) == 6
    assert number([Stats(1, 0), Stats(2, 0)], "count") == 3


def test_histogram_sums_fold_like_their_buckets():
    m = Metric("reads_bytes", "Reads.", map="h", kind="histogram", buckets="exp2", sum_map="s",
               labels=(Label("comm", "comm", "comm"),))
    h = FakeMap([(ProcKey(b"a", 1), 1), (ProcKey(b"b", 2), 1), (ProcKey(b"c", 3), 1)])
    s = FakeMap([(ProcKey(b"a", 0), 1), (ProcKey(b"b", 0), 3), (ProcKey(b"c", 0), 5)])
    reg, _ = collector({"h": h, "s": s}, [m], per_process=True, max_series=2)
    assert reg.get_sample_value("bpfwatch_reads_bytes_sum", {"comm": "a"}) == 1
    assert reg.get_sample_value("bpfwatch_reads_bytes_sum", {"comm": "b"}) == 3
    assert reg.get_sample_value("bpfwatch_reads_bytes_sum", {"comm": "other"}) == 5
    assert reg.get_sample_value("bpfwatch_reads_bytes_count", {"comm": "other"}) == 1
