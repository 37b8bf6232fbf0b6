"""skbdrop: packets the kernel drops, counted per reason, protocol and location."""
from __future__ import annotations

import fcntl
import os

from tracers import decoders, options, runner
from tracers.runtime import btf
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError
from tracers.summary import Table, count, label

NETNS_FIELDS = {"OFF_SKB_DEV": ("sk_buff", "dev"),
                "OFF_DEV_NET": ("net_device", "nd_net.net"),
                "OFF_NET_INUM": ("net", "ns.inum")}

SPEC = TracerSpec(
    name="skbdrop",
    summary="count packets the kernel drops, per drop reason and protocol (and kernel location)",
    c_file="skbdrop.bpf.c",
    alternatives=(
        # The reason argument exists since Linux 5.17; older kernels have no
        # reasons to count, so there is no kprobe alternative.
        Alternative("tracepoint", (
            Hook("tracepoint", "skb:kfree_skb", "on_kfree_skb"),
        ), btf_fields=NETNS_FIELDS),
    ),
    metrics=(
        Metric("skb_drops_total", "Packets dropped by the kernel, by drop reason and protocol.",
               map="drops", labels=(Label("reason", "reason", "drop_reason"),
                                    Label("protocol", "protocol", "eth_proto"))),
    ),
    exporter_default=True,  # at most (reasons x protocols) series
    examples=(
        "bpfwatch skbdrop                       # count until Ctrl-C, then print",
        "bpfwatch skbdrop 1 10                  # every second, ten times",
        "bpfwatch skbdrop --location -d 5       # with the dropping kernel function",
        "bpfwatch skbdrop --netns myns --json 2 # one network namespace, JSON every 2 s",
    ),
)


NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type
CLONE_NEWNET = 0x40000000


def netns_inode(text: str) -> int:
    """The namespace's inode, after asking the kernel that it is a network namespace."""
    path = text if "/" in text else os.path.join("/run/netns", text)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"--netns {text!r}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        inode = os.fstat(fd).st_ino
    except OSError:  # ENOTTY: not a namespace file at all
        kind = None
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise UsageError(f"--netns {text!r} is not a network namespace")
    return inode


def load_reason_names() -> None:
    """Reason numbers differ between kernels: name them from this kernel's BTF."""
    try:
        decoders.set_drop_reasons(btf.BTF.load().enum_values("skb_drop_reason"))
    except (btf.BTFUnavailable, LookupError):
        pass  # numbers are shown as reason_<n>


class Skbdrop(Tracer):
    spec = SPEC
    process_filters = False  # most drops happen in softirq context (use --netns)
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("--location", action="store_true",
                            help="also count per kernel location (symbolised)")
        parser.add_argument("--netns", metavar="NAME|PATH",
                            help="only packets on devices of this network namespace "
                                 "(a name in /run/netns, or a path like /proc/PID/ns/net)")
        parser.add_argument("-T", "--top", type=options.positive_int, default=20,
                            help="rows shown (default 20)")

    def defines(self, args) -> dict[str, int]:
        load_reason_names()  # here: the CLI and the exporter both call defines()
        out = {}
        if args.location:
            out["BY_LOCATION"] = 1
        if args.netns:
            out["FILTER_NETNS"] = netns_inode(args.netns)
        return out

    def tables(self, args) -> tuple[Table, ...]:
        where = (label("location", "LOCATION", 40, "location", "ksym"),) if args.location else ()
        columns = (label("reason", "REASON", 28, "reason", "drop_reason"),
                   label("protocol", "PROTOCOL", 9, "protocol", "eth_proto"), *where,
                   count("count", "COUNT", 10))
        return (Table("drops", "drops_at" if args.location else "drops", columns, top=args.top),)

    def run(self, session, args) -> int:
        if args.location:
            decoders.load_kallsyms()
        return runner.summary_loop(session, args, "packet drops", self.tables(args))


TRACER = Skbdrop
