"""The summary loop's declared tables and histograms against fake maps:
decoding shared with the exporter, deltas, eviction, top-N, text and JSON."""
import ctypes
import socket

from tracers.mapdata import NUMBER
from tracers.summary import Column, Histogram, Table, count, label
from tracers.tools import syscount
from tracers import options


class Stats(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("total_ns", ctypes.c_uint64)]


class ProcKey(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("nr", ctypes.c_uint32)]


class ProcStats(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("total_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16)]


def syscount_table(*argv) -> Table:
    tracer = syscount.TRACER()
    return tracer.tables(options.build_parser(tracer).parse_args(list(argv)))[0]


def test_per_cpu_values_are_summed_and_keys_decoded_as_the_exporter_does():
    table = syscount_table("-L")
    items = [(0, [Stats(2, 200), Stats(3, 300)]), (1, [Stats(0, 0), Stats(0, 0)]),
             (ctypes.c_int(257), [Stats(7, 70), Stats(0, 0)])]
    assert table.read(items) == {("read",): (5, 500), ("openat",): (7, 70)}


def test_deltas_never_go_negative_and_an_evicted_row_counts_from_zero():
    table = syscount_table()
    before = {("read",): (10,), ("write",): (5,), ("close",): (9,)}
    now = {("read",): (15,), ("write",): (5,), ("openat",): (1,), ("close",): (2,)}
    assert table.rows(now, before) == [{"syscall": "read", "count": 5},
                                       {"syscall": "close", "count": 2},
                                       {"syscall": "openat", "count": 1}]


def test_top_caps_rows_after_sorting_by_the_first_count():
    table = syscount_table("-T", "2")
    now = {(n,): (c,) for n, c in (("a", 1), ("b", 30), ("c", 20))}
    assert [r["syscall"] for r in table.rows(now, {})] == ["b", "c"]


def test_per_process_labels_come_from_key_and_value_fields():
    table = syscount_table("-P", "-L")
    value = ProcStats(3, 4000, b"b\xffd")
    rows = table.rows((table.read([(ProcKey(42, 0), value)]), table.exact.read([(0, [Stats(3, 4000)])])), ())
    assert rows == [{"pid": 42, "comm": "b\\xffd", "syscall": "read", "count": 3, "total_ns": 4000}]
    text = table.text(rows)
    assert text[0].split() == ["PID", "COMM", "SYSCALL", "COUNT", "TIME", "(us)"]
    assert text[1].split() == ["42", "b\\xffd", "read", "3", "4.0"]


def test_a_key_no_decoder_names_is_left_out():
    table = Table("t", "m", (label("port", "PORT", 8, "", "port"), count("n", "N", 4)))
    assert table.read([(socket.htons(53), 4), (ctypes.c_int(70000), 9)]) == {("53",): (4,)}


def test_histograms_per_id_take_deltas_and_print_bcc_style():
    class Key(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint32), ("slot", ctypes.c_uint32)]
    hist = Histogram("dist_pid", "usecs", by=(label("pid", "pid", 0, "pid", NUMBER),), slot_field="slot")
    before = hist.read([(Key(7, 3), 2)])
    now = hist.read([(Key(7, 3), 5), (Key(7, 4), 1), (Key(9, 1), 0)])
    delta = hist.rows(now, before)
    assert delta == {(7,): {3: 3, 4: 1}}
    assert hist.json(delta) == {"histograms": [{"pid": 7, "unit": "usecs", "total": 4, "buckets": [
        {"low": 4, "high": 7, "count": 3}, {"low": 8, "high": 15, "count": 1}]}]}
    assert hist.text(delta)[0].startswith("pid = 7\n")
    assert hist.text({}) == ["(nothing seen)"]


def test_columns_align_labels_left_and_counts_right():
    table = Table("t", "m", (label("x", "X", 4), count("n", "N", 5), Column("s", "S", 6, text_scale=0.5, text_format=".1f")))
    assert table.text([{"x": "ab", "n": 3, "s": 5}]) == ["X        N      S", "ab       3    2.5"]


def test_what_lru_evictions_took_comes_back_as_an_other_row_per_syscall():
    table = syscount_table("-P")
    comm = b"w"
    # exact per-syscall totals (per-CPU array) against per-process rows (LRU)
    before = (table.read([(ProcKey(1, 0), ProcStats(5, 0, comm))]),
              table.exact.read([(0, [Stats(5, 0)]), (1, [Stats(0, 0)])]))
    # pid 1's row was evicted and re-inserted (count restarted at 2); pid 2
    # made 3 reads and pid 3's 4 reads were evicted before anyone saw them
    now = (table.read([(ProcKey(1, 0), ProcStats(2, 0, comm)), (ProcKey(2, 0), ProcStats(3, 0, comm))]),
           table.exact.read([(0, [Stats(12, 0), Stats(6, 0)]), (1, [Stats(0, 0)])]))
    rows = table.rows(now, before)
    assert rows == [{"pid": 2, "comm": "w", "syscall": "read", "count": 3},
                    {"pid": 1, "comm": "w", "syscall": "read", "count": 2},
                    {"pid": "other", "comm": "other", "syscall": "read", "count": 8}]
    assert sum(r["count"] for r in rows) == 18 - 5  # the exact total of the interval
