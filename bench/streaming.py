"""Table 2: event streaming, the ring buffer consumer, and tracers under storms.

A synthetic storm (bench/storm.bpf.c: one event per getppid() of the pinned
C workload, offered at fixed rates and flat out) is consumed in Python by
bpfwatch's own consumer (tracers/runtime/ringbuf.py: mmapped ring, batches,
struct decode), by BCC's (a C callback and a ctypes cast per event: what
tracers did before) and through a perf buffer. The kernel counts attempts
and failed sends, so loss = counted, and attempts = received + dropped is
checked. Both buffers get 1 MiB in total.
Then tracers under storms (execs one at a time; opens paced): events
delivered and the tracer's CPU time per event (schedstat, ns), bpfwatch
(JSON and text) beside bpftrace printing the same fields.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench import harness as c

RATES = (10_000, 25_000, 50_000, 100_000, 200_000, 300_000, 0)  # events/s offered; 0 = flat out
SECONDS = 1.0
SUSTAINED = (300_000, 5.0)  # the goal: this many small events/s, lossless, this long
SIZES = {"64 B": 40, "2.9 KB (execsnoop)": 2840}  # PAD for the struct size
RING_PAGES = 256  # 1 MiB shared
PERF_PAGES = 256 // (os.cpu_count() or 1)  # per CPU: 1 MiB in total (a power of two)
CONSUMERS = {"ring": "ring buffer, bpfwatch (mmap, struct)",
             "ring-bcc": "ring buffer, BCC callback + ctypes", "perf": "perf buffer, BCC"}
EXEC_ARGS = ["--one", "two", "three"]  # argv of each exec: the tracers print it joined
OPEN_RATE, OPEN_SECONDS = 20_000, 2.0


def _storm(kind: str, pad: int, rates=RATES, seconds: float = SECONDS) -> list[dict]:
    from bcc import BPF
    from tracers.runtime import ringbuf
    flags = [f"-DPAD={pad}", f"-DPAGES={RING_PAGES}"] + (["-DRINGBUF=1"] if kind != "perf" else [])
    b = BPF(src_file=str(c.ROOT / "bench" / "storm.bpf.c"), cflags=flags)
    got = {"n": 0, "lost": 0}
    table = b["events"]
    decoder = ringbuf.decoder_for(table)
    reader = None

    def on_event(*args):
        table.event(args[1])  # what tracers did first with each event
        got["n"] += 1

    def on_record(record):  # decoded as tracers get them now (runtime.Session.poll_events)
        got["n"] += 1

    def on_lost(count):
        got["lost"] += count

    if kind == "ring":
        reader = ringbuf.Reader(table.map_fd, table.max_entries, decoder)

        def consume(proc):
            ringbuf.pace(reader, lambda: reader.drain(on_record), None, lambda: proc.poll() is not None,
                         lambda: None)
        poll = lambda ms: (reader.wait(ms / 1000), reader.drain(on_record))
    else:
        if kind == "ring-bcc":
            table.open_ring_buffer(on_event)
            poll = b.ring_buffer_poll
        else:
            table.open_perf_buffer(on_event, page_cnt=PERF_PAGES, lost_cb=on_lost)
            poll = b.perf_buffer_poll

        def consume(proc):
            while proc.poll() is None:
                poll(50)
    counts = b["counts"]
    rows = []
    try:
        for rate in rates:
            counts.clear()
            got.update(n=0, lost=0)
            n = int((rate or 2_000_000) * seconds)
            proc = subprocess.Popen([c.workload(), "getppid", str(n), str(rate)],
                                    stdout=subprocess.PIPE, text=True, preexec_fn=c.pinned())
            consume(proc)
            _, secs = proc.stdout.read().split()
            attempts = sum(counts[counts.Key(0)])
            dropped = sum(counts[counts.Key(1)])
            deadline = time.monotonic() + 3
            while got["n"] + dropped < attempts and time.monotonic() < deadline:
                poll(20)
            rows.append({"buffer": kind, "consumer": CONSUMERS[kind], "offered_per_s": rate or None,
                         "seconds": seconds, "achieved_per_s": n / float(secs),
                         "attempts": attempts, "received": got["n"], "dropped_in_kernel": dropped,
                         "perf_lost_reported": got["lost"] if kind == "perf" else None,
                         "loss_pct": 100.0 * dropped / attempts if attempts else 0.0,
                         "consistent": attempts == got["n"] + dropped})
    finally:
        if reader is not None:
            reader.close()
        if kind == "perf":  # free the per-CPU readers while the map is still open
            for key in list(table._open_key_fds):
                del table[key]
        b.cleanup()
    return rows


def exec_target() -> str:
    """A copy of /bin/true with a name to match on."""
    target = Path(c.workload()).parent / "bpfbench_true"
    if not target.exists():
        shutil.copy("/bin/true", target)
    return str(target)


def _cpu_per_event(label: str, argv: list[str], ready, match: str, workload: list[str],
                   expected: int, cwd=c.ROOT) -> dict:
    """Run `workload` under the tool; its CPU time per matching line of output."""
    row = {"tool": label, "events": expected}
    try:
        with c.Tool(argv, ready, match=match, cwd=cwd) as tool:
            row["ready_s"] = tool.ready_after
            time.sleep(0.3)  # bpftrace attaches after its line
            cpu0 = tool.cpu_seconds()
            out = c.run_workload(*workload)
            deadline = time.monotonic() + 5
            while tool.matched < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # late lines (a lossy tool) and the CPU they cost
            cpu = tool.cpu_seconds() - cpu0
            if tool.proc.poll() is not None:
                raise RuntimeError(f"exited {tool.proc.returncode} while tracing: {tool.why()}")
            row["hwm_mib"] = next(int(l.split()[1]) / 1024 for l in open(f"/proc/{tool.proc.pid}/status")
                                  if l.startswith("VmHWM:"))
            tool.stop()
            row.update(workload_out=out, received=tool.matched,
                       cpu_us_per_event=1e6 * cpu / max(1, tool.matched))
    except RuntimeError as exc:
        row["error"] = str(exc)
    return row


def _exec_storm(execs: int) -> list[dict]:
    """bpfwatch execsnoop (JSON, text) vs bpftrace with and without argv vs execsnoop-bpfcc."""
    target = exec_target()
    same_fields = ("tracepoint:syscalls:sys_enter_execve { printf(\"%d %d %s %s \", pid, "
                   "curtask->real_parent->tgid, comm, str(args->filename)); join(args->argv); }")
    tools = [
        # matched on the comm: at exit it is the new program's, at entry the parent's
        ("bpfwatch execsnoop --json", [*c.BPFWATCH, "execsnoop", "--json"], c.READY_BPFWATCH,
         '"comm":"bpfbench_true"'),
        ("bpfwatch execsnoop", [*c.BPFWATCH, "execsnoop"], c.READY_BPFWATCH, " bpfbench_true "),
        ("bpftrace, same fields (pid ppid comm filename argv)", ["bpftrace", "-e", same_fields],
         c.READY_BPFTRACE, "three"),
        ("bpftrace, no argv (pid ppid comm filename)",
         ["bpftrace", "-e", "tracepoint:syscalls:sys_enter_execve { printf(\"%d %d %s %s\\n\", pid, "
          "curtask->real_parent->tgid, comm, str(args->filename)); }"], c.READY_BPFTRACE, " bpfbench_wl "),
        ("execsnoop-bpfcc", ["execsnoop-bpfcc"], c.READY_BCC, "bpfbench_true"),
    ]
    rows = []
    for label, argv, ready, match in tools:
        row = _cpu_per_event(label, argv, ready, match, ["exec", str(execs), str(target), *EXEC_ARGS], execs)
        if "workload_out" in row:
            row["execs_per_s"] = execs / float(row["workload_out"].split()[1])
        rows.append(row)
    return rows


def _open_storm(rate: int = OPEN_RATE, seconds: float = OPEN_SECONDS) -> list[dict]:
    """bpfwatch opensnoop (JSON, text) vs bpftrace printing the same fields, opens paced."""
    n = int(rate * seconds)
    same_fields = ("tracepoint:syscalls:sys_enter_openat { @f[tid] = args->filename; @fl[tid] = args->flags; } "
                   "tracepoint:syscalls:sys_exit_openat /@f[tid]/ { printf(\"%d %d %s %d %d %s\\n\", pid, "
                   "tid, comm, @fl[tid], args->ret, str(@f[tid])); delete(@f[tid]); delete(@fl[tid]); }")
    tools = [("bpfwatch opensnoop --json", [*c.BPFWATCH, "opensnoop", "--json"], c.READY_BPFWATCH,
              '"comm":"bpfbench_wl"'),
             ("bpfwatch opensnoop", [*c.BPFWATCH, "opensnoop"], c.READY_BPFWATCH, " bpfbench_wl "),
             ("bpftrace, same fields (pid tid comm flags ret path)", ["bpftrace", "-e", same_fields],
              c.READY_BPFTRACE, " bpfbench_wl "),
             ("opensnoop-bpfcc", ["opensnoop-bpfcc"], c.READY_BCC, "bpfbench_wl")]
    return [_cpu_per_event(label, argv, ready, match, ["open", str(n), str(rate)], n)
            for label, argv, ready, match in tools]


def run(seconds: float = SECONDS, execs: int = 2000, log=print) -> dict:
    storms = []
    for size, pad in SIZES.items():
        for kind in CONSUMERS:
            rows = _storm(kind, pad, seconds=seconds)
            for r in rows:
                r["event_size"] = size
            storms += rows
            log(f"  streaming: {CONSUMERS[kind]}, {size} events done")
    rate, secs = SUSTAINED
    sustained = _storm("ring", SIZES["64 B"], rates=(rate,), seconds=secs)[0]
    log("  streaming: sustained rate done")
    out = {"seconds_per_rate": seconds, "storm": storms, "sustained": sustained,
           "exec": _exec_storm(execs)}
    log("  streaming: exec storm done")
    out["open"] = _open_storm()
    return out


def _per_event_table(rows: list[dict], peer: str) -> str:
    """Tools' CPU per event, each beside the bpftrace line printing the same fields."""
    base = next((r.get("cpu_us_per_event") for r in rows if r["tool"].startswith(peer)), None)
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["tool"], None, "fails: " + r["error"], None])
            continue
        mine = r["tool"].startswith("bpfwatch")
        out.append([r["tool"], f"{r['received']}/{r['events']}", f"{r['cpu_us_per_event']:.1f}",
                    c.ratio(r["cpu_us_per_event"], base) if mine else ""])
    return c.table(["tool", "delivered", "tracer CPU us/event", "bpfwatch / bpftrace same fields"], out)


def render(result: dict) -> str:
    lines = []
    for r in result["storm"]:
        lines.append([r["event_size"], r.get("consumer", r["buffer"]),
                      f"{r['offered_per_s']:,}" if r["offered_per_s"] else "flat out",
                      f"{r['achieved_per_s']:,.0f}", f"{r['received']:,}", f"{r['dropped_in_kernel']:,}",
                      f"{r['loss_pct']:.1f}%",
                      "yes" if r["consistent"] else "NO"])
    best = {}
    for r in result["storm"]:
        k = (r["event_size"], r.get("consumer", r["buffer"]))
        if r["dropped_in_kernel"] == 0:
            best[k] = max(best.get(k, 0), r["achieved_per_s"])
    summary = "; ".join(f"{size}, {buf}: {rate:,.0f}/s" for (size, buf), rate in best.items())
    out = ["Event streaming: synthetic tracepoint storm (getppid from a pinned C loop), 1 MiB buffer "
           "in total, consumed by bpfwatch's consumer (mmapped ring, batches, struct decode), by BCC's "
           "(C callback and ctypes cast per event) and through a perf buffer. Drops are counted in the "
           "kernel; `attempts = received + dropped` is checked.", "",
           c.table(["event", "consumer", "offered/s", "achieved/s", "received", "dropped", "loss",
                    "counts add up"], lines), "",
           f"Highest rate delivered without loss: {summary or 'none'}."]
    s = result.get("sustained")
    if s:
        out += ["", f"Sustained: {s['offered_per_s']:,} 64 B events/s offered for {s['seconds']:.0f} s "
                f"(achieved {s['achieved_per_s']:,.0f}/s): {s['received']:,} received, "
                f"{s['dropped_in_kernel']:,} dropped ({s['loss_pct']:.2f}%), counts add up: "
                f"{'yes' if s['consistent'] else 'NO'}."]
    ex = result["exec"]
    rate = next((f"{r['execs_per_s']:,.0f} execs/s" for r in ex if "execs_per_s" in r), "")
    out += ["", f"Exec storm: {ex[0]['events']} execs of a copy of /bin/true with three arguments, "
            f"one at a time ({rate}); tracer CPU time from schedstat.", "",
            _per_event_table(ex, "bpftrace, same fields")]
    if "open" in result:
        op = result["open"]
        out += ["", f"Open storm: {op[0]['events']:,} open+close of /dev/null paced at "
                f"{OPEN_RATE:,}/s.", "", _per_event_table(op, "bpftrace, same fields")]
    return "\n".join(out)
