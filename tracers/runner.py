"""Run one tracer, straight through: parse -> setup -> Session -> run.

Also the two loops tracers share: the event stream (one record per ring
buffer event) and the interval ticker of summary tracers.
"""
from __future__ import annotations

import json
import os
import sys
import time

from tracers import options
from tracers.spec import Tracer, UsageError

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


def main(tracer_class: type[Tracer], argv=None) -> int:
    from tracers import runtime
    tracer = tracer_class()
    prog = f"bpfwatch {tracer.spec.name}"
    try:
        args = options.build_parser(tracer).parse_intermixed_args(argv)  # "IFACE --json 5"
        setup = tracer.setup(args)
        defines = {**options.common_defines(args), **setup.defines}
        if args.ebpf:
            print(runtime.render_source(setup.spec, defines))
            return 0
        runtime.require_root()
        with runtime.stop_on_signals():
            with runtime.Session(setup.spec, defines, force=args.hook, attachers=setup.attachers,
                                 pid=args.pid or -1, skip=setup.skip,
                                 offsets_from=args.offsets) as session:
                return tracer.run(session, args) or 0
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except runtime.Stop:
        return 0
    except runtime.BpfwatchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
