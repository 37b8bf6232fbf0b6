"""Log2 latency histograms read from `dist` maps, printed per interval (runqlat, cpudist, funclatency)."""
from __future__ import annotations

import time

from tracers import runner
from tracers.output import text as fmt
from tracers.runtime.maps import as_int


def read_slots(session) -> dict[int, int]:
    """Cumulative slot counts of the whole histogram (never cleared)."""
    out = {as_int(k): sum(per_cpu) for k, per_cpu in session.read_map("dist")}
    return {slot: count for slot, count in out.items() if count}


def read_per_id(session) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = {}
    for k, v in session.read_map("dist_pid"):
        out.setdefault(k.pid, {})[k.slot] = as_int(v)
    return out


def delta(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {s: c - before.get(s, 0) for s, c in now.items() if c - before.get(s, 0) > 0}


def render(hists: dict, unit: str, id_name: str | None) -> str:
    """Text output: one histogram, or one per id (key None = the only one)."""
    parts = []
    for ident in sorted(hists, key=lambda i: -1 if i is None else i):
        text = fmt.log2_histogram(hists[ident], unit)
        if text:
            parts.append(text if ident is None else f"{id_name} = {ident}\n{text}")
    return "\n\n".join(parts)


def record(hists: dict, unit: str, id_name: str | None) -> list[dict]:
    """JSON form: slots as [{low, high, count}], total per histogram."""
    out = []
    for ident in sorted(hists, key=lambda i: -1 if i is None else i):
        slots = hists[ident]
        rows = [{"low": fmt.log2_bucket_bounds(s)[0], "high": fmt.log2_bucket_bounds(s)[1], "count": c}
                for s, c in sorted(slots.items()) if c]
        if rows:
            out.append({**({id_name: ident} if id_name else {}), "unit": unit,
                        "total": sum(r["count"] for r in rows), "buckets": rows})
    return out


def histogram_loop(session, args, what: str, empty: str) -> int:
    """Print the log2 histogram(s) of `dist` (or per id, `dist_pid`) per interval."""
    unit = "msecs" if args.milliseconds else "usecs"
    id_name = "pid" if args.pids else "tid" if getattr(args, "tids", False) else None
    before: dict = {}
    runner.announce(session, what)

    def tick(final: bool) -> None:
        nonlocal before
        if id_name:
            now = read_per_id(session)
            hists = {i: delta(s, before.get(i, {})) for i, s in now.items()}
        else:
            now = read_slots(session)
            hists = {None: delta(now, before)}
        before = now
        if args.json:
            runner.emit({"time": round(time.time(), 3), "histograms": record(hists, unit, id_name),
                         "map_update_failures": session.stats()["map_update_failures"]})
            return
        print(f"[{time.strftime('%H:%M:%S')}]")
        print(render(hists, unit, id_name) or empty, flush=True)
        print(flush=True)

    runner.interval_loop(args, tick)
    return 0
