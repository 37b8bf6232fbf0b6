"""The Debian package: built from this checkout with Debian's tooling,
installed with apt (dependencies resolve), run from /usr/bin, purged without
a trace. Its systemd unit passes `systemd-analyze verify` as installed and
rates at most 4.5 in `systemd-analyze security`."""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

UNIT = "/lib/systemd/system/bpfwatch-exporter.service"
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=120", "-y", "-q"]
# Run from outside the checkout, with a plain environment: nothing but the package.
CLEAN = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
OURS = ["/usr/lib/bpfwatch", "/usr/bin/bpfwatch", "/usr/share/bpfwatch", UNIT,
        "/var/cache/bpfwatch", "/var/cache/private/bpfwatch", "/run/bpfwatch",
        "/usr/share/doc/bpfwatch", "/usr/share/bash-completion/completions/bpfwatch"]


def sh(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120),
                          env=dict(CLEAN, DEBIAN_FRONTEND="noninteractive"), **kw)


def installed() -> bool:
    return "install ok installed" in sh("dpkg-query", "-W", "-f=${Status}", "bpfwatch").stdout


CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    libc.sched_get_priority_max(0)
"""


def count_from_usr_bin(calls: int) -> int:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(calls)], stdin=subprocess.PIPE, text=True)
    tracer = subprocess.Popen(["/usr/bin/bpfwatch", "syscount", "--json", "-p", str(child.pid)],
                              cwd="/", env=CLEAN, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        ready = tracer.stderr.readline()
        assert "Hit Ctrl-C to end." in ready, ready + tracer.stderr.read()
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(30) == 0
        tracer.send_signal(2)
        out, err = tracer.communicate(timeout=30)
    finally:
        tracer.kill()
        child.kill()
    assert tracer.returncode == 0, err
    rows = [r for line in out.splitlines() if line.startswith("{")
            for r in json.loads(line)["syscalls"] if r["syscall"] == "sched_get_priority_max"]
    return sum(r["count"] for r in rows)


def test_package_builds_installs_runs_and_purges(tmp_path):
    assert not installed(), "bpfwatch is installed on this machine: this test would purge it"
    build = sh("/usr/bin/python3", "-m", "tracers.packaging.build_deb", "--out", str(tmp_path),
               cwd=ROOT, timeout=300)
    assert build.returncode == 0, build.stderr
    deb = Path(build.stdout.strip())
    assert deb.name == "bpfwatch_0.1.0_all.deb" and deb.parent == tmp_path
    assert not (ROOT / "debian").exists()  # the checkout's top level stays as it is

    install = sh(*APT, "install", f"./{deb.name}", cwd=tmp_path, timeout=300)
    try:
        assert install.returncode == 0, install.stdout[-2000:] + install.stderr
        files = sh("dpkg", "-L", "bpfwatch").stdout.split()

        # private: the generic package names never reach the global site-packages
        assert not [f for f in files if "/dist-packages/" in f or "/site-packages/" in f]
        assert "/usr/lib/bpfwatch/tracers/cli.py" in files
        assert sh("/usr/bin/python3", "-c", "import tracers", cwd="/").returncode != 0
        for page in ("bpfwatch", "bpfwatch-syscount", "bpfwatch-exporter", "bpfwatch-offcputime"):
            assert f"/usr/share/man/man8/{page}.8.gz" in files
        assert "/usr/share/bpfwatch/examples/syscall_errors.toml" in files
        assert "/usr/lib/bpfwatch/bpf_c/bpfwatch.h" in files and UNIT in files

        doctor = sh("/usr/bin/bpfwatch", "doctor", cwd="/")
        assert doctor.returncode == 0, doctor.stderr
        assert re.search(r"^tracepoint\s+yes", doctor.stdout, re.M)
        assert [line.split()[0] for line in doctor.stdout.splitlines()].count("headers") == 1

        assert count_from_usr_bin(37) == 37

        check = sh("/usr/bin/bpfwatch", "exporter", "--check", cwd="/")
        assert check.returncode == 0, check.stderr
        assert "NOT ATTACHED" not in check.stdout and "syscount" in check.stdout
        assert "bpfwatch_execs_total" in scrape_from_usr_bin()  # Debian's prometheus-client 0.16

        verify = sh("systemd-analyze", "verify", UNIT)
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
        assert exposure(UNIT) <= 4.5
    finally:
        purge = sh(*APT, "purge", "bpfwatch", timeout=300)
    assert purge.returncode == 0, purge.stderr
    assert not installed()
    assert [f for f in files if os.path.lexists(f) and not os.path.isdir(f)] == []  # /lib: usrmerge's
    assert [p for p in OURS if os.path.lexists(p)] == []
    assert not list(Path("/etc/systemd/system").rglob("*bpfwatch*"))
    assert not list(Path("/var/lib/systemd").glob("deb-systemd-helper-*/**/*bpfwatch*"))


def scrape_from_usr_bin() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exporter = subprocess.Popen(["/usr/bin/bpfwatch", "exporter", "--listen", f"127.0.0.1:{port}"],
                                cwd="/", env=CLEAN, stderr=subprocess.PIPE, text=True)
    try:
        lines = [exporter.stderr.readline()]
        while lines[-1] and "Serving" not in lines[-1]:
            lines.append(exporter.stderr.readline())
        assert "Serving" in lines[-1], "".join(lines)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        exporter.send_signal(15)
        assert exporter.wait(30) == 0
    finally:
        exporter.kill()
    return body


def exposure(unit: str) -> float:
    out = sh("systemd-analyze", "security", "--offline=true", unit).stdout
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
