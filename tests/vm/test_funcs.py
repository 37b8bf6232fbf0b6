"""funccount and funclatency on the stock kernel: kprobe and fentry agree
with the calls made, and SIGKILL leaves no probe behind.

Each pair of tracers (kprobe, fentry) starts once and serves both the exact
count and the leak check: they print every second and are then killed."""
import signal
import time

import pytest

from vmtools import child, go, kprobe_events, kprobes_listed, start_all, tracing_programs

pytestmark = pytest.mark.vm


def wait_until(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def counts(run) -> dict:
    out: dict = {}
    for line in run.json_lines():
        for row in line["counts"]:
            out[row["probe"]] = out.get(row["probe"], 0) + row["count"]
    return out


def kill_and_check_nothing_left(runs, target, before_events, before_tracing):
    assert target in kprobes_listed()
    assert tracing_programs() - before_tracing, "no fentry/fexit program loaded?"
    for run in runs:
        assert run.stop(signal.SIGKILL) == -9
    assert wait_until(lambda: target not in kprobes_listed()), kprobes_listed()
    assert wait_until(lambda: tracing_programs() == before_tracing), tracing_programs()
    assert kprobe_events() == before_events


def test_funccount_kprobe_and_fentry_count_exactly_then_leave_nothing(tracer):
    before_events, before_tracing = kprobe_events(), tracing_programs()
    work = child(getpgid=41, getsid=13)
    # matches getpgid, getsid, getresuid, getresgid: one program, four cookies
    args = ["funccount", "--json", "-p", str(work.pid), "__x64_sys_get*id", "1"]
    runs = start_all(tracer, [[*args, "--hook", "kprobe"], [*args, "--hook", "fentry"]])
    assert "via kprobe" in runs[0].stderr and "via fentry" in runs[1].stderr
    go(work)
    for run in runs:
        assert wait_until(lambda: counts(run).get("__x64_sys_getsid") == 13), run.stdout
        time.sleep(1.5)  # one more interval: nothing late, nothing extra
        got = counts(run)
        assert (got["__x64_sys_getpgid"], got["__x64_sys_getsid"]) == (41, 13), run.stdout
        assert run.json_lines()[-1]["probes"] == 4
    kill_and_check_nothing_left(runs, "__x64_sys_getsid", before_events, before_tracing)


def test_funclatency_kprobe_and_fentry_totals_equal_the_calls_then_leave_nothing(tracer):
    before_events, before_tracing = kprobe_events(), tracing_programs()
    work = child(getpgid=29)
    args = ["funclatency", "--json", "-p", str(work.pid), "__x64_sys_getpgid", "1"]
    runs = start_all(tracer, [[*args, "--hook", "kprobe"], [*args, "-u", "--hook", "fentry"]])
    go(work)
    for run, unit in zip(runs, ("nsecs", "usecs")):
        def total():
            return sum(line["total"] for line in run.json_lines())
        assert wait_until(lambda: total() == 29), run.stdout
        time.sleep(1.5)
        assert total() == 29
        assert {line["unit"] for line in run.json_lines()} == {unit}
        assert sum(b["count"] for line in run.json_lines() for b in line["buckets"]) == 29
    kill_and_check_nothing_left(runs, "__x64_sys_getpgid", before_events, before_tracing)


def test_funccount_lists_and_skips_what_fentry_cannot_probe(tracer):
    # "f" and "f.constprop.0": the clone is traceable but not in BTF.
    names = [line.split()[0] for line in open("/sys/kernel/tracing/available_filter_functions")]
    known = set(names)
    base = next(n.split(".")[0] for n in names if "." in n and n.split(".")[0] in known
                and sum(m.startswith(n.split(".")[0]) for m in names) <= 3)
    run = tracer(["funccount", "--json", "--hook", "fentry", "-d", "1", base + "*"],
                 ready_timeout=600)
    assert run.wait(120) == 0, run.stderr
    skipped = [line for line in run.stderr.splitlines() if "skipped" in line]
    assert skipped and all("not found in vmlinux BTF" in line for line in skipped), run.stderr
    assert any(f"skipped {base}." in line for line in skipped)
    assert run.json_lines()[-1]["skipped"] == len(skipped) and run.json_lines()[-1]["probes"] >= 1
