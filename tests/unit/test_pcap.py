"""tracers.output.pcap: what the writer writes, the reader (and the classic layout) reads back."""
import io
import struct

import pytest

from tracers.output import pcap


def test_round_trip_keeps_packets_lengths_and_microseconds():
    buf = io.BytesIO()
    w = pcap.PcapWriter(buf)
    frames = [(1_700_000_000_123_456_789, b"\x01" * 60), (1_700_000_001_000_000_999, b"\x02" * 1514)]
    for ts, data in frames:
        w.write(ts, data)
    w.write(1_700_000_002_000_000_000, b"\x03" * 100, orig_len=1500)
    assert w.count == 3
    buf.seek(0)
    linktype, packets = pcap.read(buf)
    assert linktype == pcap.LINKTYPE_ETHERNET
    assert list(packets) == [
        pcap.Packet(1_700_000_000, 123_456, b"\x01" * 60, 60),
        pcap.Packet(1_700_000_001, 0, b"\x02" * 1514, 1514),
        pcap.Packet(1_700_000_002, 0, b"\x03" * 100, 1500),
    ]


def test_header_is_the_classic_libpcap_layout():
    buf = io.BytesIO()
    pcap.PcapWriter(buf, linktype=pcap.LINKTYPE_RAW, snaplen=96).write(2_000_000_500, b"x" * 200)
    raw = buf.getvalue()
    order = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    assert struct.unpack(order + "IHHiIII", raw[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 96, 101)
    assert struct.unpack(order + "IIII", raw[24:40]) == (2, 0, 96, 200)  # truncated to snaplen
    assert len(raw) == 40 + 96


def test_reader_takes_the_other_byte_order():
    head = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 5, 6, 3, 3) + b"abc"
    linktype, packets = pcap.read(io.BytesIO(head + rec))
    assert (linktype, list(packets)) == (1, [pcap.Packet(5, 6, b"abc", 3)])


@pytest.mark.parametrize("raw, words", [
    (b"", "short header"),
    (b"\0" * 24, "bad magic"),
    (struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 9, 1) + b"\0" * 8, "truncated pcap record"),
    (struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 9, 1) + struct.pack("=IIII", 0, 0, 9, 9) + b"ab",
     "truncated pcap packet"),
])
def test_reader_rejects_broken_files(raw, words):
    with pytest.raises(ValueError, match=words):
        _, packets = pcap.read(io.BytesIO(raw))
        list(packets)
