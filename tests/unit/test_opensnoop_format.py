"""opensnoop's pure parts: O_ flags, the --path-prefix words, event records."""
import ctypes

import pytest

from tracers.spec import UsageError

from tracers import decoders
from tracers.tools import opensnoop


@pytest.mark.parametrize("flags, text", [
    (0, "O_RDONLY"),
    (0o1, "O_WRONLY"),
    (0o2 | 0o100 | 0o200, "O_RDWR|O_CREAT|O_EXCL"),
    (0o1 | 0o100 | 0o1000 | 0o2000000, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"),
    (0o1 | 0o4010000, "O_WRONLY|O_SYNC"),          # O_SYNC includes O_DSYNC's bit
    (0o1 | 0o10000, "O_WRONLY|O_DSYNC"),
    (0o2 | 0o20200000, "O_RDWR|O_TMPFILE"),        # O_TMPFILE includes O_DIRECTORY
    (0o200000 | 0o2000000, "O_RDONLY|O_DIRECTORY|O_CLOEXEC"),
    (0o10000000, "O_RDONLY|O_PATH"),
    (0o40000 | 0o4000 | 0o2000, "O_RDONLY|O_APPEND|O_NONBLOCK|O_DIRECT"),
    (0o40000000 | 1, "O_WRONLY|0x800000"),         # unknown bit: hex, not dropped
    (3, "O_ACCMODE"),
])
def test_open_flags(flags, text):
    assert opensnoop.open_flags(flags) == text


def test_prefix_words_are_little_endian_and_padded():
    out = opensnoop.prefix_defines("/etc/")
    assert out == {"PREFIX_LEN": 5, "PREFIX_0": int.from_bytes(b"/etc/\0\0\0", "little"),
                   "PREFIX_1": 0, "PREFIX_2": 0, "PREFIX_3": 0}


def test_prefix_of_32_bytes_fills_four_words():
    prefix = "/abcdefghijklmnopqrstuvwxyz01234"
    out = opensnoop.prefix_defines(prefix)
    raw = prefix.encode()
    assert out["PREFIX_LEN"] == 32
    assert [out[f"PREFIX_{i}"] for i in range(4)] == \
        [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(4)]


def test_prefix_length_counts_bytes_not_characters():
    assert opensnoop.prefix_defines("/é")["PREFIX_LEN"] == 3
    with pytest.raises(UsageError, match="at most 32 bytes, got 34"):
        opensnoop.prefix_defines("/" + "é" * 16 + "x")


@pytest.mark.parametrize("bad, words", [("", "must not be empty"), ("/" + "x" * 32, "at most 32")])
def test_bad_prefix(bad, words):
    with pytest.raises(UsageError, match=words):
        opensnoop.prefix_defines(bad)


class Event(ctypes.Structure):  # struct open_event in bpf_c/opensnoop.bpf.c
    _fields_ = [("ts", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("cgroup_id", ctypes.c_uint64),
                ("pid", ctypes.c_uint32), ("tid", ctypes.c_uint32), ("ret", ctypes.c_int32),
                ("uid", ctypes.c_uint32), ("call", ctypes.c_uint32), ("flags_unread", ctypes.c_uint16),
                ("path_truncated", ctypes.c_uint16), ("comm", ctypes.c_char * 16),
                ("path", ctypes.c_char * opensnoop.PATH_LEN)]


def test_record_of_a_failed_open_with_a_hostile_path():
    e = Event(ts=2_000_000_000, flags=0o2000000, pid=42, tid=43, ret=-2, uid=1000, call=3,
              comm=b"cat", path=b"/tmp/a\nb\x1b[31m\xff", cgroup_id=5)
    rec = opensnoop.to_record(e, boot_offset=100.0)
    assert rec == {"time": 102.0, "pid": 42, "tid": 43, "uid": 1000, "cgroup_id": 5, "comm": "cat",
                   "call": "openat2",
                   "flags": 0o2000000, "flags_text": "O_RDONLY|O_CLOEXEC",
                   "path": "/tmp/a\\x0ab\\x1b[31m\\xff", "path_truncated": False,
                   "ret": -2, "error": "ENOENT"}
    assert decoders.unescape(rec["path"]) == b"/tmp/a\nb\x1b[31m\xff"
    line = opensnoop.format_line(rec)
    assert "\n" not in line and line.endswith("O_RDONLY|O_CLOEXEC           /tmp/a\\x0ab\\x1b[31m\\xff")
    assert " -1 ENOENT " in line


def test_record_of_a_successful_open():
    rec = opensnoop.to_record(Event(ret=3, call=2, path=b"/etc/passwd"), 0.0)
    assert rec["error"] is None and rec["call"] == "openat"
    assert "   3         O_RDONLY" in opensnoop.format_line(rec)


def test_unread_flags_and_a_cut_path_are_marked():
    rec = opensnoop.to_record(Event(ret=3, call=3, flags_unread=1, path_truncated=1,
                                    path=b"/" + b"d" * (opensnoop.PATH_LEN - 2)), 0.0)
    assert (rec["flags"], rec["flags_text"], rec["path_truncated"]) == (None, "?", True)
    assert opensnoop.format_line(rec).endswith("d…")


@pytest.mark.parametrize("value, name", [(0, "ok"), (2, "ENOENT"), (-13, "EACCES"), (255, "E255")])
def test_errno_result_decoder(value, name):
    assert decoders.DECODERS["errno_result"](value) == name
