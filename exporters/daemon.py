"""`bpfwatch exporter`: run tracers and user programs, serve their maps on /metrics."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector

from exporters import httpserver, program, progstats, webconfig
from exporters.collector import (DEFAULT_CONTAINER_TTL, DEFAULT_MAX_SERIES, NAMESPACE, MapCollector, Target,
                                 metric_name)
from tracers import __version__, options
from tracers.options import OneLineParser
from tracers.spec import TracerSpec, UsageError

PROG = "bpfwatch exporter"
DEFAULT_LISTEN = "127.0.0.1:10100"
EXAMPLES = (
    "bpfwatch exporter                                  # default tracers on 127.0.0.1:10100",
    "bpfwatch exporter --check                          # load and attach everything, then exit",
    "bpfwatch exporter --tracers syscount,execsnoop --listen 0.0.0.0:10100",
    "bpfwatch exporter --program exporters/examples/syscall_errors.toml",
    "bpfwatch exporter --web-config /etc/bpfwatch/web.yml   # TLS and basic auth",
    "bpfwatch exporter --tracers guard --tracer-args 'guard --rules /etc/bpfwatch/guard.toml'",
)
TELEMETRY = {f"{NAMESPACE}_{n}" for n in (
    "program_attached", "events_dropped", "map_update_failures", "map_entries", "map_max_entries",
    "decoder_errors", "map_read_errors", "series_folded", "scrape_duration_seconds", "build_info",
    "map_evictions", "series_folded_arrivals", "program_run_seconds", "program_runs")}


@dataclass
class Job:
    """One thing to load: a built-in tracer (with its CLI defaults) or a user program."""
    spec: TracerSpec
    defines: dict[str, int] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)
    attachers: dict | None = None
    origin: str = "tracer"


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, or :PORT (every interface: say so explicitly)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise argparse.ArgumentTypeError(f"{host!r} is not an IP address (use 127.0.0.1, ::1, 0.0.0.0)") from None
    return host, int(port)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Serve tracer maps as Prometheus metrics, read at scrape time.",
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=listen_address, default=listen_address(DEFAULT_LISTEN),
                        metavar="HOST:PORT", help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks one)")
    parser.add_argument("--tracers", metavar="A,B,...", help="built-in tracers to run (default: the "
                        "low-overhead default set that works on this kernel); 'none' for programs only")
    parser.add_argument("--tracer-args", metavar="'TRACER ARGS'", action="append", default=[],
                        type=tracer_args, help="options for one tracer, as its own command line "
                        "takes them (repeatable), e.g. 'guard --rules /etc/bpfwatch/guard.toml'")
    parser.add_argument("--program", metavar="FILE", action="append", default=[],
                        help="a user program's TOML file (repeatable)")
    parser.add_argument("--check", action="store_true", help="compile, load and attach everything, "
                        "print what would be served, and exit")
    parser.add_argument("--strict", action="store_true", help="a tracer without a usable hook is an error")
    parser.add_argument("--web-config", metavar="FILE", help="TLS and basic auth (exporter-toolkit YAML)")
    parser.add_argument("--max-series", type=options.positive_int, default=DEFAULT_MAX_SERIES, metavar="N",
                        help=f"series per metric before the rest fold into 'other' (default {DEFAULT_MAX_SERIES})")
    parser.add_argument("--per-process", action="store_true",
                        help="keep pid/comm labels (off by default: cardinality follows the workload)")
    parser.add_argument("--per-container", action="store_true",
                        help="container, pod and namespace labels on the metrics that carry a cgroup "
                        "(one series per container and metric, bounded by --max-series)")
    parser.add_argument("--container-ttl", type=options.positive_float, metavar="SECONDS",
                        default=DEFAULT_CONTAINER_TTL, help="serve a gone container's series this long "
                        f"(default {DEFAULT_CONTAINER_TTL:g})")
    parser.add_argument("--bpf-stats", action="store_true",
                        help="turn on the kernel's BPF run-time statistics while running and serve "
                        "each program's run time and count (costs every BPF program on the machine "
                        "two clock reads per run)")
    parser.add_argument("--max-connections", type=options.positive_int, metavar="N",
                        default=httpserver.DEFAULT_MAX_CONNECTIONS,
                        help="HTTP connections at once; when full, the longest-waiting client "
                        f"without a complete request is cut (default {httpserver.DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--read-timeout", type=options.positive_float, metavar="SECONDS",
                        default=httpserver.DEFAULT_READ_TIMEOUT,
                        help="time a client has to send its request, TLS handshake included "
                        f"(default {httpserver.DEFAULT_READ_TIMEOUT:g})")
    return parser


class _NeedsOptions(Exception):
    pass


def tracer_args(text: str) -> tuple[str, list[str]]:
    """'NAME ARGS...' -> (NAME, [ARGS]), split as a shell would."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not words:
        raise argparse.ArgumentTypeError("empty: want 'TRACER ARGS...'")
    return words[0], words[1:]


def default_args(tracer, argv=()):
    """The tracer's CLI defaults (plus argv from --tracer-args): the exporter
    runs what `bpfwatch <tracer> ARGS` runs."""
    parser = options.build_parser(tracer)

    def refuse(message):
        raise _NeedsOptions(message)
    parser.error = refuse
    return parser.parse_args(list(argv))


def builtin_job(tracer_class, argv=()) -> Job:
    """The tracer's own setup with its default arguments, plus the exporter's overrides."""
    from tracers.runtime import BpfwatchError
    tracer = tracer_class()
    spec = tracer.spec
    try:
        setup = tracer.setup(default_args(tracer, argv))
    except (_NeedsOptions, UsageError) as exc:
        if argv:
            raise BpfwatchError(f"--tracer-args {spec.name}: {exc}") from None
        raise BpfwatchError(f"{spec.name} needs options the exporter does not pass "
                            f"({exc}); run it as `bpfwatch {spec.name}` instead") from None
    job = Job(setup.spec, dict(setup.defines), set(setup.skip), setup.attachers)
    job.defines.update(spec.exporter_defines)
    job.skip.update(spec.cli_only_hooks())
    return job


def plan_jobs(args, probe) -> tuple[list[Job], list[str]]:
    """(jobs, notes): the tracers and programs asked for; notes say what was left out."""
    from tracers.registry import tracer_classes
    from tracers.runtime import BpfwatchError, plan
    modules = tracer_classes()
    notes = []
    if args.tracers is None:
        names = []
        for name, module in modules.items():
            if module.spec.exporter_default:
                result = plan(module.spec, probe)
                if result.usable:
                    names.append(name)
                else:
                    notes.append(f"default tracer {result.why_not()}: left out")
    elif args.tracers.strip() == "none":
        names = []
    else:
        names = [n.strip() for n in args.tracers.split(",") if n.strip()]
        for name in names:
            if name not in modules:
                raise BpfwatchError(f"unknown tracer {name!r} (known: {', '.join(modules)})")
        names = list(dict.fromkeys(names))
    extra = {}
    for name, argv in args.tracer_args:
        if name not in names:
            raise BpfwatchError(f"--tracer-args {name}: {name!r} is not among the tracers served "
                                f"({', '.join(names) or 'none'})")
        extra.setdefault(name, []).extend(argv)
    jobs = [builtin_job(modules[n], extra.get(n, ())) for n in names]
    for path in args.program:
        spec, defines = program.load(path)
        jobs.append(Job(spec, defines, origin=f"program {path}"))
    seen_tracers, seen_metrics = set(), set(TELEMETRY)
    for job in jobs:
        if job.spec.name in seen_tracers:
            raise BpfwatchError(f"{job.origin}: name {job.spec.name!r} is already taken")
        seen_tracers.add(job.spec.name)
        for m in job.spec.metrics:
            if metric_name(m) in seen_metrics:
                raise BpfwatchError(f"{job.origin}: metric {metric_name(m)} is served twice")
            seen_metrics.add(metric_name(m))
    if not jobs:
        raise BpfwatchError("nothing to serve: no tracer has a usable hook here and no --program given")
    return jobs, notes


def open_target(stack: contextlib.ExitStack, job: Job, strict: bool,
                program_stats: progstats.ProgramStats | None = None) -> Target:
    from tracers.runtime import LoadError, NoUsableHook, Session
    try:
        session = stack.enter_context(Session(job.spec, job.defines, attachers=job.attachers, skip=job.skip))
    except NoUsableHook as exc:
        if strict:
            raise
        print(f"{PROG}: {exc}: not attached", file=sys.stderr, flush=True)
        return Target(job.spec, why=str(exc))
    problem = program.check_maps(job.spec, session.bpf.__getitem__)
    if problem is not None:  # else every scrape of that metric would fail
        where, why = problem
        origin = job.origin if job.origin != "tracer" else job.spec.name
        raise LoadError(program.one_line(f"{origin}: {where}: {why}"))
    if program_stats is not None:
        program_stats.add(progstats.programs_of(job.spec.name, session.bpf))
    return Target.from_session(session)


def describe(targets: list[Target], collector: MapCollector) -> str:
    lines = [f"{'TRACER':<16} {'HOOK':<16} STATUS"]
    for t in targets:
        status = "attached" if t.table is not None else f"NOT ATTACHED ({t.why})"
        lines.append(f"{t.name:<16} {t.hook or '-':<16} {status}")
        for m in t.spec.metrics:
            labels = ",".join(collector._names(collector._kept_labels(m)))
            lines.append(f"  {metric_name(m)}{{{labels}}}  {m.kind} from map {m.map}")
    families = list(collector.collect())
    samples = sum(len(f.samples) for f in families)
    lines.append(f"{len(families)} metric families, {samples} samples at this scrape "
                 f"(self-telemetry under {NAMESPACE}_)")
    return "\n".join(lines)


def health(targets: list[Target], collector: MapCollector) -> tuple[bool, str]:
    """/healthz: healthy when every requested tracer and program is attached."""
    if collector.closed:
        return False, "shutting down"
    missing = [f"{t.name}: not attached: {t.why}" for t in targets if t.table is None]
    if missing:
        return False, "\n".join(missing)
    return True, f"ok: {len(targets)} attached"


def open_program_stats(registry, enable: bool) -> progstats.ProgramStats:
    from tracers.runtime import BpfwatchError
    try:  # now, while the capabilities to turn them on are still held
        return progstats.ProgramStats(registry, enable=enable)
    except OSError as exc:
        raise BpfwatchError(f"--bpf-stats: the kernel refused to turn on BPF statistics "
                            f"(BPF_ENABLE_STATS: {exc.strerror})") from None


def announce(args, targets, server, tls: bool) -> None:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    attached = sum(t.table is not None for t in targets)
    print(f"Serving {attached}/{len(targets)} tracers ({', '.join(t.name for t in targets)}) on "
          f"{'https' if tls else 'http'}://{shown}:{port}/metrics... Hit Ctrl-C to end.",
          file=sys.stderr, flush=True)


def run(args) -> int:
    from tracers import runtime
    runtime.require_root()
    web = webconfig.load(args.web_config) if args.web_config else webconfig.WebConfig()
    log = httpserver.QuietLog(PROG)
    probe = runtime.get_probe()
    jobs, notes = plan_jobs(args, probe)
    for job in jobs if args.per_container else ():
        job.defines["CGROUP_LABELS"] = 1  # metric maps keyed by cgroup (bpfwatch_label_cgroup)
    for note in notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    registry = CollectorRegistry(auto_describe=True)  # names known: /metrics?name[]=... works
    with runtime.stop_on_signals(), contextlib.ExitStack() as stack:
        server = None if args.check else httpserver.make_server(
            *args.listen, registry, web, log=log, max_connections=args.max_connections,
            read_timeout=args.read_timeout, health=lambda: health(targets, collector))
        if server is not None:
            stack.callback(server.server_close)
        program_stats = None if args.check else open_program_stats(registry, args.bpf_stats)
        if program_stats is not None:
            stack.callback(program_stats.close)
        targets = [open_target(stack, job, args.strict, program_stats) for job in jobs]
        collector = MapCollector(targets, registry=registry, max_series=args.max_series,
                                 per_process=args.per_process, version=__version__,
                                 per_container=args.per_container, container_ttl=args.container_ttl)
        ProcessCollector(registry=registry)  # process_*: ours, never the global registry
        if args.check:
            print(describe(targets, collector))
            return 0
        # Unwinds newest first: stop serving before the sessions detach.
        stack.callback(collector.close)
        stack.callback(program_stats.close)
        runtime.drop_after_attach(targets)  # before any thread: capabilities are per thread
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        stack.callback(server.shutdown)
        announce(args, targets, server, web.tls)
        while True:
            time.sleep(3600)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tracers import runtime
    try:
        return run(args)
    except runtime.Stop:
        return 0
    except runtime.BpfwatchError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
