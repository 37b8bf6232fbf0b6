"""profile: sample on-CPU stacks at a frequency; folded stacks and flame graphs."""
from __future__ import annotations

import os
from pathlib import Path

from tracers import options, runner
from tracers.runtime.kconst import PMU_DIR
from tracers.tools import _stacks
from tracers.spec import Alternative, Hook, Tracer, TracerSpec, UsageError

# perf_event_attr (type, config) from uapi/linux/perf_event.h.
SOFTWARE, HARDWARE = 1, 0
EVENTS = {
    "cpu-clock": (SOFTWARE, 0),    # PERF_COUNT_SW_CPU_CLOCK: works everywhere, VMs too
    "cycles": (HARDWARE, 0),       # PERF_COUNT_HW_CPU_CYCLES: needs a CPU PMU
    "instructions": (HARDWARE, 1),  # PERF_COUNT_HW_INSTRUCTIONS
}

SPEC = TracerSpec(
    name="profile",
    summary="CPU profile: sample user+kernel stacks at a frequency, as folded stacks or a flame graph",
    c_file="profile.bpf.c",
    alternatives=(
        Alternative("perf_event", (
            Hook("perf_event", "cpu-clock", "on_sample"),
        )),
    ),
    examples=(
        "bpfwatch profile --duration 10               # all CPUs at 49 Hz for 10 s, folded",
        "bpfwatch profile -F 999 -p 1234 --svg p.svg  # one process at 999 Hz, plus a flame graph",
        "bpfwatch profile -C 0 -K --duration 5        # CPU 0, kernel stacks only (bcc's -K)",
        "bpfwatch profile --event cycles --duration 5 # sample on CPU cycles (hardware PMU)",
        "bpfwatch profile --json --duration 5         # one JSON object per stack",
    ),
)


def has_cpu_pmu(pmus: Path = PMU_DIR) -> bool:
    return any((pmus / d).is_dir() for d in ("cpu", "cpu_core", "cpu_atom"))


class Profile(Tracer):
    spec = SPEC
    duration_letter = False  # bcc's -d: delimiter between kernel and user stacks

    def add_arguments(self, parser) -> None:
        _stacks.add_stack_arguments(parser, threads=False)  # bcc's profile has no -u/-k
        parser.add_argument("-F", "--frequency", type=options.positive_int, default=49, metavar="HZ",
                            help="samples per second per CPU (default 49)")
        parser.add_argument("-C", "--cpu", type=int, metavar="CPU", help="only this CPU")
        parser.add_argument("--event", choices=sorted(EVENTS), default="cpu-clock",
                            help="what to sample on (default cpu-clock; cycles and instructions need a CPU PMU)")
        parser.add_argument("-I", "--include-idle", action="store_true", help="include the idle task")

    def defines(self, args) -> dict[str, int]:
        prog = "bpfwatch profile"
        self.svg = _stacks.open_svg(args)
        out = _stacks.stack_defines(args, prog)
        if args.frequency > 100_000:
            raise UsageError("-F is at most 100000 Hz")
        cpus = os.cpu_count() or 1
        if args.cpu is not None and not 0 <= args.cpu < cpus:
            raise UsageError(f"no CPU {args.cpu} (CPUs 0-{cpus - 1})")
        if EVENTS[args.event][0] == HARDWARE and not has_cpu_pmu():
            raise UsageError(f"--event {args.event} needs a hardware CPU PMU, and this machine "
                             "has none (a VM without PMU passthrough?); use --event cpu-clock")
        if args.include_idle:
            out["INCLUDE_IDLE"] = 1
        return out

    def attachers(self, args) -> dict:
        ev_type, ev_config = EVENTS[args.event]

        def attach(session, hook) -> None:
            from tracers.runtime import LoadError
            try:
                session.bpf.attach_perf_event(ev_type=ev_type, ev_config=ev_config, fn_name=hook.fn,
                                              sample_freq=args.frequency,
                                              cpu=-1 if args.cpu is None else args.cpu)
            except Exception as exc:
                raise LoadError(f"profile: cannot open perf event {args.event}: {exc}") from None
            session.on_close(lambda: session.bpf.detach_perf_event(ev_type=ev_type, ev_config=ev_config))
        return {"perf_event": attach}

    def run(self, session, args) -> int:
        runner.announce(session, f"{args.event} samples at {args.frequency} Hz")
        runner.wait_for_end(args)
        rows, missing = _stacks.stack_rows(session, "samples")
        _stacks.report(session, args, rows, missing, "samples", "CPU Flame Graph", self.svg)
        return 0


TRACER = Profile
