"""Take a fresh Debian 12 machine (as root) to a ready bpfwatch checkout.

Run with the system Python from the checkout, before any venv exists:

    /usr/bin/python3 -m tracers.bootstrap

Idempotent: the second run checks, finds nothing to do and prints nothing.
On failure it names the step that failed and why, and exits non-zero.
Standard library only: nothing else is installed yet when it runs.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".bpfwatch-installed"

# What the tracers need at run time.
RUNTIME_PACKAGES = ["python3-bpfcc", "python3-venv", "bpftool", "iproute2",
                    # the exporter's web config (YAML) and its bcrypt password hashes
                    "python3-yaml", "python3-bcrypt"]
# What the test suite and the benchmarks need besides: promtool and a real
# Prometheus server, the peers we compare with, gcc for test workloads,
# the stock-kernel VM tier and `vagrant validate`.
TEST_PACKAGES = [
    "prometheus", "bpfcc-tools", "bpftrace", "gcc", "libc6-dev",
    "linux-image-amd64", "qemu-system-x86", "vagrant", "tcpdump", "iputils-ping",
    # the VM tier boots the stock kernel with its matching headers
    # (tests/vm/vmrun.py) from a busybox initramfs
    "linux-headers-amd64", "busybox-static",
    "runc",  # real containers for tests/kernel/test_containers.py (busybox-static rootfs)
]
PIP_EXTRAS: list[str] = []


class StepFailed(Exception):
    def __init__(self, step: str, why: str):
        super().__init__(f"bootstrap: step '{step}' failed: {why}")


def run(step: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    except OSError as exc:
        raise StepFailed(step, f"{cmd[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StepFailed(step, " | ".join(tail) or f"exit {proc.returncode}")
    return proc


def is_installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def header_package(apt_updated: bool) -> str:
    """Matching headers when the archive has them, else Debian's generic ones."""
    exact = f"linux-headers-{platform.release()}"
    if is_installed(exact):
        return exact
    if apt_updated:
        proc = subprocess.run(["apt-cache", "show", exact], capture_output=True)
        if proc.returncode == 0:
            return exact
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip() or "amd64"
    return f"linux-headers-{arch}"


def ensure_apt(packages: list[str]) -> None:
    missing = [p for p in packages if not is_installed(p)]
    # Headers are settled once matching ones exist, or Debian's generic
    # fallback is in (the archive had no matching ones when it was chosen).
    headers_missing = not (Path("/lib/modules", platform.release(), "build").exists()
                           or is_installed(header_package(apt_updated=False)))
    if not missing and not headers_missing:
        return
    say("installing Debian packages")
    run("apt-get update", ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"])
    wanted = missing + [header_package(apt_updated=True)]
    run("apt-get install", ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                            "--no-install-recommends", *wanted])


def ensure_venv() -> None:
    if (VENV / "bin" / "python").exists():
        return
    say(f"creating {VENV}")
    run("venv", ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(VENV)])


def ensure_project() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                            + " ".join(PIP_EXTRAS).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say("installing bpfwatch (editable) with its test extra")
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    run("pip install", [*pip, "-e", f"{ROOT}[test]", *PIP_EXTRAS])
    run("import check", [str(VENV / "bin" / "python"), "-c", "import bcc, pyroute2, prometheus_client"])
    STAMP.write_text(wanted)


def say(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


def main() -> int:
    if os.geteuid() != 0:
        print("bootstrap: run as root (it installs Debian packages and loads BPF programs)",
              file=sys.stderr)
        return 1
    try:
        ensure_apt(RUNTIME_PACKAGES + TEST_PACKAGES)
        ensure_venv()
        ensure_project()
    except StepFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
