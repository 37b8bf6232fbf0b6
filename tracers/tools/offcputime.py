"""offcputime: where tasks block, as off-CPU time per user+kernel stack."""
from __future__ import annotations

from tracers import options, runner
from tracers.tools._stacks import (add_stack_arguments, open_svg, report, stack_defines, stack_rows,
                                   thread_defines, with_task_flags)
from tracers.tools._sched import SCHED_SWITCH_ALTERNATIVES
from tracers.spec import Tracer, TracerSpec, UsageError

SPEC = TracerSpec(
    name="offcputime",
    summary="off-CPU time summed by process and user+kernel stack, as folded stacks or a flame graph",
    c_file="offcputime.bpf.c",
    alternatives=with_task_flags(SCHED_SWITCH_ALTERNATIVES),
    examples=(
        "bpfwatch offcputime --duration 5          # folded stacks (usecs) after 5 s",
        "bpfwatch offcputime -p 1234 --svg off.svg # one process, plus a flame graph",
        "bpfwatch offcputime -K -m 1000            # kernel stacks, blocks of 1 ms or more",
        "bpfwatch offcputime -u --duration 5       # user threads only (bcc's -u; -k: kernel threads)",
        "bpfwatch offcputime --json --duration 5   # one JSON object per stack",
    ),
)


class Offcputime(Tracer):
    spec = SPEC
    duration_letter = False  # bcc's -d: delimiter between kernel and user stacks

    def add_arguments(self, parser) -> None:
        add_stack_arguments(parser, threads=True)
        parser.add_argument("-m", "--min-block-time", type=options.positive_int, default=1, metavar="USECS",
                            help="only blocks of at least USECS (default 1)")
        parser.add_argument("-M", "--max-block-time", type=options.positive_int, metavar="USECS",
                            help="only blocks of at most USECS")

    def defines(self, args) -> dict[str, int]:
        self.svg = open_svg(args)
        out = {**stack_defines(args, "bpfwatch offcputime"), **thread_defines(args)}
        out["MIN_BLOCK_US"] = args.min_block_time
        if args.max_block_time:
            if args.max_block_time < args.min_block_time:
                raise UsageError("--max-block-time is below --min-block-time")
            out["MAX_BLOCK_US"] = args.max_block_time
        return out

    def run(self, session, args) -> int:
        runner.announce(session, "off-CPU time")
        runner.wait_for_end(args)
        rows, missing = stack_rows(session, "totals", scale=1e-3)  # ns -> usecs
        report(session, args, rows, missing, "us", "Off-CPU Time Flame Graph", self.svg)
        return 0


TRACER = Offcputime
