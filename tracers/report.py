"""doctor and list: one probe of the kernel, printed as text or JSON."""
from __future__ import annotations

import argparse
import json
import os
import sys

from tracers.options import OneLineParser

def build_parser(prog: str, description: str, examples: tuple[str, ...]) -> OneLineParser:
    """Also read by the man page generator (tracers/packaging/manpages.py)."""
    parser = OneLineParser(prog=prog, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def probe_report_main(argv, prog: str, description: str, examples: tuple[str, ...],
                      collect, print_text) -> int:
    """doctor and list: collect(probe) -> data, printed as JSON or text."""
    args = build_parser(prog, description, examples).parse_args(argv)
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
