"""`bpfwatch list`: every tracer and the hook it would use on this kernel."""
from __future__ import annotations

import argparse
import json
import sys

from tracers.common import OneLineParser


def rows(probe) -> list[dict]:
    from tracers.registry import tracer_modules
    from tracers.runtime import plan
    out = []
    for name, module in tracer_modules().items():
        result = plan(module.SPEC, probe)
        out.append({
            "tracer": name,
            "summary": module.SPEC.summary,
            "usable": result.usable,
            "hook": result.alternative.name if result.usable else None,
            "hooks": [f"{h.kind}:{h.target}" for h in result.alternative.hooks] if result.usable else [],
            "rejected": [{"alternative": a, "why": w} for a, w in result.rejected],
        })
    return out


def main(argv=None) -> int:
    parser = OneLineParser(
        prog="bpfwatch list", description="List tracers with the hook each would use here.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  bpfwatch list\n  bpfwatch list --json")
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    args = parser.parse_args(argv)
    from tracers import runtime
    try:
        runtime.require_root()
        data = rows(runtime.get_probe())
    except runtime.BpfwatchError as exc:
        print(f"bpfwatch list: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for row in data:
        if row["usable"]:
            where = f"{row['hook']:<15} {', '.join(row['hooks'])}"
        else:
            where = "UNAVAILABLE     " + "; ".join(f"{r['alternative']}: {r['why']}" for r in row["rejected"])
        print(f"{row['tracer']:<12} {where}")
    return 0
