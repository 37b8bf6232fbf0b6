"""The escaped form of user-space bytes (issue 16, item 8): every byte is
recoverable from the JSON, and a tab never looks like a real U+FFFD."""
import ctypes
import json

import pytest

from tracers import decoders


@pytest.mark.parametrize("raw, shown", [
    (b"/etc/passwd\0stale bytes after the NUL", "/etc/passwd"),
    (b"caf\xc3\xa9 \xef\xbf\xbd", "caf\u00e9 \ufffd"),        # a real U+FFFD stays one
    (b"a\tb", "a\\x09b"),                                      # a control: its byte
    (b"\xff\xfeok", "\\xff\\xfeok"),                           # not UTF-8: its bytes
    (b"back\\slash\\x41", "back\\\\slash\\\\x41"),             # the escape itself escaped
    (b"evil\xe2\x80\xaetxt", "evil\\xe2\\x80\\xaetxt"),          # bidi override
    (b"line\xe2\x80\xa8sep\x7f\xc2\x85", "line\\xe2\\x80\\xa8sep\\x7f\\xc2\\x85"),
    (b"\xe6\x97\xa5\xe6\x9c\xac", "\u65e5\u672c"),
    (b"cut\xe6\x97", "cut\\xe6\\x97"),                         # a character cut in half
])
def test_escaped_and_back(raw, shown):
    assert decoders.escaped(raw) == shown
    assert decoders.unescape(shown) == raw.split(b"\0")[0]
    assert decoders.unescape(json.loads(json.dumps(shown))) == raw.split(b"\0")[0]


def test_tab_and_replacement_character_differ():
    assert decoders.escaped(b"a\tb") != decoders.escaped("a\ufffdb".encode())


def test_every_byte_round_trips():
    raw = bytes(range(1, 256)) * 2 + "日本\ufffd".encode()
    assert decoders.unescape(decoders.escaped(raw)) == raw
    assert all(c.isprintable() for c in decoders.escaped(raw))


def test_escaped_takes_ctypes_arrays_and_refuses_text():
    assert decoders.escaped(ctypes.create_string_buffer(b"ba\x1bsh", 16)) == "ba\\x1bsh"
    with pytest.raises(decoders.DecodeError):
        decoders.escaped("already text")


@pytest.mark.parametrize("raw", [b"a\tb\xff\xef\xbf\xbd", bytes(range(1, 16)), b"\\x41\xff\xe2\x80\xae"])
def test_comm_is_escaped_too_and_every_byte_comes_back(raw):
    # comm labels and the tracers' comm fields: as escaped(), bounded by TASK_COMM_LEN
    shown = decoders.comm(raw.ljust(decoders.TASK_COMM_LEN, b"\0"))
    assert shown == decoders.escaped(raw) and decoders.unescape(shown) == raw
