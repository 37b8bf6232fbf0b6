"""Container identity and filters against real containers (runc, busybox-static).

Each container gets a cgroup shaped as a runtime would lay it out; a twin of
its workload runs on the host. Counts are exact: /bin/sh once per `runc
exec` (the exec of the script itself), then the script's own execs.
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from exporter_helpers import samples, scrape, start_exporter, value
from runclib import Container, cgroup2_root, workload

pytestmark = pytest.mark.kernel

DOCKER = "/system.slice/docker-{id}.scope"


@pytest.fixture
def runc_containers(tmp_path):
    """Factory: start(cgroup template) -> Container; all deleted at teardown."""
    made, parents = [], []

    def start(cgroup: str = DOCKER) -> Container:
        c = Container(tmp_path, cgroup)
        made.append(c)
        return c

    def parent(name: str) -> str:
        """A cgroup path made for the test (components that exist are kept)."""
        path = cgroup2_root()
        for part in name.strip("/").split("/"):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                parents.append(path)
        return "/" + name.strip("/")
    start.parent = parent
    yield start
    for c in made:
        c.delete()
    for path in reversed(parents):
        os.rmdir(path)


@pytest.fixture
def twin_file(runc_containers):
    """A path that exists both on the host and in every container's rootfs."""
    name = f"/tmp/bpfw-twin-{secrets.token_hex(4)}"
    with open(name, "w"):
        pass
    yield name
    os.unlink(name)


def in_rootfs(container: Container, path: str) -> None:
    with open(container.bundle / "rootfs" / path.lstrip("/"), "w"):
        pass


def on_host(script: str) -> int:
    """The twin workload on the host; its sh's pid (the parent of its execs)."""
    proc = subprocess.Popen(["sh", "-c", script])
    assert proc.wait() == 0
    return proc.pid


def host_cgroup_id() -> int:
    with open("/proc/self/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    return os.stat(os.path.join(cgroup2_root(), path.lstrip("/"))).st_ino


def events(run) -> list[dict]:
    return [e for e in run.json_lines() if "summary" not in e]


def of(container, evs):
    return [e for e in evs if e["container"] and e["container"]["id"] == container.id]


def test_execs_and_opens_in_a_container_carry_its_id(tracer, runc_containers, twin_file):
    box = runc_containers()
    in_rootfs(box, twin_file)
    execs = tracer(["execsnoop", "--json"])
    opens = tracer(["opensnoop", "--json", "--path-prefix", twin_file])
    box.exec(workload(7, 5, twin_file))
    host_sh = on_host(workload(7, 5, twin_file))
    execs.stop(), opens.stop()

    ex = events(execs)
    inside = of(box, ex)
    assert [e["filename"] for e in inside] == ["/bin/sh"] + ["/bin/true"] * 7
    assert {e["cgroup_id"] for e in inside} == {box.cgroup_id}
    assert inside[0]["container"] == {"id": box.id, "runtime": "docker", "pod_uid": None,
                                      "qos": None, "pod": None, "namespace": None}
    twin = [e for e in ex if e["ppid"] == host_sh]
    assert len(twin) == 7
    assert all(e["container"] is None and e["cgroup_id"] == host_cgroup_id() for e in twin)

    op = [e for e in events(opens) if e["path"] == twin_file]
    assert len(of(box, op)) == 5
    assert len([e for e in op if e["container"] is None]) == 5
    assert len(op) == 10


def test_container_filter_sees_only_that_container(tracer, runc_containers, twin_file):
    box, other = runc_containers(), runc_containers()
    in_rootfs(box, twin_file)
    in_rootfs(other, twin_file)
    execs = tracer(["execsnoop", "--json", "--container", box.id[:12]])
    opens = tracer(["opensnoop", "--json", "--container", box.id[:12]])
    box.exec(workload(6, 4, twin_file))
    other.exec(workload(6, 4, twin_file))
    on_host(workload(6, 4, twin_file))
    execs.stop(), opens.stop()
    ex = events(execs)
    assert [e["filename"] for e in ex] == ["/bin/sh"] + ["/bin/true"] * 6
    assert all(e["container"]["id"] == box.id for e in ex)
    op = events(opens)
    assert all(e["container"]["id"] == box.id for e in op)
    assert len([e for e in op if e["path"] == twin_file]) == 4


def test_cgroup_of_a_parent_sees_both_children_created_later(tracer, runc_containers):
    parent = runc_containers.parent(f"bpfw-{secrets.token_hex(4)}.slice")
    run = tracer(["execsnoop", "--json", "--cgroup", parent])
    a = runc_containers(parent + "/docker-{id}.scope")
    b = runc_containers(parent + "/docker-{id}.scope")
    a.exec(workload(3, 0, "/"))
    b.exec(workload(4, 0, "/"))
    on_host(workload(5, 0, "/"))
    run.stop()
    ex = events(run)
    # each container's init (sleep), its `runc exec` sh, then the script's execs
    assert sorted(e["filename"] for e in of(a, ex)) == ["/bin/sh", "/bin/sleep"] + ["/bin/true"] * 3
    assert sorted(e["filename"] for e in of(b, ex)) == ["/bin/sh", "/bin/sleep"] + ["/bin/true"] * 4
    assert len(ex) == 5 + 6


def test_containers_column_shows_the_short_id(tracer, runc_containers):
    box = runc_containers()
    run = tracer(["execsnoop", "--containers"])
    box.exec(workload(2, 0, "/"))
    on_host("/bin/true")
    run.stop()
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CONTAINER    TIME")
    ours = [line for line in lines if line.startswith(box.id[:12] + " ")]
    assert len(ours) == 3 and sum(line.endswith("/bin/true  /bin/true") for line in ours) == 2
    assert any(line.startswith("-            ") and line.endswith("/bin/true  /bin/true") for line in lines)


def cli(*args: str, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "tracers", *args], capture_output=True,
                          text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)) + "/..")


def test_bad_input_is_one_line(tmp_path):
    for args, message in (
            (["--container", "zz"], "no running container's id starts with 'zz'"),
            (["--cgroup", str(tmp_path)], "is not a cgroup v2 directory"),
            (["--cgroup", "/sys/fs/cgroup/memory" if os.path.isdir("/sys/fs/cgroup/memory") else "/proc"],
             "is not a cgroup v2 directory")):
        proc = cli("execsnoop", *args)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_no_cgroup2_mounted_is_one_line():
    # a private mount namespace without the cgroup2 mount
    root = cgroup2_root()
    script = f"umount -l {root} && exec {sys.executable} -m tracers execsnoop --cgroup /"
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("bpfwatch execsnoop: error: argument --cgroup: no cgroup v2 hierarchy "
                                   "is mounted (see /proc/self/mounts); mount one with: "
                                   "mount -t cgroup2 none /sys/fs/cgroup/unified")


def test_gone_container_keeps_its_name_in_late_events(tracer, runc_containers):
    # the events of a container that exits before they are read still name it
    box = runc_containers()
    run = tracer(["execsnoop", "--json", "--container", box.id[:12]])
    box.exec(workload(2, 0, "/"))
    box.delete()
    assert not os.path.exists(box.cgroup_dir)
    run.stop(signal.SIGINT)
    assert [e["container"]["id"] for e in events(run)] == [box.id] * 3


def test_exporter_serves_exact_per_container_counts(runc_containers):
    box = runc_containers()
    pod = runc_containers.parent(f"kubepods/besteffort/pod{uuid.uuid4()}")
    k8s = runc_containers(pod + "/{id}")  # the kubelet's cgroupfs layout
    proc, url = start_exporter("--tracers", "execsnoop", "--per-container")
    try:
        before = samples(scrape(url))
        box.exec(workload(9, 0, "/") + "; /bin/nope 2>/dev/null; /bin/nope 2>/dev/null; true")
        k8s.exec(workload(4, 0, "/"))
        on_host(workload(3, 0, "/"))
        after = samples(scrape(url))
    finally:
        assert proc.stop(signal.SIGTERM) == 0
        proc.close()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert delta("bpfwatch_execs_total", container=box.id[:12], pod="", namespace="") == 1 + 9 + 2
    assert delta("bpfwatch_execs_total", container=k8s.id[:12], pod="", namespace="") == 1 + 4
    assert delta("bpfwatch_execs_total", container="", pod="", namespace="") >= 3  # the host
    assert delta("bpfwatch_exec_failures_total", errno="ENOENT", container=box.id[:12], pod="",
                 namespace="") == 2
    assert value(after, "bpfwatch_series_folded", tracer="execsnoop", metric="execs_total") == 0


def test_syscount_per_container_counts_execve_exactly(tracer, runc_containers):
    box = runc_containers()
    run = tracer(["syscount", "--per-container", "--syscall", "execve", "--json"])
    box.exec(workload(7, 0, "/"))
    on_host(workload(5, 0, "/"))
    run.stop()
    rows = run.json_lines()[-1]["syscalls"]
    assert [r["count"] for r in rows if r["container"] == box.id[:12]] == [8]  # sh, then 7
    assert sum(r["count"] for r in rows if r["container"] is None) >= 6


def test_cpudist_per_container_with_the_container_filter(tracer, runc_containers):
    box, other = runc_containers(), runc_containers()
    run = tracer(["cpudist", "--per-container", "--container", box.id[:12], "--json"])
    busy = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done"
    box.exec(busy)
    other.exec(busy)
    on_host(busy)
    run.stop()
    hists = run.json_lines()[-1]["histograms"]
    assert [h["container"] for h in hists] == [box.id[:12]]
    assert hists[0]["total"] > 0


NAPPER_C = r"""
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    /* A child named napkid: the waits runc's init had before the exec are
       accounted under the parent's name, not the child's. */
    if (fork() == 0) {
        prctl(PR_SET_NAME, "napkid");
        struct timespec ms = {0, 1000000};
        for (int i = atoi(argv[1]); i > 0; i--)
            nanosleep(&ms, NULL);  /* each wakeup: one wait on a run queue */
        return 0;
    }
    wait(NULL);
    return 0;
}
"""


def test_runqlat_per_container_counts_each_containers_waits(tracer, runc_containers, tmp_path):
    (tmp_path / "napper.c").write_text(NAPPER_C)
    napper = tmp_path / "napper"
    subprocess.run(["gcc", "-O1", "-static", "-o", str(napper), str(tmp_path / "napper.c")], check=True)
    boxes = {runc_containers(): 40, runc_containers(): 17}
    for box in boxes:
        shutil.copy(napper, box.bundle / "rootfs" / "napper")
    run = tracer(["runqlat", "--per-container", "--comm", "napkid", "--json"])
    first = next(iter(boxes))
    only_first = tracer(["runqlat", "--container", first.id[:12], "--comm", "napkid", "--json"])
    for box, naps in boxes.items():
        box.exec(f"/napper {naps}")
    subprocess.run([str(napper), "23"], check=True)
    run.stop()
    only_first.stop()
    (hist,) = only_first.json_lines()[-1]["histograms"]
    assert 40 + 1 <= sum(b["count"] for b in hist["buckets"]) <= 40 + 2
    counts = {h["container"]: sum(b["count"] for b in h["buckets"])
              for h in run.json_lines()[-1]["histograms"]}
    assert set(counts) == {box.id[:12] for box in boxes} | {None}
    # each nap's wakeup, plus the wait after fork; a preemption may add one
    for box, naps in boxes.items():
        assert naps + 1 <= counts[box.id[:12]] <= naps + 2, counts
    assert 23 + 1 <= counts[None] <= 23 + 2, counts


def test_guard_rules_name_a_container_and_a_cgroup(tracer, runc_containers, tmp_path):
    parent = runc_containers.parent(f"bpfw-{secrets.token_hex(4)}.slice")
    a = runc_containers(parent + "/docker-{id}.scope")
    rules = tmp_path / "rules.toml"
    rules.write_text(f"""
[[rules]]
name = "true_in_a"
kind = "exec"
severity = "low"
action = "alert"
path = ["/bin/true"]
container = ["{a.id[:12]}"]

[[rules]]
name = "true_under_parent"
kind = "exec"
severity = "low"
action = "alert"
path = ["/bin/true"]
cgroup = ["{parent}"]
""")
    run = tracer(["guard", "--rules", str(rules), "--json"])
    b = runc_containers(parent + "/docker-{id}.scope")  # created after the start
    a.exec(workload(3, 0, "/"))
    b.exec(workload(4, 0, "/"))
    on_host(workload(5, 0, "/"))
    assert run.stop() == 0
    (totals,) = [line["alerts_total"] for line in run.json_lines() if "alerts_total" in line]
    assert totals == {"true_in_a": 3, "true_under_parent": 3 + 4}
    alerts = [e for e in run.json_lines() if "rule" in e]
    assert sorted((e["rule"], e["container"]["id"]) for e in alerts) == sorted(
        [("true_in_a", a.id)] * 3 + [("true_under_parent", a.id)] * 3 + [("true_under_parent", b.id)] * 4)


def test_guard_rule_naming_an_unknown_container_is_one_line(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "x"\nkind = "exec"\nseverity = "low"\naction = "alert"\n'
                     'container = ["ffffffffffff0000"]\n')
    out = cli("guard", "--rules", str(rules), "-d", "1")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"bpfwatch guard: rules {rules}: rules[0] 'x'.container: "
                                  "no running container's id starts with 'ffffffffffff0000'")
