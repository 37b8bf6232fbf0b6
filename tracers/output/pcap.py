"""Classic libpcap files (what tcpdump -w writes): microsecond timestamps, native byte order.

https://www.tcpdump.org/manpages/pcap-savefile.5.html
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator, NamedTuple

MAGIC = 0xA1B2C3D4  # microsecond resolution; readers detect the byte order from it
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link-layer header
SNAPLEN = 262144
_HEADER = struct.Struct("=IHHiIII")  # magic, 2, 4, thiszone, sigfigs, snaplen, linktype
_RECORD = struct.Struct("=IIII")  # ts_sec, ts_usec, incl_len, orig_len


class Packet(NamedTuple):
    ts_sec: int
    ts_usec: int
    data: bytes
    orig_len: int


class PcapWriter:
    def __init__(self, out: BinaryIO, linktype: int = LINKTYPE_ETHERNET, snaplen: int = SNAPLEN):
        self.out, self.snaplen, self.count = out, snaplen, 0
        out.write(_HEADER.pack(MAGIC, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> None:
        """One packet; ts_ns is nanoseconds since the epoch (kept to microseconds)."""
        orig_len = orig_len or len(data)
        data = data[:self.snaplen]
        sec, usec = divmod(ts_ns // 1000, 1_000_000)
        self.out.write(_RECORD.pack(sec, usec, len(data), orig_len) + data)
        self.count += 1


def read(stream: BinaryIO) -> tuple[int, Iterator[Packet]]:
    """(linktype, packets) from a microsecond pcap of either byte order."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise ValueError("not a pcap file: short header")
    for order in "<>":
        magic, major, _minor, _zone, _sig, _snap, linktype = struct.unpack(order + "IHHiIII", head)
        if magic == MAGIC:
            break
    else:
        raise ValueError("not a microsecond pcap file: bad magic")
    if major != 2:
        raise ValueError(f"unsupported pcap version {major}")
    record = struct.Struct(order + "IIII")

    def packets() -> Iterator[Packet]:
        while True:
            raw = stream.read(record.size)
            if not raw:
                return
            if len(raw) < record.size:
                raise ValueError("truncated pcap record header")
            sec, usec, incl, orig = record.unpack(raw)
            data = stream.read(incl)
            if len(data) < incl:
                raise ValueError("truncated pcap packet")
            yield Packet(sec, usec, data, orig)
    return linktype, packets()
