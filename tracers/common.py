"""The CLI every tracer shares: options, validation, the run loop, errors.

A tracer module provides SPEC, run(session, args) and optionally
add_arguments(parser), defines(args) and attachers(args); its
main(argv) is `common.main(module, argv)`.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time

from tracers.spec import TracerSpec


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
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


def build_parser(spec: TracerSpec, interval: bool = False, leading=None) -> OneLineParser:
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in spec.examples) if spec.examples else None
    parser = OneLineParser(prog=f"bpfwatch {spec.name}", description=spec.summary, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--pid", type=existing_pid, help="only this process (TGID)")
    parser.add_argument("--comm", type=comm_name, help="only processes with this command name")
    parser.add_argument("-d", "--duration", type=positive_float, metavar="SECONDS",
                        help="stop after this many seconds (exit 0)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--ebpf", action="store_true", help="print the C program and exit")
    parser.add_argument("--hook", metavar="NAME",
                        choices=[a.name for a in spec.alternatives],
                        help="force a hook alternative: " + ", ".join(a.name for a in spec.alternatives))
    # Where struct offsets come from (tests compare BTF with matching headers).
    parser.add_argument("--offsets", choices=("auto", "btf", "headers"), default="auto",
                        help=argparse.SUPPRESS)
    if leading:  # positionals before [interval [count]], e.g. an interface
        leading(parser)
    if interval:
        parser.add_argument("interval", nargs="?", type=positive_float, default=None,
                            help="seconds between outputs (default: once, at the end)")
        parser.add_argument("count", nargs="?", type=positive_int, default=None,
                            help="number of outputs, then exit")
    return parser


def common_defines(args) -> dict[str, int]:
    defines = {}
    if args.pid:
        defines["FILTER_PID"] = args.pid
    if args.comm:
        raw = args.comm.encode().ljust(16, b"\0")
        defines["FILTER_COMM_0"] = int.from_bytes(raw[:8], "little")
        defines["FILTER_COMM_1"] = int.from_bytes(raw[8:], "little")
    return defines


def raw_field(event, name: str) -> bytes:
    """All bytes of a char-array field (ctypes stops reading them at a NUL)."""
    desc = getattr(type(event), name)
    return ctypes.string_at(ctypes.addressof(event) + desc.offset, desc.size)


def emit(obj: dict) -> None:
    print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), flush=True)


def announce(session, what: str) -> None:
    """The line tests and users wait for: everything is attached now."""
    print(f"Tracing {what} via {session.alternative.name}... Hit Ctrl-C to end.",
          file=sys.stderr, flush=True)


def stream_events(session, args, what: str, header: str, to_record, format_line) -> int:
    """Print each ring buffer event (text or JSON) until -d, Ctrl-C or SIGTERM;
    then report what the kernel could not deliver (stderr and a JSON summary)."""
    boot_offset = time.time() - time.monotonic()  # ktime is CLOCK_MONOTONIC
    seen = 0

    def on_event(event):
        nonlocal seen
        seen += 1
        rec = to_record(event, boot_offset)
        if args.json:
            emit(rec)
        else:
            print(format_line(rec), flush=True)

    announce(session, what)
    if not args.json:
        print(header, flush=True)
    try:
        session.poll_events("events", on_event, deadline(args))
    finally:
        stats = session.stats()
        if stats["events_dropped"]:
            print(f"bpfwatch {session.spec.name}: {stats['events_dropped']} events dropped "
                  "(ring buffer full)", file=sys.stderr)
        if stats["map_update_failures"]:
            print(f"bpfwatch {session.spec.name}: {stats['map_update_failures']} map updates "
                  "failed (map full): some events were not seen", file=sys.stderr)
        if args.json:
            emit({"summary": {"events": seen, **stats}})
    return 0


def deadline(args) -> float | None:
    return time.monotonic() + args.duration if args.duration else None


def interval_loop(args, tick) -> None:
    """Call tick(final) every interval until count, duration or a signal."""
    from tracers.runtime import Stop
    end = deadline(args)
    ticks = 0
    try:
        while True:
            wait = args.interval if args.interval else 3600.0
            if end is not None:
                wait = min(wait, max(0.0, end - time.monotonic()))
            time.sleep(wait)
            ticks += 1
            done = (end is not None and time.monotonic() >= end) or \
                (args.count is not None and ticks >= args.count)
            tick(done)
            if done:
                return
    except Stop:
        tick(True)


def probe_report_main(argv, prog: str, description: str, examples: tuple[str, ...],
                      collect, print_text) -> int:
    """doctor and list: collect(probe) -> data, printed as JSON or text."""
    parser = OneLineParser(prog=prog, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    from tracers import runtime
    try:
        runtime.require_root()
        data = collect(runtime.get_probe())
    except runtime.BpfwatchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print_text(data)
    except BrokenPipeError:  # `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(module, argv=None) -> int:
    from tracers import runtime
    spec = module.SPEC
    parser = build_parser(spec, interval=getattr(module, "INTERVAL", False),
                          leading=getattr(module, "add_positionals", None))
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_intermixed_args(argv)  # "IFACE --json 5": positionals around options
    prog = f"bpfwatch {spec.name}"
    try:
        defines = common_defines(args)
        if hasattr(module, "defines"):
            defines.update(module.defines(args))
        if args.ebpf:
            print(runtime.render_source(spec, defines))
            return 0
        runtime.require_root()
        attachers = module.attachers(args) if hasattr(module, "attachers") else None
        skip = module.skip_hooks(args) if hasattr(module, "skip_hooks") else frozenset()
        if hasattr(module, "spec_for"):  # hooks known only at run time (funccount)
            spec = module.spec_for(args)
        with runtime.stop_on_signals():
            with runtime.Session(spec, defines, force=args.hook, attachers=attachers,
                                 pid=args.pid or -1, skip=skip,
                                 offsets_from=args.offsets) as session:
                return module.run(session, args) or 0
    except runtime.Stop:
        return 0
    except runtime.BpfwatchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
