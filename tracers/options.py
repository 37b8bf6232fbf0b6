"""The options every tracer shares, and their validation: no bcc, no root."""
from __future__ import annotations

import argparse
import os
from typing import NamedTuple

from tracers.spec import Tracer

class OneLineParser(argparse.ArgumentParser):
    """Bad input gets one clear line and exit 2, not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


MAX_SECONDS = 366 * 86400  # intervals and durations: a year, and finite


def positive_float(text: str) -> float:
    """Seconds: positive and at most a year (inf and 1e300 overflowed sleep)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    if not value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SECONDS} seconds (a year), got {text}")
    return value


def existing_pid(text: str) -> int:
    pid = positive_int(text)
    if not os.path.exists(f"/proc/{pid}"):
        raise argparse.ArgumentTypeError(f"no process with PID {pid}")
    return pid


def comm_name(text: str) -> str:
    raw = text.encode()
    if not raw or len(raw) > 15:
        raise argparse.ArgumentTypeError("a command name is 1 to 15 bytes (the kernel's comm)")
    return text


class CgroupFilter(NamedTuple):
    """--cgroup/--container resolved at start: the directory the kernel
    matches against (it and everything below it) and its cgroup id."""
    path: str
    id: int


def cgroup_filter(text: str) -> CgroupFilter:
    from tracers import containers
    try:
        return CgroupFilter(*containers.cgroup_dir(text))
    except containers.CgroupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def container_filter(text: str) -> CgroupFilter:
    from tracers import containers
    try:
        ident = containers.Resolver().find(text)
        return CgroupFilter(*containers.cgroup_dir(ident.cgroup))
    except containers.CgroupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(tracer: Tracer) -> OneLineParser:
    """The shared options, the tracer's positionals and [interval [count]], then its own options."""
    spec = tracer.spec
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in spec.examples) if spec.examples else None
    parser = OneLineParser(prog=f"bpfwatch {spec.name}", description=spec.summary, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    if tracer.process_filters:
        parser.add_argument("-p", "--pid", type=existing_pid, help="only this process (TGID)")
        parser.add_argument("--comm", type=comm_name, help="only processes with this command name")
    else:  # not offered (hidden from --help), and refused with the reason if given anyway
        def refuse(_text):
            raise argparse.ArgumentTypeError(f"not offered: {spec.name}'s programs run where no "
                                             "process is current")
        parser.add_argument("-p", "--pid", type=refuse, help=argparse.SUPPRESS)
        parser.add_argument("--comm", type=refuse, help=argparse.SUPPRESS)
    if tracer.process_filters:  # like -p: the task whose cgroup is checked must be current
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--cgroup", dest="cgroup_filter", type=cgroup_filter, metavar="PATH",
                           help="only tasks in this cgroup v2 directory or below it")
        where.add_argument("--container", dest="cgroup_filter", type=container_filter, metavar="ID",
                           help="only tasks of the running container whose id starts with ID")
    else:
        for flag in ("--cgroup", "--container"):
            parser.add_argument(flag, dest="cgroup_filter", help=argparse.SUPPRESS,
                                type=parser._option_string_actions["--comm"].type)  # refused alike
    if spec.events_map:
        parser.add_argument("--containers", action="store_true",
                            help="a CONTAINER column: the short id (JSON always has cgroup_id, container)")
    parser.add_argument(*(["-d"] if tracer.duration_letter else []), "--duration",
                        type=positive_float, metavar="SECONDS",
                        help="stop after this many seconds (exit 0)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--ebpf", action="store_true", help="print the C program and exit")
    parser.add_argument("--hook", metavar="NAME",
                        choices=[a.name for a in spec.alternatives],
                        help="force a hook alternative: " + ", ".join(a.name for a in spec.alternatives))
    # Where struct offsets come from (tests compare BTF with matching headers).
    parser.add_argument("--offsets", choices=("auto", "btf", "headers"), default="auto",
                        help=argparse.SUPPRESS)
    tracer.add_positionals(parser)  # before [interval [count]], e.g. an interface
    if tracer.interval:
        parser.add_argument("interval", nargs="?", type=positive_float, default=None,
                            help="seconds between outputs (default: once, at the end)")
        parser.add_argument("count", nargs="?", type=positive_int, default=None,
                            help="number of outputs, then exit")
    tracer.add_arguments(parser)
    return parser


def common_defines(args) -> dict[str, int]:
    defines = {}
    if getattr(args, "cgroup_filter", None):
        defines["FILTER_CGROUP"] = args.cgroup_filter.id
    if args.pid:
        defines["FILTER_PID"] = args.pid
    if args.comm:
        raw = args.comm.encode().ljust(16, b"\0")
        defines["FILTER_COMM_0"] = int.from_bytes(raw[:8], "little")
        defines["FILTER_COMM_1"] = int.from_bytes(raw[8:], "little")
    return defines
