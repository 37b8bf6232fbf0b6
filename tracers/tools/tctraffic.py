"""tctraffic: packets and bytes through an interface, counted in tc; block, prioritize."""
from __future__ import annotations

import argparse
import socket
import sys

from tracers import decoders, options, runner
from tracers.mapdata import NUMBER, number
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError
from tracers.summary import Table, count, label
from tracers.tools._net import address_words, cidr, interface, link_layer_len, port

MAX_CIDRS, MAX_PORTS, MAX_PRIORITIES = 8, 8, 4  # slots in bpf_c/tctraffic.bpf.c
DEFAULT_MAX_FLOWS, MAX_MAX_FLOWS = 4096, 1 << 20

_BY_FLOW = (Label("direction", "direction", "tc_direction"), Label("family", "family", "address_family"),
            Label("proto", "proto", "ip_proto"), Label("port", "port", "port_host"))
_BY_DIRECTION = (Label("direction", "", "tc_direction"),)
_HOOKS = (Hook("tc", "ingress", "on_ingress"), Hook("tc", "egress", "on_egress"))
_BY_RULE = (Label("direction", "direction", "tc_direction"), Label("reason", "reason", "tc_block_reason"),
            Label("rule", "rule", "int"))
SPEC = TracerSpec(
    name="tctraffic",
    summary="count packets and bytes through an interface in tc (ingress and egress), "
            "per direction, protocol and destination port; optionally drop or prioritize",
    c_file="tctraffic.bpf.c",
    alternatives=(
        # tcx links vanish with their owner (even on SIGKILL); clsact filters
        # must be cleaned up by the next start: the alternative before 6.6.
        Alternative("tcx", _HOOKS, define="HOOK_TCX", needs=("tcx",)),
        Alternative("clsact", _HOOKS, define="HOOK_CLSACT"),
    ),
    metrics=(
        Metric("tc_packets_total", "Packets passed, by direction, family, protocol and "
               "destination port.", map="traffic", labels=_BY_FLOW, value_field="packets"),
        Metric("tc_bytes_total", "Bytes passed (L2 length), by direction, family, protocol and "
               "destination port.", map="traffic", labels=_BY_FLOW, value_field="bytes"),
        Metric("tc_overflow_packets_total", "Packets passed whose flow found no room in the "
               "full flow map: counted here, never lost.", map="traffic_overflow",
               labels=_BY_DIRECTION, value_field="packets"),
        Metric("tc_overflow_bytes_total", "Bytes of the packets in tc_overflow_packets_total.",
               map="traffic_overflow", labels=_BY_DIRECTION, value_field="bytes"),
        Metric("tc_dropped_packets_total", "Packets dropped by a --block rule (rule: slot of "
               "the CIDR, or the port).", map="drops", labels=_BY_RULE, value_field="packets"),
        Metric("tc_dropped_bytes_total", "Bytes dropped by a --block rule.", map="drops",
               labels=_BY_RULE, value_field="bytes"),
    ),
    examples=(
        "bpfwatch tctraffic eth0                       # count until Ctrl-C, then print",
        "bpfwatch tctraffic eth0 1 10                  # every second, ten times",
        "bpfwatch tctraffic eth0 --block 192.0.2.0/24  # drop traffic with that network",
        "bpfwatch tctraffic eth0 --block-port 23       # drop telnet, both directions",
        "bpfwatch tctraffic eth0 --priority 5001=1:10  # egress port 5001 into HTB class 1:10",
        "bpfwatch tctraffic eth0 --json 5              # JSON every 5 s",
    ),
)


def classid(text: str) -> int:
    """tc notation MAJOR:MINOR, both hexadecimal: "1:10" -> 0x10010."""
    major, sep, minor = text.partition(":")
    try:
        hi, lo = int(major, 16), int(minor, 16)
    except ValueError:
        hi = lo = -1
    if not sep or not (1 <= hi <= 0xFFFE and 1 <= lo <= 0xFFFF):
        raise argparse.ArgumentTypeError(f"{text!r} is not a class id MAJOR:MINOR (hex, e.g. 1:10)")
    return hi << 16 | lo


def priority_rule(text: str) -> tuple[int, int, str]:
    """PORT=CLASSID -> (port, class id, text)."""
    left, sep, right = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not PORT=CLASSID (e.g. 5001=1:10)")
    return port(left), classid(right), text


def rule_defines(blocks, ports, priorities) -> dict[str, int]:
    for what, items, limit in (("--block", blocks, MAX_CIDRS), ("--block-port", ports, MAX_PORTS),
                               ("--priority", priorities, MAX_PRIORITIES)):
        if len(items) > limit:
            raise UsageError(f"at most {limit} {what} rules")
    out = {"BLOCK_CIDRS": len(blocks), "BLOCK_PORTS": len(ports), "PRIO_RULES": len(priorities)}
    for i, net in enumerate(blocks):
        out[f"BLOCK_{i}_FAMILY"] = socket.AF_INET if net.version == 4 else socket.AF_INET6
        for j, word in enumerate(address_words(net.network_address.packed)):
            out[f"BLOCK_{i}_NET{j}"] = word
        for j, word in enumerate(address_words(net.netmask.packed)):
            out[f"BLOCK_{i}_MASK{j}"] = word
    for i, value in enumerate(ports):
        out[f"BLOCK_PORT_{i}"] = value
    for i, (value, cls, _text) in enumerate(priorities):
        out[f"PRIO_PORT_{i}"] = value
        out[f"PRIO_CLASS_{i}"] = cls
    return {k: v for k, v in out.items() if v or k not in ("BLOCK_CIDRS", "BLOCK_PORTS", "PRIO_RULES")}


# -- reading -------------------------------------------------------------------
def rule_label(args, reason: int, rule: int) -> str:
    if reason == 1 and rule < len(args.block):
        return str(args.block[rule])
    return f"port {rule}" if reason == 2 else f"rule {reason}/{rule}"


def tables(args) -> tuple[Table, ...]:
    """Flows (the top by bytes), the overflow of a full flow map, drops by
    --block rule and --priority hits: one interval's rows each."""
    def priority(slot) -> str:
        i = number(slot)
        if i >= len(args.priority):
            raise decoders.DecodeError(f"no --priority rule {i}")
        return args.priority[i][2]
    per_run = {
        "flow_family": lambda k: decoders.address_family(k.family) if k.family else "other",
        "flow_proto": lambda k: decoders.ip_proto(k.proto) if k.family else "-",
        "block_rule": lambda k: rule_label(args, k.reason, k.rule),
        "priority_rule": priority}
    direction = label("direction", "DIRECTION", 10, "direction", "tc_direction")
    counted = (count("packets", "PACKETS", 10, "packets"), count("bytes", "BYTES", 12, "bytes"))
    return (
        Table("traffic", "traffic", (direction, label("family", "FAMILY", 6, "", "flow_family"),
                                     label("proto", "PROTO", 9, "", "flow_proto"),
                                     label("port", "PORT", 5, "port", NUMBER), *counted),
              sort_by="bytes", top=args.top, decoders=per_run),
        Table("overflow", "traffic_overflow",
              (label("direction", "OVERFLOW", 10, "", "tc_direction"), *counted), hide_empty=True,
              title="(flows beyond --max-flows)"),
        Table("dropped", "drops", (label("direction", "DROPPED", 10, "direction", "tc_direction"),
                                   label("rule", "RULE", 22, "", "block_rule"), *counted),
              sort_by="bytes", hide_empty=True, decoders=per_run),
        Table("prioritized", "prioritized", (label("rule", "PRIORITIZED", 22, "", "priority_rule"), *counted),
              hide_empty=True, decoders=per_run),
    )


class Tctraffic(Tracer):
    spec = SPEC
    process_filters = False  # tc sees packets, not processes
    interval = True

    def add_positionals(self, parser) -> None:
        parser.add_argument("interface", type=interface, help="network interface to attach to")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--block", type=cidr, action="append", default=[], metavar="CIDR",
                            help=f"drop packets from/to this network (repeatable, up to {MAX_CIDRS})")
        parser.add_argument("--block-port", type=port, action="append", default=[], metavar="PORT",
                            help=f"drop packets with this source or destination port (up to {MAX_PORTS})")
        parser.add_argument("--priority", type=priority_rule, action="append", default=[],
                            metavar="PORT=CLASSID", help="set skb->priority of egress packets with this "
                            f"port to an HTB class id such as 1:10 (up to {MAX_PRIORITIES})")
        parser.add_argument("-T", "--top", type=options.positive_int, default=20, help="rows shown (default 20)")
        parser.add_argument("--max-flows", type=options.positive_int, default=DEFAULT_MAX_FLOWS,
                            metavar="N", help="flows counted one by one (default "
                            f"{DEFAULT_MAX_FLOWS}); packets of further flows are counted as overflow")

    def defines(self, args) -> dict[str, int]:
        if args.max_flows > MAX_MAX_FLOWS:
            raise UsageError(f"--max-flows: at most {MAX_MAX_FLOWS}")
        return {**rule_defines(args.block, args.block_port, args.priority),
                "L2_LEN": link_layer_len(args.interface), "MAX_FLOWS": args.max_flows}

    def attachers(self, args) -> dict:
        from tracers.runtime.netattach import tc_attacher
        return {"tc": tc_attacher(args.interface)}

    def run(self, session, args) -> int:
        warned = []

        def warn_once(rows) -> dict:  # the flow map filled: say so once, on stderr
            if rows[1] and not warned:
                warned.append(True)
                print(f"bpfwatch tctraffic: flow map full ({args.max_flows} flows): packets of "
                      "further flows are counted as overflow", file=sys.stderr, flush=True)
            return {"interface": args.interface}
        return runner.summary_loop(session, args, f"packets on {args.interface}", tables(args),
                                   title=args.interface, extra=warn_once,
                                   footer=lambda rows: warn_once(rows) and [])


TRACER = Tctraffic
