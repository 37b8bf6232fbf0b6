"""Scrape cost of the exporter for 1k to 1M series (root; not a test).

For each size, one BPF hash map holds that many keys (filled from user space
in one batch). Timed, median of several rounds:
  read batch   - only reading the map: one BPF_MAP_LOOKUP_BATCH walk
  read items   - only reading the map key by key (BCC's items(), the fallback)
  scrape       - the exporter's whole /metrics body (exporters.exposition, as
                 served): read, decode labels (cached per key after the first
                 scrape), guard, render text; and the same in OpenMetrics
  first scrape - the same, from a fresh collector (nothing cached yet)
  plain client - prometheus-client rendering the same number of samples from
                 an ordinary labelled Counter (no BPF at all)
  peak memory  - Python allocations at the peak of one scrape (tracemalloc),
                 ours and the plain client's

    .venv/bin/python -m bench.scrape [--sizes 1000,10000,100000,1000000] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporters import exposition, program  # noqa: E402
from exporters.collector import MapCollector, Target  # noqa: E402

C_TEXT = """
struct key { u32 port; u32 nr; };
BPF_HASH(series, struct key, u64, MAX_ENTRIES);
int on_noop(void *ctx) { return 0; }
"""
TOML = """
name = "scrape_bench"
c_file = "bench.bpf.c"
defines = {{ MAX_ENTRIES = {max_entries} }}
[[alternatives]]
name = "tracepoint"
hooks = [{{ kind = "tracepoint", target = "syscalls:sys_enter_getppid", fn = "on_noop" }}]
[[metrics]]
name = "bench_total"
help = "Benchmark series."
map = "series"
labels = [{{ name = "port", field = "port", decoder = "port_host" }},
          {{ name = "syscall", field = "nr", decoder = "syscall_name" }}]
"""


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def fill(table, n: int) -> None:
    keys = (table.Key * n)(*[table.Key(port=i % 65536, nr=i // 65536) for i in range(n)])
    values = (table.Leaf * n)(*[table.Leaf(i + 1) for i in range(n)])
    table.items_update_batch(keys, values)


def plain_client(n: int):
    registry = CollectorRegistry()
    counter = Counter("plain_total", "Same sample count, no BPF.", ["port", "syscall"], registry=registry)
    for i in range(n):
        counter.labels(str(i % 65536), str(i // 65536)).inc(i + 1)
    return registry


def peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(n: int, rounds: int) -> dict:
    from tracers.runtime import Session
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench.bpf.c").write_text(C_TEXT)
        Path(tmp, "bench.toml").write_text(TOML.format(max_entries=n))
        spec, defines = program.load(str(Path(tmp, "bench.toml")))
        with Session(spec, defines) as session:
            table = session.bpf["series"]
            fill(table, n)

            def fresh():
                registry = CollectorRegistry(auto_describe=True)  # as the daemon's
                MapCollector([Target.from_session(session)], registry=registry, max_series=n + 1)
                return registry
            started = time.perf_counter()
            registry = fresh()  # registering collects once: the first scrape
            first = time.perf_counter() - started
            body = exposition.generate_latest(registry)
            assert body.count(b"\nbpfwatch_bench_total{") == n, "every key is one series"
            row = {
                "series": n,
                "read_batch_s": timed(lambda: list(table.items_lookup_batch()), rounds),
                "read_items_s": timed(table.items, max(1, rounds // 2)) if n <= 100_000 else None,
                "first_scrape_s": first,
                "scrape_s": timed(lambda: exposition.generate_latest(registry), rounds),
                "scrape_openmetrics_s": timed(lambda: exposition.generate_latest(registry, True), rounds),
                "scrape_peak_mib": peak_mib(lambda: exposition.generate_latest(registry)),
                "bytes": len(body),
            }
            del registry
    plain = plain_client(n)
    row["plain_client_s"] = timed(lambda: generate_latest(plain), rounds if n <= 100_000 else 1)
    row["plain_peak_mib"] = peak_mib(lambda: generate_latest(plain))
    row["series_per_s"] = n / row["scrape_s"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "bench" / "scrape.json"), metavar="FILE")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.scrape: needs root (it loads a BPF program)", file=sys.stderr)
        return 1
    rows = [measure(int(n), args.rounds) for n in args.sizes.split(",")]
    from bench.main import render_scrape
    print(render_scrape({"rounds": args.rounds, "rows": rows}))
    Path(args.json).write_text(json.dumps({"kernel": os.uname().release, "rounds": args.rounds,
                                           "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
