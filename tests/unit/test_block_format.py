"""biolatency/biosnoop pure parts: --disk lookup, histogram deltas, records."""
import argparse
import ctypes

import pytest

from tracers import decoders
from tracers.spec import UsageError

from tracers.tools import biolatency
from tracers.tools import biosnoop
from tracers.tools import _block


@pytest.fixture
def sysfs(tmp_path):
    for name, dev, partition in (("loop3", "7:3", False), ("nvme0n1", "259:0", False),
                                 ("nvme0n1p1", "259:1", True), ("junk", "x:y", False)):
        d = tmp_path / "class" / "block" / name
        d.mkdir(parents=True)
        (d / "dev").write_text(dev + "\n")
        if partition:
            (d / "partition").write_text("1\n")
    return str(tmp_path)


@pytest.mark.parametrize("name, dev", [("loop3", 7 << 20 | 3), ("/dev/loop3", 7 << 20 | 3),
                                       ("nvme0n1", 259 << 20)])
def test_disk_dev(sysfs, name, dev):
    assert _block.disk_dev(name, sysfs=sysfs) == dev


@pytest.mark.parametrize("name, words", [
    ("nvme0n1p1", "is a partition"), ("sdz", "no block device named 'sdz'"),
    ("junk", "no block device"), ("../loop3", "disk name"), ("", "disk name"), ("/dev/", "disk name"),
])
def test_bad_disk(sysfs, name, words):
    with pytest.raises(UsageError, match=words):
        _block.disk_dev(name, sysfs=sysfs, prog="bpfwatch biolatency")


def test_insert_hook_is_skipped_unless_needed():
    args = argparse.Namespace(queued=False, pid=None, comm=None)
    assert _block.skip_hooks(args, needs_issuer=False) == {"on_insert"}
    assert _block.skip_hooks(args, needs_issuer=True) == set()
    assert _block.skip_hooks(argparse.Namespace(queued=True, pid=None, comm=None), False) == set()
    assert _block.skip_hooks(argparse.Namespace(queued=False, pid=7, comm=None), False) == set()


def test_defines():
    args = argparse.Namespace(queued=True, disk=None, milliseconds=True, disks=True, flags=False, per_container=False)
    assert biolatency.TRACER().defines(args) == {"QUEUED": 1, "MILLISECONDS": 1, "PER_DISK": 1}
    snoop = argparse.Namespace(queued=False, disk=None)
    assert biosnoop.TRACER().defines(snoop) == {"BIOSNOOP": 1}


class HistKey(ctypes.Structure):  # struct hist_key in bpf_c/block.bpf.c
    _fields_ = [("dev", ctypes.c_uint32), ("slot", ctypes.c_uint32), ("rwbs", ctypes.c_char * 8)]


def DistKey(dev, rwbs, slot):
    return HistKey(dev=dev, slot=slot, rwbs=rwbs)


def test_deltas_keep_only_what_grew():
    hist = biolatency.histogram(argparse.Namespace(disks=True, flags=True, milliseconds=False, per_container=False))
    dev1, dev2 = 259 << 20 | 998, 259 << 20 | 999
    before = hist.read([(DistKey(dev1, b"R", 3), 5), (DistKey(dev1, b"R", 4), 1)])
    now = hist.read([(DistKey(dev1, b"R", 3), 7), (DistKey(dev1, b"R", 4), 1),
                     (DistKey(dev1, b"R", 5), 2), (DistKey(dev2, b"W", 1), 1)])
    assert hist.rows(now, before) == {("259:998", "R"): {3: 2, 5: 2}, ("259:999", "W"): {1: 1}}
    assert hist.rows(before, before) == {}


def test_records_and_text_per_disk_and_flags():
    hist = biolatency.histogram(argparse.Namespace(disks=True, flags=True, milliseconds=False, per_container=False))
    dev = 259 << 20 | 999  # no such device: named MAJ:MIN
    rows = hist.rows(hist.read([(DistKey(dev, b"WS", 1), 2), (DistKey(dev, b"WS", 4), 3),
                                (DistKey(dev, b"R", 0), 1)]), {})
    assert hist.records(rows) == [
        {"disk": "259:999", "flags": "R", "unit": "usecs", "total": 1,
         "buckets": [{"low": 0, "high": 0, "count": 1}]},
        {"disk": "259:999", "flags": "WS", "unit": "usecs", "total": 5,
         "buckets": [{"low": 1, "high": 1, "count": 2}, {"low": 8, "high": 15, "count": 3}]},
    ]
    text = hist.text(rows)[0]
    assert "disk = 259:999, flags = WS" in text
    assert "         8 -> 15         : 3        |****************************************|" in text


def test_plain_histogram_has_no_heading():
    hist = biolatency.histogram(argparse.Namespace(disks=False, flags=False, milliseconds=True, per_container=False))
    rows = hist.rows(hist.read([(DistKey(0, b"", 2), 4)]), {})
    assert hist.records(rows) == [{"unit": "msecs", "total": 4, "buckets": [{"low": 2, "high": 3, "count": 4}]}]
    assert hist.text(rows)[0].startswith("     msecs")


class Event(ctypes.Structure):  # struct bio_event in bpf_c/block.bpf.c
    _fields_ = [("ts", ctypes.c_uint64), ("sector", ctypes.c_uint64), ("latency_ns", ctypes.c_uint64),
                ("queue_ns", ctypes.c_uint64), ("cgroup_id", ctypes.c_uint64), ("dev", ctypes.c_uint32), ("pid", ctypes.c_uint32),
                ("bytes", ctypes.c_uint32), ("error", ctypes.c_int32), ("comm", ctypes.c_char * 16),
                ("rwbs", ctypes.c_char * 8)]


def test_biosnoop_record_and_line():
    e = Event(ts=1_000_000_000, sector=800, latency_ns=1_234_567, queue_ns=5_000, dev=259 << 20 | 999,
              pid=7, bytes=4096, error=-5, comm=b"dd", rwbs=b"WS", cgroup_id=77)
    rec = biosnoop.to_record(e, 10.0)
    assert rec == {"time": 11.0, "pid": 7, "comm": "dd", "cgroup_id": 77, "disk": "259:999", "rwbs": "WS", "sector": 800,
                   "bytes": 4096, "latency_ms": 1.235, "queue_ms": 0.005, "error": "EIO"}
    line = biosnoop.format_line(rec, queued=True)
    assert line.endswith("dd               7       259:999   WS             800     4096    0.005    1.235  EIO")


def test_biosnoop_comm_is_escaped():
    # a tab, a byte that is not UTF-8 and a real U+FFFD stay apart and come back
    e = Event(dev=259 << 20 | 999, comm=b"k\tw\xff\xef\xbf\xbd", rwbs=b"R")
    rec = biosnoop.to_record(e, 0.0)
    assert rec["comm"] == "k\\x09w\\xff\ufffd"
    assert decoders.unescape(rec["comm"]) == b"k\tw\xff\xef\xbf\xbd"
