"""biosnoop: one line per block I/O with issuer, disk, size, sector, latency."""
from __future__ import annotations

import time

from tracers import decoders, runner
from tracers.tools import _block
from tracers.spec import Tracer, TracerSpec

SPEC = TracerSpec(
    name="biosnoop",
    summary="trace block device I/O: one line per request with issuer, size, sector and latency",
    c_file=_block.C_FILE,
    alternatives=_block.alternatives(needs=("ringbuf",)),
    events_map="events",
    examples=(
        "bpfwatch biosnoop                         # every block I/O, as it completes",
        "bpfwatch biosnoop -Q                      # latency includes the kernel queue",
        "bpfwatch biosnoop --disk sda --json       # one disk, JSON lines",
        "bpfwatch biosnoop -p 1234 --duration 10   # I/O issued by process 1234, 10 s",
    ),
)


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "comm": decoders.comm(decoders.raw_field(event, "comm")),
        "cgroup_id": event.cgroup_id,
        "disk": decoders.disk_name(event.dev),
        "rwbs": decoders.text(decoders.raw_field(event, "rwbs"), limit=8),  # kernel's letters: text() is enough
        "sector": event.sector,
        "bytes": event.bytes,
        "latency_ms": round(event.latency_ns / 1e6, 3),
        "queue_ms": round(event.queue_ns / 1e6, 3),
        "error": decoders.errno_name(event.error) if event.error else None,
    }


def format_line(rec: dict, queued: bool) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(rec["time"]))
    queue = f"{rec['queue_ms']:>8.3f} " if queued else ""
    err = f"  {rec['error']}" if rec["error"] else ""
    return (f"{when} {rec['comm']:<16} {rec['pid']:<7} {rec['disk']:<9} {rec['rwbs']:<5} "
            f"{rec['sector']:>12} {rec['bytes']:>8} {queue}{rec['latency_ms']:>8.3f}{err}")


class Biosnoop(Tracer):
    spec = SPEC
    duration_letter = False  # -d is --disk, as in bcc

    def add_arguments(self, parser) -> None:
        _block.add_arguments(parser)

    def defines(self, args) -> dict[str, int]:
        return dict(_block.defines(args, "bpfwatch biosnoop"), BIOSNOOP=1)

    def skip_hooks(self, args) -> set[str]:
        return _block.skip_hooks(args, needs_issuer=True)

    def run(self, session, args) -> int:
        queue = f"{'QUE(ms)':>8} " if args.queued else ""
        header = (f"{'TIME':<8} {'COMM':<16} {'PID':<7} {'DISK':<9} {'T':<5} {'SECTOR':>12} "
                  f"{'BYTES':>8} {queue}{'LAT(ms)':>8}")
        return runner.stream_events(session, args, "block device I/O", header, to_record,
                                    lambda rec: format_line(rec, args.queued))


TRACER = Biosnoop
