"""Run one tracer, straight through: parse -> setup -> Session -> run.

Also the two loops tracers share: the event stream (one record per ring
buffer event) and the interval ticker of summary tracers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tracers import containers, options
from tracers.spec import Tracer, UsageError

# One encoder: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def emit(obj: dict, file=None) -> None:
    """One JSON line, on standard output unless `file` says otherwise."""
    print(_JSON.encode(obj), file=file, flush=True)


def announce(session, what: str) -> None:
    """The line tests and users wait for: everything is attached now. From
    here a Ctrl-C is held until the tracer's loop takes it (nothing is lost)."""
    from tracers.runtime import loader
    loader.hold_signals()
    print(f"Tracing {what} via {session.alternative.name}... Hit Ctrl-C to end.",
          file=sys.stderr, flush=True)


def stream_events(session, args, what: str, header: str, to_record, format_line,
                  summary=None, settle=lambda: None) -> int:
    """Print each ring buffer event (text or JSON) until -d, Ctrl-C or SIGTERM;
    then report what the kernel could not deliver (stderr and a JSON summary).
    summary() -> dict: the tracer's own fields of the JSON summary; settle():
    before the last drain, for records the program still holds back."""
    boot_offset = time.time() - time.monotonic()  # ktime is CLOCK_MONOTONIC
    seen = 0
    resolver = containers.Resolver()
    resolver.walk()  # containers that exit before their first event are still named
    column = getattr(args, "containers", False) and not args.json
    lines = []  # written once per ring buffer batch: one write, not one per event
    add, encode, as_json = lines.append, _JSON.encode, args.json

    def on_event(event):
        nonlocal seen
        seen += 1
        rec = to_record(event, boot_offset)
        if "cgroup_id" in rec:  # every record that knows its task's cgroup names its container
            rec.update(containers.record_fields(resolver, rec["cgroup_id"]))
        if as_json:
            add(encode(rec))
        elif column:
            ident = rec.get("container")
            add(f"{ident['id'][:12] if ident else '-':<12} {format_line(rec)}")
        else:
            add(format_line(rec))

    def flush_lines():
        if lines:
            lines.append("")
            sys.stdout.write("\n".join(lines))
            sys.stdout.flush()
            lines.clear()

    announce(session, what)
    if not args.json:
        print(f"{'CONTAINER':<12} {header}" if column else header, flush=True)
    try:
        session.poll_events(session.spec.events_map, on_event, deadline(args), flush_lines, settle)
    finally:
        from tracers.runtime import loader
        loader.release_signals(raise_pending=False)  # the stop was honoured: drained
        flush_lines()
        stats = session.stats()
        if stats["events_dropped"]:
            print(f"bpfwatch {session.spec.name}: {stats['events_dropped']} events dropped "
                  "(ring buffer full)", file=sys.stderr)
        if stats["map_update_failures"]:
            print(f"bpfwatch {session.spec.name}: {stats['map_update_failures']} map updates "
                  "failed (map full): some events were not seen", file=sys.stderr)
        if args.json:
            emit({"summary": {"events": seen, **stats, **(summary() if summary else {})}})
    return 0


def deadline(args) -> float | None:
    return time.monotonic() + args.duration if args.duration else None


def interval_loop(args, tick) -> None:
    """Call tick(final) every interval until count, duration or a signal."""
    from tracers.runtime import Stop, loader
    end = deadline(args)
    ticks = 0
    try:
        loader.release_signals()  # a Ctrl-C since the ready line ends it now, with a report
        while True:
            interval = getattr(args, "interval", None)  # event tracers' count modes: none
            wait = interval if interval else 3600.0
            if end is not None:
                wait = min(wait, max(0.0, end - time.monotonic()))
            time.sleep(wait)
            ticks += 1
            done = (end is not None and time.monotonic() >= end) or \
                (getattr(args, "count", None) is not None and ticks >= args.count)
            tick(done)
            if done:
                return
    except Stop:
        tick(True)


def wait_for_end(args) -> None:
    """Sleep until -d or Ctrl-C/SIGTERM, for tracers that report at the end."""
    interval_loop(argparse.Namespace(interval=None, count=None, duration=args.duration),
                  lambda final: None)


def summary_loop(session, args, what: str, views, *, title: str = "", extra=None,
                 footer=None, settle=lambda: None) -> int:
    """Every interval (or once, at the end): read each declared view (a
    summary.Table or summary.Histogram) through the batched map read, take
    deltas, and print a text block or one JSON envelope:
    {"time", "interval_s", <extra>, <views>, "map_update_failures", "events_dropped"}.
    extra(rows) -> dict and footer(rows) -> lines see every view's rows;
    settle() runs before each read (counts the program still holds back)."""
    before = [{} for _ in views]
    started = time.time()
    announce(session, what)

    def tick(final: bool) -> None:
        nonlocal before, started
        settle()
        now = [view.collect(session.read_map) for view in views]
        shown = [view.rows(n, b) for view, n, b in zip(views, now, before)]
        before = now
        began, started = started, time.time()
        if args.json:
            envelope = {"time": round(started, 3), "interval_s": round(started - began, 3)}
            envelope.update(extra(shown) if extra else {})
            for view, rows in zip(views, shown):
                envelope.update(view.json(rows))
            stats = session.stats()
            envelope["map_update_failures"] = stats["map_update_failures"]
            envelope["events_dropped"] = stats["events_dropped"]
            emit(envelope)
            return
        lines = [time.strftime("[%H:%M:%S]") + (f" {title}" if title else "")]
        for view, rows in zip(views, shown):
            lines += view.text(rows)
        lines += footer(shown) if footer else []
        print("\n".join(lines) + "\n", flush=True)

    interval_loop(args, tick)
    return 0


def fill_cgroup_filter(session, args) -> None:
    """--cgroup/--container: the directory into the program's cgroup array
    (until then bpfwatch_filtered_out() lets nothing through)."""
    if getattr(args, "cgroup_filter", None):
        session.bpf["bpfwatch_cgroup_filter"][0] = args.cgroup_filter.path


def main(tracer_class: type[Tracer], argv=None) -> int:
    from tracers import runtime
    tracer = tracer_class()
    prog = f"bpfwatch {tracer.spec.name}"
    try:
        args = options.build_parser(tracer).parse_intermixed_args(argv)  # "IFACE --json 5"
        setup = tracer.setup(args)
        defines = {**options.common_defines(args), **setup.defines}
        runtime.require_root()
        if args.ebpf:  # planned as a run would be: the program that would load
            print(runtime.Session(setup.spec, defines, force=args.hook, attachers=setup.attachers,
                                  pid=args.pid or -1, skip=setup.skip,
                                  offsets_from=args.offsets).source())
            return 0
        with runtime.stop_on_signals():
            with runtime.Session(setup.spec, defines, force=args.hook, attachers=setup.attachers,
                                 pid=args.pid or -1, skip=setup.skip,
                                 offsets_from=args.offsets) as session:
                fill_cgroup_filter(session, args)
                return tracer.run(session, args) or 0
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except runtime.Stop:
        return 0
    except runtime.BpfwatchError as exc:
        # runtime errors name the tracer (the exporter runs several): once is enough here
        print(f"{prog}: {str(exc).removeprefix(tracer.spec.name + ': ')}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
