"""Container identity and --cgroup on a pure cgroup v2 host: the stock kernel
in the guest mounts the unified hierarchy at /sys/fs/cgroup (the host here is
hybrid, /sys/fs/cgroup/unified). One tracer start: compiles are slow in TCG."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from runclib import Container, workload  # noqa: E402
from tracers import containers  # noqa: E402

pytestmark = pytest.mark.vm


def test_cgroup_of_a_parent_names_and_keeps_both_containers(tracer, tmp_path):
    assert containers.cgroup2_mount() == "/sys/fs/cgroup"
    parent = f"/bpfw-{secrets.token_hex(4)}.slice"
    os.mkdir("/sys/fs/cgroup" + parent)
    made = []
    try:
        run = tracer(["execsnoop", "--json", "--cgroup", parent], ready_timeout=300)
        a = Container(tmp_path, parent + "/docker-{id}.scope")
        made.append(a)
        b = Container(tmp_path, parent + "/libpod-{id}.scope")
        made.append(b)
        a.exec(workload(3, 0, "/"))
        b.exec(workload(2, 0, "/"))
        subprocess.run(["sh", "-c", workload(4, 0, "/")], check=True)
        run.stop()
    finally:
        for c in made:
            c.delete()
        os.rmdir("/sys/fs/cgroup" + parent)
    # runc re-executes itself from a memfd (execveat, empty filename) while
    # its init joins the cgroup: on v2 that may land inside; not the workload.
    events = [e for e in run.json_lines() if "summary" not in e and e["filename"]]
    by = {}
    for e in events:
        ident = e["container"]
        by.setdefault((ident["id"], ident["runtime"]) if ident else None, []).append(e["filename"])
    assert sorted(by) == sorted([(a.id, "docker"), (b.id, "podman")])
    assert sorted(by[(a.id, "docker")]) == ["/bin/sh", "/bin/sleep"] + ["/bin/true"] * 3
    assert sorted(by[(b.id, "podman")]) == ["/bin/sh", "/bin/sleep"] + ["/bin/true"] * 2
