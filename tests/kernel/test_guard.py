"""guard on the host kernel: exact alert counts, real kills, nothing left behind."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import bpf_objects, unique_name, wait_gone
from exporter_helpers import samples, scrape, start_exporter, value
from tracers.tools.guard import SPEC

pytestmark = pytest.mark.kernel

# Its first act is to create the file named by argv[1]: a marker that exists
# only if the program ran one instruction of its own.
MARKER_C = r"""
#include <fcntl.h>
int main(int argc, char **argv) { return open(argv[1], O_CREAT | O_WRONLY, 0644) < 0; }
"""
SETUID_C = r"""
#include <linux/capability.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void)
{
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{1u << CAP_SYS_ADMIN, 1u << CAP_SYS_ADMIN, 0}, {0, 0, 0}};
    printf("%d ", setuid(0));
    printf("%ld\n", syscall(SYS_capset, &head, data));
    return 0;
}
"""


@pytest.fixture
def short_dir():
    # Rule paths are bounded (62 bytes exact): pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="bg", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def compile_c(directory: Path, name: str, source: str) -> Path:
    src = directory / f"{name}.c"
    src.write_text(source)
    out = directory / name
    subprocess.run(["gcc", "-O1", "-o", str(out), str(src)], check=True, capture_output=True)
    return out


def rules_file(directory: Path, text: str) -> str:
    path = directory / "rules.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def one_rule(directory: Path, name: str, kind: str, severity: str, action: str, *match: str) -> str:
    """A rules file of one rule; `match`: its TOML match lines."""
    lines = "\n        ".join(match)
    return rules_file(directory, f"""
        [[rules]]
        name = "{name}"
        kind = "{kind}"
        severity = "{severity}"
        action = "{action}"
        {lines}
        """)


def exec_rule(directory: Path, name: str, program: Path, severity: str, action: str) -> str:
    """A rules file of one exec rule for one program."""
    return one_rule(directory, name, "exec", severity, action, f'path = ["{program}"]')


def alerts(run) -> list[dict]:
    return [line for line in run.json_lines() if "rule" in line]


def totals(run) -> dict:
    return next(line["alerts_total"] for line in run.json_lines() if "alerts_total" in line)


def python(code: str, *args, prefix=(), **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", code, *map(str, args)],
                          capture_output=True, text=True, timeout=30, **kw)


def test_forbidden_execs_are_killed_before_their_first_instruction(tracer, short_dir):
    program = compile_c(short_dir, "forbidden", MARKER_C)
    (short_dir / "sub").mkdir()
    similar = [short_dir / "forbidden2", short_dir / "forbidde", short_dir / "sub" / "forbidden"]
    for path in similar:
        shutil.copy(program, path)
    rules = exec_rule(short_dir, "no_forbidden", program, "critical", "kill")
    run = tracer(["guard", "--rules", rules, "--json"])
    n, markers = 7, [short_dir / f"killed{i}" for i in range(7)]
    codes = [subprocess.run([program, m], timeout=30).returncode for m in markers]
    shell = subprocess.run(["sh", "-c", f'"{program}" "{short_dir}/killed-sh"; echo $?'],
                           capture_output=True, text=True, timeout=30).stdout
    # "./forbidden" is the same file: matched on the path the kernel resolves
    relative = subprocess.run(["./forbidden", "killed-rel"], cwd=short_dir, timeout=30).returncode
    allowed = [subprocess.run([p, short_dir / f"ok{i}-{j}"], timeout=30).returncode
               for i, p in enumerate(similar) for j in range(3)]
    assert run.stop() == 0
    assert codes == [-signal.SIGKILL] * n
    assert shell.strip() == "137" and relative == -signal.SIGKILL
    assert not [m for m in markers if m.exists()] and not list(short_dir.glob("killed-*"))
    assert allowed == [0] * 9
    assert len(list(short_dir.glob("ok*"))) == 9
    hits = alerts(run)
    assert len(hits) == n + 2
    assert {(a["rule"], a["severity"], a["kind"], a["action"], a["file"]) for a in hits} == {
        ("no_forbidden", "critical", "exec", "kill", str(program))}
    assert [a["path"] for a in hits] == [str(program)] * (n + 1) + ["./forbidden"]
    assert [a["argv"] for a in hits[:n]] == [[str(program), str(m)] for m in markers]
    assert totals(run) == {"no_forbidden": n + 2}


def test_dry_run_turns_kills_into_alerts(tracer, short_dir):
    program = compile_c(short_dir, "forbidden", MARKER_C)
    rules = exec_rule(short_dir, "no_forbidden", program, "high", "kill")
    run = tracer(["guard", "--rules", rules, "--json", "--dry-run"])
    codes = [subprocess.run([program, short_dir / f"m{i}"], timeout=30).returncode for i in range(4)]
    run.stop()
    assert codes == [0] * 4 and len(list(short_dir.glob("m*"))) == 4
    assert [a["action"] for a in alerts(run)] == ["dry-run"] * 4


def test_exec_conditions_argv_prefix_and_parent_comm(tracer, short_dir):
    program = compile_c(short_dir, "child", MARKER_C)
    spawner = short_dir / unique_name("fakenginx")
    shutil.copy("/bin/sh", spawner)  # its comm is its file name
    rules = rules_file(short_dir, f"""
        [[rules]]
        name = "child_with_evil_flag"
        kind = "exec"
        severity = "low"
        action = "alert"
        path = ["{program}"]
        argv = ["{program}", "--evil"]

        [[rules]]
        name = "child_of_spawner"
        kind = "exec"
        severity = "medium"
        action = "alert"
        path_prefix = ["{short_dir}/"]
        parent_comm = ["{spawner.name}"]
        """)
    run = tracer(["guard", "--rules", rules, "--json"])
    for args in (["--evil"], ["--evil", "x"], ["--evil2"], ["--evi"], ["-", "--evil"]):
        subprocess.run([program, *args], timeout=30, cwd=short_dir)  # its marker lands there
    for _ in range(2):  # "; true" so that the shell forks instead of exec'ing itself
        subprocess.run([spawner, "-c", f'"{program}" "{short_dir}/p"; true'], timeout=30)
    run.stop()
    hits = alerts(run)
    assert sorted((a["rule"], tuple(a["argv"][1:])) for a in hits) == [
        ("child_of_spawner", (f"{short_dir}/p",)), ("child_of_spawner", (f"{short_dir}/p",)),
        ("child_with_evil_flag", ("--evil",)), ("child_with_evil_flag", ("--evil", "x"))]
    assert {a["parent_comm"] for a in hits if a["rule"] == "child_of_spawner"} == {spawner.name}


def test_opens_under_a_protected_prefix_are_counted_exactly(tracer, short_dir):
    protected, similar = short_dir / "prot", short_dir / "prot2"
    protected.mkdir(), similar.mkdir()
    secret = protected / "secret"
    secret.write_text("x")
    rules = rules_file(short_dir, f"""
        [[rules]]
        name = "write_protected"
        kind = "open"
        severity = "high"
        action = "alert"
        path_prefix = ["{protected}/"]
        access = "write"

        [[rules]]
        name = "read_secret"
        kind = "open"
        severity = "medium"
        action = "alert"
        path = ["{secret}"]
        access = "read"
        """)
    run = tracer(["guard", "--rules", rules, "--json"])
    code = f"""
import mmap, os, sys, ctypes
protected, similar, secret = sys.argv[1:4]
for i in range(11):
    open(f"{{protected}}/w{{i}}", "w").close()
for i in range(5):
    open(f"{{similar}}/w{{i}}", "w").close()
    open(f"{{protected}}/w{{i}}").close()
for i in range(3):
    open(secret).close()
open(secret, "a").close()
os.chdir(protected)
for i in range(2):
    open(f"rel{{i}}", "w").close()               # relative: resolved at exit, counted
open("../prot2/rel", "w").close()                # relative, outside: not counted
{MAPPED_OPEN}
"""
    proc = python(code, protected, similar, secret)
    assert proc.returncode == 0, proc.stderr
    run.stop()
    hits = alerts(run)
    by_rule = {}
    for a in hits:
        by_rule.setdefault(a["rule"], []).append(a.get("file", a["path"]))
    assert sorted(by_rule["write_protected"]) == sorted(
        [f"{protected}/w{i}" for i in range(11)] + [str(secret)] + [f"{protected}/mapped"] * 4
        + [f"{protected}/rel{i}" for i in range(2)])
    assert by_rule["read_secret"] == [str(secret)] * 3
    assert set(by_rule) == {"write_protected", "read_secret"}
    assert [a["path"] for a in hits if "file" in a] == ["rel0", "rel1"]
    assert totals(run) == {"write_protected": 18, "read_secret": 3}
    summary = next(line["summary"] for line in run.json_lines() if "summary" in line)
    assert summary["events_dropped"] == 0


# Opens a path that lies in a file-backed page no one has touched: the BPF
# read at syscall entry cannot fault it in; the exit hook reads it again.
MAPPED_OPEN = """
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
with open(f"{similar}/paths", "wb") as f:
    f.write(f"{protected}/mapped".encode() + bytes(4096))
for i in range(4):
    fd = os.open(f"{similar}/paths", os.O_RDONLY)
    addr = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    out = libc.open(addr, os.O_WRONLY | os.O_CREAT, 0o644)
    assert out >= 0, ctypes.get_errno()
    os.close(out)
    os.close(fd)
    libc.munmap(ctypes.c_void_p(addr), 4096)
"""


LISTENER = """
import os, signal, socket, sys
accepted = 0
def done(*_):
    print(accepted, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
print("listening", flush=True)
while True:
    s.accept()[0].close()
    accepted += 1
"""


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
except OSError as exc:
    print(exc)
"""


def blocked_peer_rules(directory: Path, cidr: str, port: int) -> str:
    return one_rule(directory, "blocked_peer", "connect", "high", "kill", f'cidr = ["{cidr}"]',
                    f"ports = [{port}]")


def listen(netns_pair, port) -> subprocess.Popen:
    """Counts the connections it accepts; prints the count on SIGTERM."""
    listener = subprocess.Popen(netns_pair.exec(netns_pair.b, sys.executable, "-c", LISTENER,
                                                netns_pair.ip_b, str(port)),
                                stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline() == "listening\n"
    return listener


def accepted(listener) -> int:
    listener.terminate()
    out, _ = listener.communicate(timeout=30)
    return int(out.split()[-1])


def test_connect_to_a_blocked_cidr_is_killed(tracer, netns_pair, short_dir):
    port = 18000 + os.getpid() % 1000
    listener = listen(netns_pair, port)
    try:
        rules = blocked_peer_rules(short_dir, f"{netns_pair.ip_b.rsplit('.', 1)[0]}.0/24", port)
        run = tracer(["guard", "--rules", rules, "--json"])
        in_a = netns_pair.exec(netns_pair.a)
        blocked = [python(CONNECT, netns_pair.ip_b, port, prefix=in_a).returncode for _ in range(3)]
        other_port = [python(CONNECT, netns_pair.ip_b, port + 1, prefix=in_a).returncode for _ in range(2)]
        ipv6 = [python(CONNECT, netns_pair.ip6_b, port, prefix=in_a).returncode for _ in range(2)]
        run.stop()
    finally:
        connections = accepted(listener)
    # no BPF LSM here: each killed connect had completed its handshake
    # (tests/vm/test_guard_lsm.py: with BPF LSM none gets that far)
    assert connections == 3
    assert blocked == [-signal.SIGKILL] * 3
    assert other_port == [0, 0] and ipv6 == [0, 0]
    hits = alerts(run)
    assert [(a["address"], a["port"], a["family"], a["action"]) for a in hits] == \
        [(netns_pair.ip_b, port, "IPv4", "kill")] * 3


def test_setuid_to_root_by_a_non_root_process(tracer, short_dir):
    program = compile_c(short_dir, unique_name("su0"), SETUID_C)
    os.chmod(short_dir, 0o755)
    rules = rules_file(short_dir, f"""
        [[rules]]
        name = "to_root"
        kind = "privilege"
        severity = "high"
        action = "alert"
        comm = ["{program.name}"]
        """)
    run = tracer(["guard", "--rules", rules, "--json"])
    as_nobody = [subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", program],
                                capture_output=True, text=True, timeout=30).stdout.strip()
                 for _ in range(3)]
    as_root = [subprocess.run([program], capture_output=True, text=True, timeout=30).stdout.strip()
               for _ in range(2)]
    run.stop()
    assert as_nobody == ["-1 -1"] * 3 and as_root == ["0 0"] * 2  # refused, but attempted
    hits = alerts(run)
    assert [(a["uid"], a["call"], a["comm"]) for a in hits] == \
        [(65534, "setuid", program.name), (65534, "capset", program.name)] * 3
    assert [a["effective_caps"] for a in hits if a["call"] == "capset"] == [1 << 21] * 3


def test_module_load_attempts_are_detected(tracer, short_dir):
    junk = short_dir / "junk.ko"
    junk.write_bytes(b"not a module" * 10)
    rules = rules_file(short_dir, """
        [[rules]]
        name = "modules"
        kind = "module_load"
        severity = "critical"
        action = "alert"
        """)
    run = tracer(["guard", "--rules", rules, "--json"])
    proc = python(MODULE_LOADS, junk, 3)
    run.stop()
    assert proc.returncode == 0, proc.stderr
    pid, *results = proc.stdout.split()
    assert len(results) == 4 and "0" not in results  # the kernel refused every one
    hits = [a for a in alerts(run) if a["pid"] == int(pid)]
    assert [a["call"] for a in hits] == ["finit_module"] * 3 + ["init_module"]
    assert len(alerts(run)) == 4  # and nobody else's


MODULE_LOADS = """
import ctypes, os, sys
print(os.getpid())
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(int(sys.argv[2])):
    libc.syscall(313, fd, b"", 0)           # finit_module
    print(ctypes.get_errno())
junk = b"junk" * 16
libc.syscall(175, junk, len(junk), b"")     # init_module
print(ctypes.get_errno())
"""


def test_ptrace_bpf_load_proc_mem_and_fileless_exec(tracer, short_dir):
    rules = rules_file(short_dir, """
        [[rules]]
        name = "attach"
        kind = "ptrace"
        severity = "high"
        action = "alert"

        [[rules]]
        name = "bpf"
        kind = "bpf_load"
        severity = "medium"
        action = "alert"

        [[rules]]
        name = "mem"
        kind = "proc_mem_write"
        severity = "critical"
        action = "alert"

        [[rules]]
        name = "fileless"
        kind = "fileless_exec"
        severity = "critical"
        action = "kill"
        """)
    run = tracer(["guard", "--rules", rules, "--json"])
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        proc = python(MIXED, *(s.pid for s in sleepers))
        fileless = [python(MEMFD_EXEC, how).returncode for how in ("fexecve", "proc", "fexecve")]
        normal = subprocess.run(["/bin/true"]).returncode
    finally:
        for s in sleepers:
            s.kill()
            s.wait()
    run.stop()
    assert proc.returncode == 0, proc.stderr
    assert fileless == [-signal.SIGKILL] * 3 and normal == 0
    hits = alerts(run)
    pid = int(proc.stdout.split()[0])
    mine = [a for a in hits if a["rule"] != "bpf" or a["pid"] == pid]
    ptrace = [(a["request"], a["target_pid"]) for a in mine if a["rule"] == "attach"]
    assert ptrace == [("PTRACE_ATTACH", sleepers[0].pid), ("PTRACE_SEIZE", sleepers[1].pid)]
    assert [a["prog_type"] for a in mine if a["rule"] == "bpf"] == [1, 1]
    mem = [a["path"] for a in mine if a["rule"] == "mem"]
    assert mem == [f"/proc/{sleepers[0].pid}/mem", f"/proc/{sleepers[0].pid}/task/{sleepers[0].pid}/mem"]
    fl = [a for a in mine if a["rule"] == "fileless"]
    assert [a["action"] for a in fl] == ["kill"] * 3
    assert fl[1]["path"].startswith("/proc/self/fd/")
    assert [a["file"] for a in fl] == ["/memfd:payload"] * 3  # the name the kernel knows it by


MIXED = """
import ctypes, os, sys
print(os.getpid())
libc = ctypes.CDLL(None, use_errno=True)
a, b = int(sys.argv[1]), int(sys.argv[2])
libc.ptrace(16, a, 0, 0)            # PTRACE_ATTACH: an alert
libc.ptrace(0x4206, b, 0, 0)        # PTRACE_SEIZE: an alert
libc.ptrace(0x4206, os.getpid(), 0, 0)  # itself: refused by the kernel, no alert
attr = (ctypes.c_uint32 * 32)(1)    # BPF_PROG_TYPE_SOCKET_FILTER, no instructions: EINVAL
for _ in range(2):
    libc.syscall(321, 5, attr, 128)    # bpf(BPF_PROG_LOAD): an alert each
libc.syscall(321, 0, attr, 128)        # bpf(BPF_MAP_CREATE): none
for flags in (os.O_RDWR, os.O_WRONLY):
    path = f"/proc/{a}/mem" if flags == os.O_RDWR else f"/proc/{a}/task/{a}/mem"
    os.close(os.open(path, flags))      # opened for writing: an alert each
os.close(os.open(f"/proc/{a}/mem", os.O_RDONLY))   # reading: none
try:
    os.close(os.open(f"/proc/{a}/memx", os.O_WRONLY))
except OSError:
    pass
"""

MEMFD_EXEC = """
import os, sys
fd = os.memfd_create("payload")
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
if sys.argv[1] == "fexecve":
    os.execve(fd, ["payload"], {})                      # execveat(fd, "", AT_EMPTY_PATH)
os.execve(f"/proc/self/fd/{fd}", ["payload"], {})
"""


def test_the_exporter_serves_alerts_per_rule_and_severity(short_dir):
    junk = short_dir / "junk.ko"
    junk.write_bytes(b"junk" * 64)
    proc, url = start_exporter("--tracers", "guard")
    try:
        python(MODULE_LOADS, junk, 4)
        parsed = samples(scrape(url))
    finally:
        proc.stop()
        proc.close()
    # the default rules: 4 finit_module and 1 init_module attempts
    assert value(parsed, "bpfwatch_guard_alerts_total", rule="kernel_module_load", severity="critical") == 5
    assert value(parsed, "bpfwatch_program_attached", tracer="guard", hook="raw_sys_enter") == 1


def test_the_exporter_runs_a_rules_file_given_by_tracer_args(short_dir):
    program = compile_c(short_dir, "forbidden", MARKER_C)
    rules = exec_rule(short_dir, "served_kill", program, "high", "kill")
    proc, url = start_exporter("--tracers", "guard", "--tracer-args", f"guard --rules {rules}")
    try:
        codes = [subprocess.run([program, short_dir / f"m{i}"], timeout=30).returncode for i in range(6)]
        parsed = samples(scrape(url))
    finally:
        proc.stop()
        proc.close()
    assert codes == [-9] * 6 and not list(short_dir.glob("m*"))
    assert value(parsed, "bpfwatch_guard_alerts_total", rule="served_kill", severity="high") == 6
    # the file replaced the defaults: no default rule is served at all
    assert {dict(labels)["rule"] for name, labels in parsed if name == "bpfwatch_guard_alerts_total"} == \
        {"served_kill"}


@pytest.mark.parametrize("extra, words", [
    (["--tracer-args", "guard --rules /nonexistent.toml"], "--tracer-args guard: "),
    (["--tracer-args", "execsnoop --json"], "'execsnoop' is not among the tracers served (guard)"),
    (["--tracer-args", "guard --no-such-flag"], "--tracer-args guard: unrecognized arguments"),
])
def test_bad_tracer_args_get_one_line(extra, words):
    out = subprocess.run([sys.executable, "-m", "tracers", "exporter", "--tracers", "guard", "--check",
                          *extra], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode != 0
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("bpfwatch exporter: ") and words in line, line


def test_output_file_is_appended_and_never_a_symlink(tracer, short_dir):
    program = compile_c(short_dir, "forbidden", MARKER_C)
    rules = exec_rule(short_dir, "seen", program, "info", "alert")
    log = short_dir / "alerts.jsonl"
    log.write_text('{"earlier":1}\n')
    run = tracer(["guard", "--rules", rules, "--json", "--output", str(log)])
    for i in range(3):
        subprocess.run([program, short_dir / f"m{i}"], timeout=30)
    assert run.stop() == 0
    lines = log.read_text().splitlines()
    assert lines[0] == '{"earlier":1}'
    assert sum('"rule":"seen"' in line for line in lines) == 3
    assert run.stdout == ""
    link = short_dir / "link"
    link.symlink_to(log)
    refused = subprocess.run([sys.executable, "-m", "tracers", "guard", "--rules", rules, "--output",
                              str(link), "-d", "1"], capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).resolve().parents[2])
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == f"bpfwatch guard: --output {link}: is a symbolic link (refused)"


def test_text_mode_prints_a_readable_line(tracer, short_dir):
    program = compile_c(short_dir, "forbidden", MARKER_C)
    rules = exec_rule(short_dir, "seen", program, "high", "kill")
    run = tracer(["guard", "--rules", rules])
    subprocess.run([program, short_dir / "m"], timeout=30)
    assert run.stop() == 0, run.stderr
    (line,) = [l for l in run.stdout.splitlines() if " seen " in l]
    assert "HIGH     seen [kill] exec pid=" in line
    assert line.endswith(f"comm=forbidden parent=python path={program} file={program} "
                         f"argv={program} {short_dir}/m")


@pytest.mark.parametrize("ending", ["duration", "SIGINT", "SIGTERM", "SIGKILL"])
def test_nothing_left_after(tracer, ending):
    names = {h.fn for alt in SPEC.alternatives for h in alt.hooks}
    before = bpf_objects(names)
    if ending == "duration":
        assert tracer(["guard", "-d", "0.5"]).wait(60) == 0
    else:
        run = tracer(["guard"])
        assert bpf_objects(names)["prog"] - before["prog"], "guard loaded no program?"
        assert run.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    assert wait_gone(before, names=names) == {"prog": set(), "link": set()}
