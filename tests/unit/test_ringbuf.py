"""The ring buffer consumer over buffers laid out as the kernel's: records
walked in order, busy ones waited for, discarded ones skipped, space given
back, and each record decoded with whole char arrays."""
import ctypes
import mmap
import struct

from tracers import decoders
from tracers.runtime import ringbuf


class Event(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("ret", ctypes.c_int32),
                ("flag", ctypes.c_uint8), ("comm", ctypes.c_char * 16), ("addr", ctypes.c_uint8 * 4),
                ("cgroup_id", ctypes.c_uint64)]


SIZE = 4 * mmap.PAGESIZE
PAGE = mmap.PAGESIZE


def ring(events, *, busy=(), discarded=(), start=0):
    """(consumer page, producer page + data mapped twice) holding `events` from `start`."""
    consumer, producer = bytearray(PAGE), bytearray(PAGE + 2 * SIZE)
    struct.pack_into("=Q", consumer, 0, start)
    pos = start
    for i, event in enumerate(events):
        body = bytes(event)
        length = len(body) | (ringbuf.BUSY_BIT if i in busy else 0) | \
            (ringbuf.DISCARD_BIT if i in discarded else 0)
        frame = struct.pack("=II", length, 0) + body.ljust((len(body) + 7) & ~7, b"\0")
        for copy in (0, SIZE):  # the kernel maps the data twice: a wrapping record reads on
            at = PAGE + copy + (pos & (SIZE - 1))
            producer[at:at + len(frame)] = frame[:PAGE + 2 * SIZE - at]
        pos += len(frame)
    struct.pack_into("=Q", producer, 0, pos)
    return consumer, producer


def event(i):
    e = Event(ts=1000 + i, pid=i, ret=-i, flag=1, addr=(10, 0, 0, i), cgroup_id=2 ** 40 + i)
    comm = b"w%d\0zz" % i  # bytes after the NUL: ctypes would not copy them
    ctypes.memmove(ctypes.addressof(e) + Event.comm.offset, comm, len(comm))
    return e


def read(consumer, producer):
    got = []
    reader = ringbuf.Reader.over(consumer, producer, SIZE, ringbuf.Decoder(Event))
    consumed = reader.drain(got.append)
    return got, consumed, struct.unpack_from("=Q", consumer)[0]


def test_records_decode_like_ctypes_with_whole_char_arrays():
    consumer, producer = ring([event(i) for i in range(5)])
    got, consumed, position = read(consumer, producer)
    assert [r.pid for r in got] == list(range(5))
    r = got[3]
    assert (r.ts, r.ret, r.flag, r.cgroup_id) == (1003, -3, 1, 2 ** 40 + 3)
    assert decoders.raw_field(r, "comm") == b"w3\0zz".ljust(16, b"\0")  # past the NUL too
    assert decoders.comm(decoders.raw_field(r, "comm")) == "w3"
    assert bytes(r.addr) == bytes([10, 0, 0, 3])
    assert consumed == position == 5 * ((8 + ctypes.sizeof(Event) + 7) & ~7)


def test_busy_record_stops_the_walk_and_discarded_ones_are_skipped():
    consumer, producer = ring([event(i) for i in range(6)], busy={4}, discarded={1})
    got, consumed, position = read(consumer, producer)
    assert [r.pid for r in got] == [0, 2, 3]
    assert position == 4 * ((8 + ctypes.sizeof(Event) + 7) & ~7)  # up to the busy one, not past


def test_records_wrapping_around_the_end_of_the_ring():
    frame = (8 + ctypes.sizeof(Event) + 7) & ~7
    start = SIZE * 3 - 2 * frame - 8  # positions only grow: the third lap, near its end
    consumer, producer = ring([event(i) for i in range(5)], start=start)
    got, consumed, position = read(consumer, producer)
    assert [r.pid for r in got] == list(range(5)) and position == start + 5 * frame


def test_short_record_reads_zeros_after_it():
    decoder = ringbuf.Decoder(Event)
    r = decoder.decode_bytes(bytes(event(7))[:12])
    assert (r.ts, r.pid, r.ret, r.cgroup_id) == (1007, 7, 0, 0)


def test_structs_without_a_struct_code_fall_back_to_ctypes():
    class Nested(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint64), ("words", ctypes.c_uint32 * 4)]
    decoder = ringbuf.Decoder(Nested)
    assert decoder.frame is None
    r = decoder.decode_bytes(bytes(Nested(a=5, words=(1, 2, 3, 4))))
    assert r.a == 5 and list(r.words) == [1, 2, 3, 4]
