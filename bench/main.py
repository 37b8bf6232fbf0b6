"""`bench/run`: the four benchmark tables in one run, printed and saved as JSON.

    sudo bench/run [--quick] [--only overhead,streaming,scrape,startup] [--json FILE]

Ratios within one run are the result; absolute times move with the load on
the machine (other processes' probes and CPU time count too).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import harness as c

TABLES = ("overhead", "streaming", "scrape", "startup")
TITLES = {"overhead": "1. Probe overhead per event", "streaming": "2. Event streaming",
          "scrape": "3. Exporter scrape", "startup": "4. Start-up and exporter memory"}


def machine() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    import bcc
    return {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(), "mem_mib": mem,
            "python": platform.python_version(), "bcc": getattr(bcc, "__version__", "?"),
            "bpftrace": first(["bpftrace", "--version"]), "load_at_start": os.getloadavg(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def scrape_table(sizes=(1000, 10000, 100000, 1000000), rounds: int = 5, log=print) -> dict:
    """Table 3 runs bench/scrape.py (the exporter's own benchmark)."""
    try:
        from bench import scrape
    except ImportError as exc:
        return {"error": f"bench/scrape.py not available: {exc}"}
    rows = []
    for n in sizes:
        rows.append(scrape.measure(n, rounds))
        log(f"  scrape: {n} series done")
    return {"rounds": rounds, "rows": rows}


def render_scrape(result: dict) -> str:
    if "error" in result:
        return result["error"]
    ms = lambda v, d=1: "-" if v is None else f"{v * 1e3:.{d}f}"
    rows = [[f"{r['series']:,}", ms(r["read_batch_s"]), ms(r.get("read_items_s")),
             ms(r.get("first_scrape_s")), ms(r["scrape_s"]), ms(r.get("scrape_openmetrics_s")),
             f"{r['series_per_s']:,.0f}", ms(r["plain_client_s"]), c.ratio(r["scrape_s"], r["plain_client_s"]),
             c.fmt_num(r.get("scrape_peak_mib")), c.fmt_num(r.get("plain_peak_mib"))] for r in result["rows"]]
    return (f"Exporter scrape (bench/scrape.py): one BPF hash map with N keys, two decoded labels; "
            f"median of {result['rounds']} rounds (1M plain client: one). First scrape: a fresh "
            f"collector, nothing cached; scrape: the next ones, as served (exporters/exposition.py). "
            f"Peak: Python allocations during one scrape (tracemalloc).\n\n"
            + c.table(["series", "read map, batch (ms)", "read map, per key (ms)", "first scrape (ms)",
                       "scrape, text (ms)", "scrape, OpenMetrics (ms)", "series/s",
                       "prometheus-client plain (ms)", "scrape / plain", "scrape peak (MiB)",
                       "plain peak (MiB)"], rows))


def render(results: dict) -> str:
    from bench import overhead, startup, streaming
    renderers = {"overhead": overhead.render, "streaming": streaming.render,
                 "scrape": render_scrape, "startup": startup.render}
    m = results["machine"]
    out = [f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_mib']} MiB, kernel {m['kernel']}, "
           f"Python {m['python']}, BCC {m['bcc']}, {m['bpftrace']}; load average at start "
           f"{m['load_at_start'][0]:.2f}; {m['date']}; whole run {results['seconds']:.0f} s."]
    for name in TABLES:
        if name in results:
            out += ["", f"## {TITLES[name]}", "", renderers[name](results[name])]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only", default=",".join(TABLES), help="tables to run (comma-separated)")
    parser.add_argument("--json", default=str(c.ROOT / "bench" / "results.json"), metavar="FILE")
    args = parser.parse_args(argv)
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    if any(t not in TABLES for t in only):
        parser.error(f"--only takes {', '.join(TABLES)}")
    if os.geteuid() != 0:
        print("bench/run: needs root (it loads BPF programs)", file=sys.stderr)
        return 1
    from bench import overhead, startup, streaming
    c.prepare_machine()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    started = time.monotonic()
    results = {"machine": machine()}
    q = args.quick
    runs = {"overhead": lambda: overhead.run(rounds=1 if q else 4, iterations=100_000 if q else 300_000, log=log),
            "streaming": lambda: streaming.run(seconds=0.2 if q else 0.5, execs=200 if q else 1000, log=log),
            "scrape": lambda: scrape_table(rounds=2 if q else 3, log=log),
            "startup": lambda: startup.run(rounds=1 if q else 3, log=log)}
    for name in only:
        log(f"{TITLES[name]}...")
        t0 = time.monotonic()
        results[name] = runs[name]()
        results[name]["seconds"] = time.monotonic() - t0
    results["seconds"] = time.monotonic() - started
    text = render(results)
    print(text)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
