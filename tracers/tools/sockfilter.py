"""sockfilter: an eBPF socket filter on a packet socket: count matches, write pcap."""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

from tracers import decoders, runner
from tracers.output import pcap
from tracers.output.files import open_output
from tracers.runtime.errors import BpfwatchError
from tracers.runtime.kconst import ETH_HLEN
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError
from tracers.tools._net import address_words, cidr, interface, link_layer_len, port

MAX_PORTS = MAX_HOSTS = 4  # slots in bpf_c/sockfilter.bpf.c
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}
SO_TIMESTAMPNS, SOL_PACKET, PACKET_STATISTICS = 35, 263, 6

SPEC = TracerSpec(
    name="sockfilter",
    summary="capture with an eBPF socket filter (SO_ATTACH_BPF on a packet socket): count "
            "packets matching --port/--host/--proto, optionally write them to a pcap file",
    c_file="sockfilter.bpf.c",
    alternatives=(
        Alternative("socket_filter", (Hook("socket_filter", "packet", "on_packet"),),
                    define="HOOK_SOCKET_FILTER"),
    ),
    metrics=(
        Metric("sockfilter_packets_total", "Packets the filter kept, by family and protocol.",
               map="matches", value_field="packets",
               labels=(Label("family", "family", "address_family"), Label("proto", "proto", "ip_proto"))),
        Metric("sockfilter_bytes_total", "Bytes the filter kept (L2 length).", map="matches",
               value_field="bytes",
               labels=(Label("family", "family", "address_family"), Label("proto", "proto", "ip_proto"))),
    ),
    examples=(
        "bpfwatch sockfilter -i eth0 --port 53              # count DNS packets until Ctrl-C",
        "bpfwatch sockfilter -i eth0 --port 443 -w tls.pcap # and write them for tcpdump -r",
        "bpfwatch sockfilter --host 192.0.2.0/24 --proto tcp 1 10",
        "bpfwatch sockfilter -i eth0 --proto icmp --json 5",
    ),
)


def proto(text: str) -> int:
    if text.lower() in PROTOS:
        return PROTOS[text.lower()]
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not a protocol ({', '.join(PROTOS)} or 0-255)")
    return value


def read_totals(session) -> dict:
    totals = {}
    for k, v in session.bpf["matches"].items():
        key = (decoders.address_family(k.family), decoders.ip_proto(k.proto)) if k.family else ("other", "-")
        totals[key] = (v.packets, v.bytes)
    return totals


def socket_drops(sock) -> int:
    """Packets the socket dropped since the last call (its buffer was full)."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


def receive(sock, writer) -> None:
    """One packet from the socket into the pcap file, with the kernel's timestamp."""
    data, ancillary, _flags, _addr = sock.recvmsg(pcap.SNAPLEN, 64)
    ts_ns = time.time_ns()
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            ts_ns = sec * 1_000_000_000 + nsec
    writer.write(ts_ns, data)


def capture(args, sock, writer, tick) -> None:
    """Read packets until done, ticking every interval; Ctrl-C drains the socket first."""
    from tracers.runtime.loader import deferred_signals, stop_requested
    end = runner.deadline(args)
    next_tick = time.monotonic() + args.interval if args.interval else None
    ticks = 0
    with deferred_signals():
        while True:
            now = time.monotonic()
            if stop_requested() or (end is not None and now >= end):
                sock.setblocking(False)
                try:
                    while True:
                        receive(sock, writer)
                except BlockingIOError:
                    pass
                tick(True)
                return
            if next_tick is not None and now >= next_tick:
                ticks += 1
                done = args.count is not None and ticks >= args.count
                tick(done)
                if done:
                    return
                next_tick += args.interval
            sock.settimeout(0.1)
            try:
                receive(sock, writer)
            except TimeoutError:
                pass


class Sockfilter(Tracer):
    spec = SPEC
    process_filters = False  # a packet socket sees no processes
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("-i", "--interface", type=interface, help="only packets on this interface")
        parser.add_argument("--port", type=port, action="append", default=[],
                            help=f"source or destination port (repeatable, up to {MAX_PORTS})")
        parser.add_argument("--host", type=cidr, action="append", default=[], metavar="ADDR[/LEN]",
                            help=f"source or destination address or network (up to {MAX_HOSTS})")
        parser.add_argument("--proto", type=proto, help="L4 protocol: " + ", ".join(PROTOS) + " or a number")
        parser.add_argument("-w", "--write", metavar="FILE",
                            help="write matching packets to a pcap file; - is standard output "
                                 "(the summary then goes to standard error), as with tcpdump")

    def __init__(self):
        self.socket = None  # the packet socket, once attached
        self.pcap_file = None

    def defines(self, args) -> dict[str, int]:
        # -w opened before tracing: a bad path is one line, a symlink is refused
        if args.write is not None and args.write != "-" and self.pcap_file is None:
            self.pcap_file = open_output("-w", args.write)
        if len(args.port) > MAX_PORTS or len(args.host) > MAX_HOSTS:
            raise UsageError(f"at most {MAX_PORTS} --port and {MAX_HOSTS} --host")
        out = {"FILTER_PORTS": len(args.port), "FILTER_HOSTS": len(args.host)}
        for i, value in enumerate(args.port):
            out[f"FILTER_PORT_{i}"] = value
        for i, net in enumerate(args.host):
            out[f"HOST_{i}_FAMILY"] = socket.AF_INET if net.version == 4 else socket.AF_INET6
            for j, word in enumerate(address_words(net.network_address.packed)):
                out[f"HOST_{i}_NET{j}"] = word
            for j, word in enumerate(address_words(net.netmask.packed)):
                out[f"HOST_{i}_MASK{j}"] = word
        if args.proto is not None:
            out["FILTER_PROTO"] = args.proto
        if args.write is None:
            out["COUNT_ONLY"] = 1
        out["LOOPBACK_IFINDEX"] = socket.if_nametoindex("lo")  # in this network namespace
        # every interface (no -i): packet sockets see Ethernet-like frames
        out["L2_LEN"] = link_layer_len(args.interface) if args.interface else ETH_HLEN
        return out

    def attachers(self, args) -> dict:
        def attach(session, hook) -> None:
            from tracers.runtime.netattach import packet_socket
            self.socket = packet_socket(session, hook.fn, args.interface)
        return {"socket_filter": attach}

    def run(self, session, args) -> int:
        sock = self.socket
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        to_stdout = args.write == "-"  # tcpdump's convention: `-w - | tcpdump -r -`
        report = sys.stderr if to_stdout else sys.stdout  # stdout carries the pcap then
        if to_stdout:  # unbuffered: a reader on the pipe gets each packet as it comes
            out = open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)
        else:
            out = self.pcap_file
        session.on_close(lambda: out and out.close())
        linktype = pcap.LINKTYPE_RAW if args.interface and session.defines.get("L2_LEN") == 0 \
            else pcap.LINKTYPE_ETHERNET
        writer = pcap.PcapWriter(out, linktype) if out else None
        self._flush(out, args.write)  # the header: a file that takes no writes fails here, once
        before: dict = {}
        drops = 0
        started = time.time()
        where = f"on {args.interface}" if args.interface else "on all interfaces"
        into = "standard output" if to_stdout else args.write
        runner.announce(session, f"packets {where}" + (f" into {into}" if out else ""))

        def tick(final: bool) -> None:
            nonlocal before, started, drops
            now = read_totals(session)
            rows = [(k, p - before.get(k, (0, 0))[0], b - before.get(k, (0, 0))[1])
                    for k, (p, b) in sorted(now.items()) if p > before.get(k, (0, 0))[0]]
            before, began, started = now, started, time.time()
            drops += socket_drops(sock)
            self._flush(out, args.write)
            matched = [{"family": f, "proto": pr, "packets": p, "bytes": b} for (f, pr), p, b in rows]
            if args.json:
                runner.emit({"time": round(started, 3), "interval_s": round(started - began, 3),
                             "interface": args.interface or "", "matched": matched,
                             "packets": sum(r["packets"] for r in matched),
                             "bytes": sum(r["bytes"] for r in matched),
                             "written": writer.count if writer else 0, "socket_drops": drops,
                             "map_update_failures": session.stats()["map_update_failures"]},
                            file=report)
                return
            lines = [f"[{time.strftime('%H:%M:%S')}] matched {where}",
                     f"{'FAMILY':<7} {'PROTO':<9} {'PACKETS':>10} {'BYTES':>12}"]
            lines += [f"{r['family']:<7} {r['proto']:<9} {r['packets']:>10} {r['bytes']:>12}"
                      for r in matched]
            if writer:
                lines.append(f"written to {into}: {writer.count} packets; socket drops: {drops}")
            print("\n".join(lines) + "\n", file=report, flush=True)

        if writer:
            try:
                capture(args, sock, writer, tick)
            except OSError as exc:  # a disk that fills, a file that refuses writes
                raise BpfwatchError(f"cannot write {into}: {exc.strerror}") from None
        else:
            runner.interval_loop(args, tick)
        return 0

    @staticmethod
    def _flush(out, name: str) -> None:
        try:
            if out:
                out.flush()
        except OSError as exc:
            raise BpfwatchError(f"cannot write {name}: {exc.strerror}") from None


TRACER = Sockfilter
