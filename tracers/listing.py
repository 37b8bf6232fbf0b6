"""`bpfwatch list`: every tracer and the hook it would use on this kernel."""
from __future__ import annotations

from tracers.report import probe_report_main


def rows(probe) -> list[dict]:
    from tracers.registry import tracer_classes
    from tracers.runtime import plan
    out = []
    for name, tracer in tracer_classes().items():
        result = plan(tracer.spec, probe)
        out.append({
            "tracer": name,
            "summary": tracer.spec.summary,
            "usable": result.usable,
            "hook": result.alternative.name if result.usable else None,
            "hooks": [f"{h.kind}:{h.target}" for h in result.alternative.hooks] if result.usable else [],
            "rejected": [{"alternative": a, "why": w} for a, w in result.rejected],
        })
    return out


def print_text(data: list[dict]) -> None:
    for row in data:
        if row["usable"]:
            where = f"{row['hook']:<15} {', '.join(row['hooks'])}"
        else:
            where = "UNAVAILABLE     " + "; ".join(f"{r['alternative']}: {r['why']}" for r in row["rejected"])
        print(f"{row['tracer']:<12} {where}")


PROG = "bpfwatch list"
DESCRIPTION = "List tracers with the hook each would use here."
EXAMPLES = ("bpfwatch list", "bpfwatch list --json")


def main(argv=None) -> int:
    return probe_report_main(argv, PROG, DESCRIPTION, EXAMPLES, rows, print_text)
