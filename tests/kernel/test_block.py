"""biolatency and biosnoop on the host kernel: exact counts on a loop device."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, bpf_objects, wait_gone

pytestmark = pytest.mark.kernel

OUR_PROGS = {"on_insert", "on_issue", "on_complete"}
READS, WRITES, FSYNCS = 11, 5, 3

# O_DIRECT on the loop device itself: no page cache, so each 4 KiB pread or
# pwrite is one request; each fsync is one flush. Offsets are distinct, so
# nothing merges.
WORKLOAD = textwrap.dedent("""
    import mmap, os, sys
    dev, reads, writes, fsyncs = sys.argv[1], *map(int, sys.argv[2:])
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
    buf.write(b"w" * 4096)
    for i in range(writes):
        assert os.pwritev(fd, [buf], (100 + 2 * i) * 4096) == 4096
    for i in range(reads):
        assert os.preadv(fd, [buf], (1000 + 2 * i) * 4096) == 4096
    for i in range(fsyncs):
        os.fsync(fd)
    os.close(fd)
""")


@pytest.fixture
def loop_disk(tmp_path):
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(image)],
                         capture_output=True, text=True, check=True).stdout.strip()
    yield dev
    subprocess.run(["losetup", "-d", dev], check=True)


def run_workload(dev) -> int:
    child = subprocess.Popen([sys.executable, "-c", WORKLOAD, dev, str(READS), str(WRITES), str(FSYNCS)])
    assert child.wait(60) == 0
    return child.pid


def test_exact_io_counts(tracer, loop_disk):
    disk = os.path.basename(loop_disk)
    snoop = tracer(["biosnoop", "--json", "--disk", disk])  # vda may be busy: no drops
    per_disk = tracer(["biolatency", "-D", "-F", "--json"])
    queued = tracer(["biolatency", "-Q", "-m", "--disk", disk, "--json"])
    pid = run_workload(loop_disk)
    for run in (snoop, per_disk, queued):  # stop together: all see the same I/O
        run.proc.send_signal(signal.SIGINT)
    for run in (snoop, per_disk, queued):
        assert run.wait(30) == 0  # not stop(): a second SIGINT could land after cleanup

    events = [e for e in snoop.json_lines() if e.get("disk") == disk]
    data = [e for e in events if e["bytes"]]
    flushes = [e for e in events if not e["bytes"]]
    assert len(data) == READS + WRITES
    assert {e["pid"] for e in data} == {pid}
    assert all(e["bytes"] == 4096 and e["error"] is None for e in data)
    assert sorted(e["sector"] for e in data if e["rwbs"].startswith("W")) == \
        [(100 + 2 * i) * 8 for i in range(WRITES)]
    assert sorted(e["sector"] for e in data if e["rwbs"].startswith("R")) == \
        [(1000 + 2 * i) * 8 for i in range(READS)]
    assert len(flushes) == FSYNCS and all(e["rwbs"].startswith("F") for e in flushes)
    assert all(e["latency_ms"] >= 0 for e in events)
    assert snoop.json_lines()[-1]["summary"]["events_dropped"] == 0

    hists = [h for h in per_disk.json_lines()[-1]["histograms"] if h["disk"] == disk]
    by_op = {}
    for h in hists:
        by_op[h["flags"][0]] = by_op.get(h["flags"][0], 0) + h["total"]
        assert h["total"] == sum(b["count"] for b in h["buckets"])
    assert by_op == {"R": READS, "W": WRITES, "F": FSYNCS}, hists

    final = queued.json_lines()[-1]
    assert final["unit"] == "msecs"
    assert [h["total"] for h in final["histograms"]] == [READS + WRITES + FSYNCS]


def test_pid_filter_keeps_the_issuer(tracer, loop_disk):
    # The issuer is recorded at insert/issue: -p keeps the child's I/O even
    # though completions run in interrupts. The child waits for the tracer.
    disk = os.path.basename(loop_disk)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()\n" + WORKLOAD,
                              loop_disk, "3", "2", "0"], stdin=subprocess.PIPE)
    run = tracer(["biosnoop", "--json", "-p", str(child.pid), "--disk", disk])
    child.stdin.close()
    assert child.wait(60) == 0
    run.stop()
    events = [e for e in run.json_lines() if "summary" not in e]
    assert len(events) == 5 and {e["pid"] for e in events} == {child.pid}


@pytest.mark.parametrize("args, words", [
    (["biolatency", "--disk", "nosuchdisk"], "no block device named 'nosuchdisk'"),
    (["biosnoop", "--disk", "../../etc"], "disk name"),
    (["biolatency", "1", "0"], "positive"),
    (["biolatency", "-p", "0"], "positive"),
])
def test_bad_input_gets_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, ending", [
    (["biolatency", "-Q"], "duration"), (["biolatency", "-D"], "SIGINT"),
    (["biosnoop"], "SIGTERM"), (["biosnoop"], "SIGKILL"),
])
def test_nothing_left_after(tracer, args, ending):
    before = bpf_objects(OUR_PROGS)
    if ending == "duration":
        run = tracer([*args, "--duration", "0.5"])  # -d is --disk, as in bcc
        assert run.wait(30) == 0
    else:
        run = tracer(args)
        assert bpf_objects(OUR_PROGS)["prog"] - before["prog"], "tracer loaded no program?"
        assert run.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    assert wait_gone(before, names=OUR_PROGS) == {"prog": set(), "link": set()}


def test_per_container_histograms_follow_the_issuer(tracer, loop_disk):
    """I/O from a task in a docker-shaped cgroup lands in that container's
    histogram, a host twin's in the host's ('-' / null)."""
    import secrets

    from runclib import cgroup2_root
    ident = secrets.token_hex(32)
    cgroup = os.path.join(cgroup2_root(), "system.slice", f"docker-{ident}.scope")
    os.makedirs(cgroup)
    try:
        disk = os.path.basename(loop_disk)
        run = tracer(["biolatency", "--per-container", "--disk", disk, "--json"])
        boxed = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()\n" + WORKLOAD,
                                  loop_disk, "3", "2", "0"], stdin=subprocess.PIPE)
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(boxed.pid))
        boxed.stdin.close()
        assert boxed.wait(60) == 0
        subprocess.run([sys.executable, "-c", WORKLOAD, loop_disk, "4", "3", "0"], check=True)
        run.stop()
    finally:
        os.rmdir(cgroup)
    totals = {h["container"]: h["total"] for h in run.json_lines()[-1]["histograms"]}
    assert totals == {ident[:12]: 3 + 2, None: 4 + 3}
