"""Take a Debian 12 machine (as root) to a ready bpfwatch checkout.

Run with the system Python from the checkout, before any venv exists:

    /usr/bin/python3 -m tracers.bootstrap          # the runtime: serve metrics, run tracers
    /usr/bin/python3 -m tracers.bootstrap --test   # the runtime plus the test stack

The runtime is what a server needs: BCC, bpftool, iproute2, kernel headers
(or Debian's generic ones as a fallback tree) and .venv with the runtime
dependencies. --test adds the test stack on top: pytest, a Prometheus binary
(its Debian service is never started nor enabled: the tests start their own
on loopback), the peers compared with, the stock-kernel VM tier and the
Debian packaging tools.

Idempotent: a second run finds nothing to do and prints nothing. Long steps
say what they do as they go. On failure it names the step and why, and exits
non-zero. Standard library only, and nothing newer than Python 3.7 before
the version check: nothing else is installed yet when it runs.
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
PYTHON_NEEDED = (3, 11)  # pyproject.toml's requires-python
STAMPS = {False: VENV / ".bpfwatch-runtime", True: VENV / ".bpfwatch-test"}

# What the tracers and the exporter need at run time (headers are added by
# header_package). PyYAML and bcrypt: the exporter's web config; libseccomp:
# syscall names. pyroute2 and prometheus-client come from PyPI into .venv.
RUNTIME_PACKAGES = ["python3-bpfcc", "python3-venv", "bpftool", "iproute2",
                    "python3-yaml", "python3-bcrypt", "libseccomp2"]
# The test stack: promtool and a Prometheus server (test_prometheus_e2e),
# the peers compared with, gcc for test workloads, the stock-kernel VM tier
# and `vagrant validate`, and what builds and checks the Debian package
# (its build needs the runtime's Python modules from Debian).
TEST_PACKAGES = [
    "prometheus", "bpfcc-tools", "bpftrace", "gcc", "libc6-dev", "tcpdump", "iputils-ping",
    "linux-image-amd64", "linux-headers-amd64", "qemu-system-x86", "busybox-static", "vagrant",
    "debhelper", "dh-python", "python3-all", "python3-setuptools", "pybuild-plugin-pyproject",
    "python3-prometheus-client", "python3-pyroute2", "systemd",
    "runc",  # real containers for tests/kernel/test_containers.py (busybox-static rootfs)
]
# Installed for the tests as a program only: its Debian service must not run.
SERVICES_NOT_WANTED = ["prometheus"]
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-o", "Dpkg::Use-Pty=0"]


class StepFailed(Exception):
    def __init__(self, step: str, why: str):
        super().__init__(f"bootstrap: step '{step}' failed: {why}")


def say(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


def run(step: str, cmd: list, progress=None, **kw) -> subprocess.CompletedProcess:
    """Run a step. progress(line) -> text or None: lines worth showing as they come."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, **kw)
    except OSError as exc:
        raise StepFailed(step, f"{cmd[0]}: {exc.strerror}") from None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        shown = progress(line) if progress else None
        if shown:
            say(f"  {shown}")
    proc.wait()
    if proc.returncode != 0:
        tail = [line for line in lines if line.strip()][-3:]
        raise StepFailed(step, " | ".join(tail) or f"exit {proc.returncode}")
    return subprocess.CompletedProcess(cmd, 0, "\n".join(lines), "")


def apt_progress(line: str):
    # "Setting up foo (1.2) ..." once per package: enough to see it move
    if line.startswith("Setting up "):
        return line[len("Setting up "):].split(" (")[0]
    return None


def pip_progress(line: str):
    if line.startswith(("Collecting ", "Successfully installed")):
        return line.strip()
    return None


# -- refusals ------------------------------------------------------------------
def os_release(path: str = "/etc/os-release") -> dict:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    out[key] = value.strip('"')
    except OSError:
        pass
    return out


def refusal(version=None, release=None, euid=None):
    """One line saying why this machine is not one bootstrap serves, or None."""
    version = sys.version_info if version is None else version
    release = os_release() if release is None else release
    euid = os.geteuid() if euid is None else euid
    if tuple(version[:2]) < PYTHON_NEEDED:
        return ("bootstrap: Python {}.{} is too old: bpfwatch needs {}.{} or newer "
                "(Debian 12's /usr/bin/python3)".format(*version[:2], *PYTHON_NEEDED))
    if release.get("ID") != "debian":
        name = release.get("PRETTY_NAME") or "this system (no /etc/os-release)"
        return f"bootstrap: {name} is not Debian: bpfwatch's setup installs Debian 12 packages"
    if euid != 0:
        return "bootstrap: run as root (it installs Debian packages and loads BPF programs)"
    return None


# -- Debian packages ---------------------------------------------------------------
def is_installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def dpkg_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip() or "amd64"


def header_package(apt_updated: bool) -> str:
    """Matching headers when the archive has them, else Debian's generic ones."""
    exact = f"linux-headers-{platform.release()}"
    if is_installed(exact):
        return exact
    if apt_updated:
        proc = subprocess.run(["apt-cache", "show", exact], capture_output=True)
        if proc.returncode == 0:
            return exact
    return f"linux-headers-{dpkg_arch()}"


class NoServiceStart:
    """policy-rc.d that refuses every service start, for the length of an
    install (unless one exists already: a container's, or the admin's)."""

    def __enter__(self):
        self.ours = not POLICY_RC_D.exists()
        if self.ours:
            POLICY_RC_D.write_text("#!/bin/sh\n# bpfwatch bootstrap: no service starts during "
                                   "its install\nexit 101\n")
            POLICY_RC_D.chmod(0o755)
        return self

    def __exit__(self, *exc):
        if self.ours:
            POLICY_RC_D.unlink()


def ensure_apt(packages: list) -> None:
    missing = [p for p in packages if not is_installed(p)]
    # Headers are settled once matching ones exist, or Debian's generic
    # fallback is in (the archive had no matching ones when it was chosen).
    headers_missing = not (Path("/lib/modules", platform.release(), "build").exists()
                           or is_installed(header_package(apt_updated=False)))
    if not missing and not headers_missing:
        return
    say("updating the package lists (apt-get update)")
    run("apt-get update", [*APT, "update", "-qq"])
    wanted = missing + ([header_package(apt_updated=True)] if headers_missing else [])
    say(f"installing {len(wanted)} Debian packages and their dependencies: {', '.join(wanted)}")
    with NoServiceStart():
        run("apt-get install", [*APT, "install", "-y", "-q", "--no-install-recommends", *wanted],
            progress=apt_progress)


def service_enabled(name: str) -> bool:
    # works without systemd as PID 1 (it reads the unit and rc.d links)
    proc = subprocess.run(["systemctl", "is-enabled", f"{name}.service"], capture_output=True,
                          text=True)
    return proc.stdout.strip() in ("enabled", "enabled-runtime", "static-enabled")


def ensure_services_disabled(names: list) -> None:
    for name in names:
        if is_installed(name) and service_enabled(name):
            say(f"disabling Debian's {name} service (the tests start their own, on loopback)")
            run(f"disable {name}", ["systemctl", "--no-reload", "disable", f"{name}.service"])


# -- the venv ------------------------------------------------------------------
def ensure_venv() -> None:
    if (VENV / "bin" / "python").exists():
        return
    say(f"creating {VENV} (from /usr/bin/python3, seeing Debian's BCC)")
    run("venv", ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(VENV)])


def project_spec(test: bool) -> str:
    return f"{ROOT}[test]" if test else str(ROOT)


def _digest(test: bool) -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                          + project_spec(test).encode()).hexdigest()


def _installed(test: bool) -> bool:
    return STAMPS[test].exists() and STAMPS[test].read_text() == _digest(test)


def ensure_project(test: bool) -> None:
    if _installed(True) or (not test and _installed(False)):  # the test stack includes the runtime
        return
    say("installing bpfwatch (editable) and its " + ("runtime and test" if test else "runtime")
        + " dependencies into .venv (pip)")
    run("pip install", [str(VENV / "bin" / "python"), "-m", "pip", "install",
                        "--disable-pip-version-check", "-e", project_spec(test)],
        progress=pip_progress)
    run("import check", [str(VENV / "bin" / "python"), "-c",
                         "import bcc, pyroute2, prometheus_client, yaml, bcrypt"])
    STAMPS[test].write_text(_digest(test))


def plan(test: bool) -> list:
    """The Debian packages this mode wants."""
    return RUNTIME_PACKAGES + (TEST_PACKAGES if test else [])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv not in ([], ["--test"]):
        print("usage: /usr/bin/python3 -m tracers.bootstrap [--test]", file=sys.stderr)
        return 2
    test = argv == ["--test"]
    why = refusal()
    if why:
        print(why, file=sys.stderr)
        return 1
    try:
        ensure_apt(plan(test))
        if test:
            ensure_services_disabled(SERVICES_NOT_WANTED)
        ensure_venv()
        ensure_project(test)
    except StepFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
