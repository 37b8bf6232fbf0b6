"""bootstrap's decisions, without touching apt; and what the test setup left on this machine."""
import os
import subprocess
from pathlib import Path

import pytest

from tracers import bootstrap

# What a production server must not get from the first command.
TEST_STACK = {"pytest", "prometheus", "linux-image-amd64", "qemu-system-x86", "vagrant", "gcc",
              "bpftrace", "bpfcc-tools", "busybox-static", "debhelper"}


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(bootstrap, "run", lambda step, cmd, **kw: seen.append(cmd))
    monkeypatch.setattr(bootstrap, "say", lambda message: None)
    return seen


def test_the_runtime_setup_installs_nothing_of_the_test_stack():
    runtime = set(bootstrap.plan(test=False))
    assert not runtime & TEST_STACK
    assert {"python3-bpfcc", "bpftool", "iproute2"} <= runtime
    assert "[test]" not in bootstrap.project_spec(test=False)
    assert TEST_STACK - {"pytest"} <= set(bootstrap.plan(test=True))
    assert bootstrap.project_spec(test=True).endswith("[test]")  # pytest: the test extra


def test_what_apt_installs_for_the_runtime_on_an_empty_machine_has_no_test_stack(tmp_path):
    # apt's own resolution, from an empty dpkg status: the whole closure of
    # the runtime packages (headers included), as on a fresh server.
    (tmp_path / "status").write_text("")
    wanted = bootstrap.plan(test=False) + [bootstrap.header_package(apt_updated=False)]
    sim = subprocess.run(["apt-get", "-s", "-o", f"Dir::State::status={tmp_path}/status",
                          "install", "--no-install-recommends", *wanted],
                         capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stderr
    closure = {line.split()[1] for line in sim.stdout.splitlines() if line.startswith("Inst ")}
    assert set(wanted) <= closure
    assert not closure & (TEST_STACK | {"python3-pytest", "runc"})
    assert not [p for p in closure if p.startswith(("linux-image", "qemu", "prometheus"))]
    # what README says comes along: the kernel's compiler, through the headers
    assert "linux-compiler-gcc-12-x86" in closure


def test_nothing_to_do_is_silent_even_on_fallback_headers(monkeypatch, calls):
    monkeypatch.setattr(bootstrap, "is_installed",
                        lambda p: not p.startswith("linux-headers-6.18"))  # archive lacks exact ones
    monkeypatch.setattr(bootstrap.platform, "release", lambda: "6.18.44-fc-v595")
    bootstrap.ensure_apt(["python3-bpfcc"])
    assert calls == []


def test_missing_package_updates_then_installs_it(monkeypatch, calls):
    monkeypatch.setattr(bootstrap, "is_installed", lambda p: p != "bpftool")
    bootstrap.ensure_apt(["python3-bpfcc", "bpftool"])
    assert "update" in calls[0] and "bpftool" in calls[1]


def test_failure_names_the_step():
    with pytest.raises(bootstrap.StepFailed, match="step 'probe' failed: .*no-such-command"):
        bootstrap.run("probe", ["/no-such-command"])


def test_long_steps_show_progress_lines(capsys):
    script = "echo 'Get:1 http://deb x'; echo 'Setting up bpftool (7.1) ...'; echo noise"
    bootstrap.run("apt-get install", ["sh", "-c", script], progress=bootstrap.apt_progress)
    assert capsys.readouterr().out == "bootstrap:   bpftool\n"


DEBIAN = {"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}


@pytest.mark.parametrize("version, release, words", [
    ((3, 9, 2), DEBIAN, "Python 3.9 is too old: bpfwatch needs 3.11"),
    ((3, 11, 2), {"ID": "ubuntu", "ID_LIKE": "debian", "PRETTY_NAME": "Ubuntu 22.04.4 LTS"},
     "Ubuntu 22.04.4 LTS is not Debian"),
    ((3, 11, 2), {}, "this system (no /etc/os-release) is not Debian"),
])
def test_refuses_other_systems_in_one_line(version, release, words):
    why = bootstrap.refusal(version, release, euid=0)
    assert words in why and "\n" not in why
    assert bootstrap.refusal((3, 11, 2), DEBIAN, euid=0) is None


def test_refusal_is_printed_once_and_exits_1(monkeypatch, capsys, calls):
    monkeypatch.setattr(bootstrap, "os_release", lambda: {"ID": "fedora", "PRETTY_NAME": "Fedora 40"})
    assert bootstrap.main(["--test"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "bootstrap: Fedora 40 is not Debian: bpfwatch's setup installs Debian 12 packages\n"
    assert calls == []


def test_an_enabled_prometheus_service_is_disabled(monkeypatch, calls):
    monkeypatch.setattr(bootstrap, "is_installed", lambda p: True)
    monkeypatch.setattr(bootstrap, "service_enabled", lambda name: True)
    bootstrap.ensure_services_disabled(["prometheus"])
    assert calls == [["systemctl", "--no-reload", "disable", "prometheus.service"]]
    calls.clear()
    monkeypatch.setattr(bootstrap, "service_enabled", lambda name: False)
    bootstrap.ensure_services_disabled(["prometheus"])
    assert calls == []


def test_no_service_starts_during_the_install(monkeypatch, tmp_path):
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(bootstrap, "POLICY_RC_D", policy)
    with bootstrap.NoServiceStart():
        assert subprocess.run([str(policy)]).returncode == 101  # invoke-rc.d: action forbidden
    assert not policy.exists()
    policy.write_text("#!/bin/sh\nexit 0\n")  # someone else's stays as it was
    with bootstrap.NoServiceStart():
        pass
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def debian_prometheus_servers() -> list[str]:
    """Running prometheus servers other than the tests' own (those take a --config.file
    in a temporary directory)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode(errors="replace")).name == "prometheus" and \
                not any(a.startswith(b"--config.file=/tmp/") for a in argv):
            out.append(pid)
    return out


def test_the_test_setup_leaves_no_prometheus_service_enabled_or_running():
    assert bootstrap.is_installed("prometheus")  # the README's second command put it here
    assert not bootstrap.service_enabled("prometheus")
    assert debian_prometheus_servers() == []


def test_bootstrap_is_silent_when_done():
    """The README's second command, run again here: nothing to do, nothing printed."""
    if os.geteuid() != 0:
        pytest.skip("bootstrap runs as root")  # only on a non-root run of the unit tests
    proc = subprocess.run(["/usr/bin/python3", "-m", "tracers.bootstrap", "--test"],
                          cwd=bootstrap.ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
