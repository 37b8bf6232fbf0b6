"""Ring buffer events read in Python without a ctypes object or a C
callback per event: the map is mmapped, records are walked in batches, and
each is decoded by a struct.Struct built once from BCC's event class.

Records are named tuples: attribute access as on BCC's ctypes event, but
char and u8 arrays stay whole `bytes` (decoders.raw_field returns them).
"""
from __future__ import annotations

import collections
import ctypes
import mmap
import platform
import select
import struct
import time
from typing import Callable

BUSY_BIT = 1 << 31  # a record reserved, not yet committed (include/uapi/linux/bpf.h)
DISCARD_BIT = 1 << 30
HEADER = struct.Struct("=II")  # length with the two bits, page offset
POSITION = struct.Struct("=Q")
# Reading records with plain loads after the producer position is only
# ordered on CPUs whose loads are not reordered with loads (x86, s390);
# elsewhere libbpf's consumer (with its barriers) reads for us.
ORDERED_LOADS = platform.machine() in ("x86_64", "AMD64", "i386", "i686", "s390x")

_SCALARS = {"b": "b", "B": "B", "h": "h", "H": "H", "i": "i", "I": "I", "l": "q", "L": "Q",
            "q": "q", "Q": "Q", "c": "c", "?": "?", "P": "Q"}
_SIGNED_BY_SIZE = {1: "b", 2: "h", 4: "i", 8: "q"}
_UNSIGNED_BY_SIZE = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _code(ctype) -> str | None:
    """The struct code of one ctypes field, or None when a tuple of values
    would not read like the ctypes field (nested structs, int arrays)."""
    if issubclass(ctype, ctypes.Array):
        if ctype._type_ in (ctypes.c_char, ctypes.c_ubyte, ctypes.c_byte):
            return f"{ctypes.sizeof(ctype)}s"  # whole bytes, NULs included
        return None
    code = getattr(ctype, "_type_", None)
    if not isinstance(code, str) or code not in _SCALARS:
        return None
    if code in "lLP":  # sizes as this machine has them, standard codes
        table = _SIGNED_BY_SIZE if code == "l" else _UNSIGNED_BY_SIZE
        return table[ctypes.sizeof(ctype)]
    return _SCALARS[code]


class Decoder:
    """Records of one BCC event class (a ctypes Structure).

    The Struct reads a whole ring buffer frame, the 8-byte record header
    first: records are named tuples whose two leading (renamed, private)
    fields hold that header, so a batch of frames decodes in one
    iter_unpack call with no per-record slicing."""

    def __init__(self, event_class: type[ctypes.Structure]):
        self.size = ctypes.sizeof(event_class)
        self.frame_size = (HEADER.size + self.size + 7) & ~7  # what one record takes in the ring
        names, fmt, at = [], ["=II"], 0
        for name, ctype, *_ in event_class._fields_:
            code = _code(ctype)
            if code is None:
                self.frame = None  # a ctypes copy per record instead
                self.record = event_class
                self.decode = lambda buf, offset: event_class.from_buffer_copy(buf, offset)
                return
            offset = getattr(event_class, name).offset
            if offset > at:
                fmt.append(f"{offset - at}x")
            fmt.append(code)
            names.append(name)
            at = offset + ctypes.sizeof(ctype)
        fmt.append(f"{self.frame_size - HEADER.size - at}x")
        self.frame = struct.Struct("".join(fmt))
        self.record = collections.namedtuple(event_class.__name__ or "event", ["_", "_", *names],
                                             rename=True)
        unpack_from, new, record = self.frame.unpack_from, tuple.__new__, self.record
        self.decode = lambda buf, offset: new(record, unpack_from(buf, offset - HEADER.size))

    def decode_bytes(self, data: bytes):
        """One record from its bytes alone (shorter ones: zeros after them)."""
        padded = bytes(HEADER.size) + bytes(data[:self.size]).ljust(self.frame_size, b"\0")
        return self.decode(padded, HEADER.size)


def decoder_for(table) -> Decoder:
    """The decoder of a BCC RingBuf or PerfEventArray table's events."""
    from bcc.table import _get_event_class
    if getattr(table, "_event_class", None) is None:
        table._event_class = _get_event_class(table)
    return Decoder(table._event_class)


class Reader:
    """A ring buffer map, mmapped: drain() hands every committed record,
    decoded, to emit(record) and frees its space; wait() sleeps until the
    kernel wakes us or the timeout passes.

    Data pages are mapped twice by the kernel, so a record that wraps
    around the end is still contiguous here."""

    CHUNK = 256  # records decoded per iter_unpack; their space is freed after each

    def __init__(self, map_fd: int, size: int, decoder: Decoder):
        page = mmap.PAGESIZE
        if size <= 0 or size & (size - 1) or size % page:
            raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
        self._use(mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE),
                  mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page),
                  size, decoder)
        self.poller = select.epoll()
        self.poller.register(map_fd, select.EPOLLIN)

    @classmethod
    def over(cls, consumer, producer, size: int, decoder: Decoder) -> "Reader":
        """A reader over plain buffers laid out as the kernel's (tests)."""
        reader = cls.__new__(cls)
        reader._use(consumer, producer, size, decoder)
        return reader

    def _use(self, consumer, producer, size: int, decoder: Decoder) -> None:
        self.consumer, self.producer, self.decoder = consumer, producer, decoder
        self.mask = size - 1
        self.data = mmap.PAGESIZE  # data offset inside the producer mapping
        self.position = POSITION.unpack_from(consumer)[0]

    def close(self) -> None:
        self.poller.close()
        self.consumer.close()
        self.producer.close()

    def wait(self, timeout: float) -> None:
        self.poller.poll(timeout)

    def drain(self, emit: Callable, limit: int | None = None) -> int:
        """Committed records, oldest first, up to `limit` bytes (one ring's
        worth: a flood still returns); returns the bytes consumed."""
        producer, data, mask, decoder = self.producer, self.data, self.mask, self.decoder
        frame, step = decoder.frame, decoder.frame_size
        want = decoder.size  # the header of a committed full-size record
        record, new = decoder.record, tuple.__new__
        start = cons = self.position
        end = min(POSITION.unpack_from(producer)[0], start + (limit or mask + 1))
        try:
            while cons < end:
                chunk = min((end - cons) // step, self.CHUNK) if frame else 0
                if chunk:
                    at = data + (cons & mask)
                    for values in frame.iter_unpack(producer[at:at + chunk * step]):
                        if values[0] != want:
                            break  # busy, discarded or another size: one at a time below
                        emit(new(record, values))
                        cons += step
                    else:
                        self._release(cons)
                        continue
                at = data + (cons & mask)
                length = HEADER.unpack_from(producer, at)[0]
                if length & BUSY_BIT:
                    break  # not committed yet: later records wait for it
                size = length & ~(BUSY_BIT | DISCARD_BIT)
                if not length & DISCARD_BIT:
                    body = at + HEADER.size
                    emit(decoder.decode(producer, body) if size >= want
                         else decoder.decode_bytes(producer[body:body + size]))
                cons += (size + HEADER.size + 7) & ~7
                self._release(cons)
        finally:
            self._release(cons)
        return cons - start

    def _release(self, position: int) -> None:
        """Give the space up to `position` back to the kernel."""
        if position != self.position:
            POSITION.pack_into(self.consumer, 0, position)
            self.position = position


def pace(reader: Reader, consume: Callable[[], int], until: float | None, stop: Callable[[], bool],
         batch_done: Callable[[], None], quiet_s: float = 0.05, gather_s: float = 0.01) -> None:
    """Consume until `until` (monotonic) or stop(): wait for the kernel's
    wake-up (it wakes us when we had caught up) or `quiet_s`, then, while
    events keep coming, pause up to `gather_s` after each batch so the next
    one is bigger: one wake-up per batch instead of one per event. The pause
    is cut to the time a quarter of the ring takes to fill at the rate the
    last batch came in, so big or fast events never fill it meanwhile."""
    room = (reader.mask + 1) // 4
    previous = None  # when the last batch with events ended
    while not stop():
        now = time.monotonic()
        if until is not None and now >= until:
            return
        reader.wait(quiet_s if until is None else max(0.0, min(quiet_s, until - now)))
        got = consume()
        if not got:
            previous = None
            continue
        batch_done()
        ended = time.monotonic()
        if previous is not None:  # a stream, not a lone event: its rate is known
            pause = min(gather_s, room * (ended - previous) / got)
            if until is not None:
                pause = min(pause, until - ended)
            if pause >= 0.0005:
                time.sleep(pause)
        previous = ended
