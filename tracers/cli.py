"""`bpfwatch <command>`: doctor, list, exporter, or a tracer by name."""
from __future__ import annotations

import sys

USAGE = """usage: bpfwatch <command> [options]

commands:
  doctor      what this kernel can do, and why not
  list        every tracer and the hook it would use here
  exporter    serve tracer maps as Prometheus metrics
{tracers}
`bpfwatch <command> --help` shows a command's options and examples.
"""


def usage() -> str:
    from tracers.registry import tracer_classes
    lines = "\n".join(f"  {name:<11} {t.spec.summary}" for name, t in tracer_classes().items())
    return USAGE.format(tracers=lines)


def main(argv=None) -> int:
    from tracers.registry import tracer_class, tracer_classes
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):  # asked for the command list: stdout, 0
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "doctor":
        from tracers import doctor
        return doctor.main(rest)
    if command == "list":
        from tracers import listing
        return listing.main(rest)
    if command == "exporter":
        from exporters import daemon
        return daemon.main(rest)
    if command in ("-V", "--version"):
        from tracers import __version__
        print(f"bpfwatch {__version__}")
        return 0
    tracer = tracer_class(command)
    if tracer is None:
        known = ", ".join(["doctor", "list", "exporter", *tracer_classes()])
        print(f"bpfwatch: unknown command {command!r} (known: {known}; `bpfwatch` lists them)",
              file=sys.stderr)
        return 2
    from tracers import runner
    return runner.main(tracer, rest)


if __name__ == "__main__":
    raise SystemExit(main())
