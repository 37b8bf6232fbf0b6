"""Real containers for the tests: runc with a busybox-static rootfs.

No image registry: the rootfs is /bin/busybox (busybox-static, statically
linked) and its applet links. `runc spec` writes the bundle; the test gives
each container a cgroup shaped like a real runtime's (linux.cgroupsPath),
e.g. /system.slice/docker-<64 hex>.scope, so the resolver sees what it would
see on a docker host. Every container is `runc delete -f`-ed at teardown.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tracers import containers

APPLETS = ("sh", "true", "cat", "sleep", "seq", "echo", "ls")
BUSYBOX = "/bin/busybox"  # busybox-static: no libraries to copy


def runc(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    # Files, not pipes: a detached container inherits runc's stdio and would
    # hold a pipe open after runc returns.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(["runc", *args], stdout=out, stderr=err, text=True,
                              stdin=subprocess.DEVNULL, timeout=120, **kw)  # a hang fails, loudly
        out.seek(0)
        err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"runc {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def cgroup2_root() -> str:
    return containers.require_mount()


class Container:
    """One running container: `sleep` as its init, workloads via exec()."""

    def __init__(self, base: Path, cgroup: str, name: str | None = None):
        self.id = secrets.token_hex(32)  # what docker would call it
        self.name = name or f"bpfw-{self.id[:12]}"
        self.cgroup = cgroup.format(id=self.id)
        self.bundle = base / self.name
        rootfs = self.bundle / "rootfs"
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", rootfs / "bin" / applet)
        runc("spec", cwd=self.bundle)
        config_path = self.bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"].pop("rlimits", None)  # setrlimit is refused here
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/sleep", "3600"]
        config["root"]["readonly"] = False
        config["linux"]["cgroupsPath"] = self.cgroup
        config_path.write_text(json.dumps(config))
        runc("run", "-d", "--bundle", str(self.bundle), self.name)

    @property
    def cgroup_dir(self) -> str:
        return os.path.join(cgroup2_root(), self.cgroup.lstrip("/"))

    @property
    def cgroup_id(self) -> int:
        return os.stat(self.cgroup_dir).st_ino

    def exec(self, script: str) -> subprocess.CompletedProcess:
        """sh -c script inside the container (one exec of /bin/sh, then the script's)."""
        return runc("exec", self.name, "/bin/sh", "-c", script)

    def delete(self) -> None:
        runc("delete", "-f", self.name, check=False)


def workload(execs: int, opens: int, path: str) -> str:
    """sh script: `execs` execs of /bin/true and `opens` opens of path (cat)."""
    return (f"i=0; while [ $i -lt {execs} ]; do /bin/true; i=$((i+1)); done; "
            f"i=0; while [ $i -lt {opens} ]; do : < {path}; i=$((i+1)); done")
