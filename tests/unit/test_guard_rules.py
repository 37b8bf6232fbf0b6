"""guard's rules file: the default loads; each bad file gets one line naming file, rule, field."""
import ctypes
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from tracers.tools import _guard_rules as rulebook
from tracers.tools.guard import DEFAULT_RULES, Guard

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''
[[rules]]
name = "shell_from_web"
kind = "exec"
severity = "critical"
action = "kill"
path = ["/bin/sh"]
parent_comm = ["nginx"]
argv = ["sh", "-c"]
'''


def write(tmp_path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def rule(**fields) -> str:
    base = {"name": '"r"', "kind": '"exec"', "severity": '"low"', "action": '"alert"'}
    base.update(fields)
    return "[[rules]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


def test_the_default_rules_load_and_every_kind_is_there():
    rules = rulebook.load(str(DEFAULT_RULES))
    assert 12 <= len(rules) <= 16
    assert {r.kind for r in rules} == set(rulebook.KINDS)
    assert all(r.action == "alert" for r in rules)  # a default never kills


def test_a_rule_becomes_plain_data(tmp_path):
    (r,) = rulebook.load(write(tmp_path, GOOD))
    assert (r.name, r.kind, r.severity, r.action, r.slot, r.index) == (
        "shell_from_web", "exec", "critical", "kill", 0, 0)
    assert r.paths == [b"/bin/sh\0"]  # exact: the NUL is part of the key
    assert r.argv == b"sh\0-c\0"
    assert r.comm == {"parent_comm": ["nginx"]}
    assert r.conds == rulebook.COND["parent_comm"] | rulebook.COND["argv"]


def test_path_index_masks_include_every_shorter_matching_prefix(tmp_path):
    text = (rule(name='"etc"', kind='"open"', path_prefix='["/etc/"]', access='"write"')
            + rule(name='"shadow"', kind='"open"', path='["/etc/shadow"]')
            + rule(name='"tmp"', kind='"exec"', path_prefix='["/tmp/"]'))
    rules = rulebook.load(write(tmp_path, text))
    index = rulebook.path_index(rules)
    assert index == {(1, b"/etc/"): 0b01, (1, b"/etc/shadow\0"): 0b11, (0, b"/tmp/"): 0b1}


def test_cidr_index_nests_and_a_connect_rule_without_cidr_matches_everything(tmp_path):
    text = (rule(name='"wide"', kind='"connect"', cidr='["10.0.0.0/8"]')
            + rule(name='"narrow"', kind='"connect"', cidr='["10.1.2.0/24", "fd00::/8"]', ports="[22, 443]")
            + rule(name='"any"', kind='"connect"', ports="[4444]"))
    rules = rulebook.load(write(tmp_path, text))
    index = rulebook.cidr_index(rules)
    v4 = lambda text: ipaddress.ip_network(text).network_address.packed
    assert index[(4, v4("10.0.0.0/8"), 8)] == 0b101
    assert index[(4, v4("10.1.2.0/24"), 24)] == 0b111
    assert index[(6, v4("fd00::/8"), 8)] == 0b110
    assert index[(4, bytes(4), 0)] == 0b100 and index[(6, bytes(16), 0)] == 0b100
    assert rules[1].ports == [22, 443] and rules[1].conds == rulebook.COND["ports"]


def test_masks_and_slots_are_per_kind(tmp_path):
    text = (rule(name='"a"', kind='"ptrace"') + rule(name='"b"', kind='"exec"')
            + rule(name='"c"', kind='"ptrace"') + rule(name='"d"', kind='"exec"', path='["/x"]'))
    rules = rulebook.load(write(tmp_path, text))
    assert [r.slot for r in rules] == [0, 0, 1, 1]
    assert rulebook.mask_of(rules, "ptrace") == 0b11
    assert rulebook.exec_without_path(rules) == 0b01
    assert rules[2].index == rulebook.KINDS["ptrace"][0] * rulebook.RULES_PER_KIND + 1


def test_the_longest_paths_the_kernel_can_tell_apart_are_accepted(tmp_path):
    exact, prefix = "/" + "a" * 61, "/" + "b" * 62
    rules = rulebook.load(write(tmp_path, rule(path=f'["{exact}"]', path_prefix=f'["{prefix}"]')))
    assert [len(p) for p in rules[0].paths] == [63, 63]


TOO_MANY = "".join(rule(name=f'"r{i}"', kind='"ptrace"') for i in range(rulebook.RULES_PER_KIND + 1))


@pytest.mark.parametrize("text, message", [
    (rule(kind='"exek"'), "rules[0] 'r'.kind: unknown kind 'exek' (known: exec, open,"),
    (rule(kind='"connect"', cidr='["10.0.0.0/33"]'), "rules[0] 'r'.cidr[0]: not a CIDR"),
    (rule(kind='"connect"', cidr='["10.0.0.1/8"]'), "rules[0] 'r'.cidr[0]: not a CIDR"),
    (TOO_MANY, f"rules[32] 'r32'.kind: more than {rulebook.RULES_PER_KIND} rules of kind ptrace"),
    (rule(path_prefix='["/' + "p" * 63 + '"]'), "rules[0] 'r'.path_prefix[0]: at most 63 bytes (prefix), got 64"),
    (rule(path='["/' + "p" * 62 + '"]'), "rules[0] 'r'.path[0]: at most 62 bytes (exact path), got 63"),
    (rule(name='"evil\\nname"'), r"rules[0] 'evil\nname'.name: control characters are not allowed"),
    (rule(name='"Upper"'), "rules[0] 'Upper'.name: must match [a-z][a-z0-9_]*"),
    (rule(name='"' + "n" * 32 + '"'), "name: must match [a-z][a-z0-9_]* and be at most 31 bytes"),
    (rule() + rule(), "rules[1] 'r'.name: 'r' is used twice"),
    (rule(severity='"urgent"'), "rules[0] 'r'.severity: must be one of info, low, medium, high, critical"),
    (rule(action='"block"'), "rules[0] 'r'.action: must be alert or kill, got 'block'"),
    (rule(action=None), "rules[0] 'r'.action: missing"),
    (rule(cidr='["10.0.0.0/8"]'), "rules[0] 'r'.cidr: unknown field for kind exec"),
    (rule(kind='"open"'), "rules[0] 'r'.path: an open rule needs path or path_prefix"),
    (rule(path='["etc/passwd"]'), "rules[0] 'r'.path[0]: must be absolute"),
    (rule(path='"/bin/sh"'), "rules[0] 'r'.path: must be a non-empty list"),
    (rule(comm='["a-very-long-command"]'), "rules[0] 'r'.comm[0]: a command name is 1 to 15 bytes"),
    (rule(uid_min="1000", uid_max="10"), "rules[0] 'r'.uid_min: is above uid_max (1000 > 10)"),
    (rule(uid_min="-1"), "rules[0] 'r'.uid_min: must be an integer 0..4294967295"),
    (rule(kind='"connect"', ports="[0]"), "rules[0] 'r'.ports[0]: a port is 1 to 65535, got 0"),
    (rule(kind='"open"', path='["/x"]', access='"exec"'), "rules[0] 'r'.access: must be write, read or any"),
    (rule(argv="[" + ",".join(['"' + "a" * 40 + '"'] * 4) + "]"), "rules[0] 'r'.argv: the entries with"),
    (rule(cgroup='["/a", "/b", "/c"]', container='["d", "e"]'),
     "rules[0] 'r'.cgroup: cgroup and container together: at most 4 entries"),
    (rule(cgroup='["/"]'), "rules[0] 'r'.cgroup: '/' is the root cgroup (every process)"),
    (rule(cgroup='["/no/such/cgroup"]'), "rules[0] 'r'.cgroup: '/no/such/cgroup' is not a cgroup v2 directory"),
    ('[[rules]]\nname = "r"\n', "rules[0] 'r'.kind: missing"),
    ("rules = 3\n", "needs at least one [[rules]] table"),
    ("version = 2\n" + rule(), "version: unknown top-level field"),
    ("[[rules]\n", "not valid TOML"),
])
def test_bad_rules_files_name_the_file_rule_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(rulebook.RulesError) as info:
        rulebook.load(path)
    text = str(info.value)
    assert text.startswith(f"rules {path}: ")
    assert message in text
    assert "\n" not in text


def test_a_missing_file_is_one_line():
    with pytest.raises(rulebook.RulesError, match=r"^rules /nonexistent/r.toml: cannot read: No such file"):
        rulebook.load("/nonexistent/r.toml")


@pytest.mark.parametrize("text", [rule(kind='"exek"'), rule(name='"evil\\nname"'), TOO_MANY])
def test_the_cli_prints_one_line_and_exits_2_without_root(tmp_path, text):
    # Rules are validated in setup(), before anything needs root or bcc.
    path = write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "tracers", "guard", "--rules", path, "--ebpf"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"bpfwatch guard: rules {path}: rules[")


def test_no_rule_text_reaches_the_c_source(tmp_path):
    path = write(tmp_path, GOOD)
    proc = subprocess.run([sys.executable, "-m", "tracers", "guard", "--rules", path, "--ebpf"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "shell_from_web" not in proc.stdout and "nginx" not in proc.stdout
    assert "#define GUARD_MASK_EXEC 1" in proc.stdout


def test_entry_points_follow_the_kinds_in_use(tmp_path):
    import argparse
    guard = Guard()
    args = argparse.Namespace(rules=write(tmp_path, rule(kind='"ptrace"')), dry_run=False)
    skipped = guard.skip_hooks(args)
    assert "on_ptrace" not in skipped
    assert {"on_exec", "on_openat_enter", "on_connect", "on_bpf", "on_module_syscall"} <= skipped


class FakeAlert(ctypes.Structure):  # struct alert in bpf_c/guard.bpf.c
    _fields_ = [("ts", ctypes.c_uint64), ("cgroup", ctypes.c_uint64), ("index", ctypes.c_uint32),
                ("pid", ctypes.c_uint32), ("ppid", ctypes.c_uint32), ("uid", ctypes.c_uint32),
                ("action", ctypes.c_int32), ("flags", ctypes.c_uint32), ("target", ctypes.c_uint32),
                ("args_len", ctypes.c_uint32), ("family", ctypes.c_uint16), ("port", ctypes.c_uint16),
                ("path_truncated", ctypes.c_uint8), ("file_truncated", ctypes.c_uint8),
                ("args_truncated", ctypes.c_uint8), ("pad", ctypes.c_uint8),
                ("addr", ctypes.c_uint8 * 16), ("comm", ctypes.c_char * 16),
                ("parent_comm", ctypes.c_char * 16), ("path", ctypes.c_char * 256),
                ("file", ctypes.c_char * 256), ("args", ctypes.c_char * 256)]


def guard_with(tmp_path, text):
    import argparse
    guard = Guard()
    guard.defines(argparse.Namespace(rules=write(tmp_path, text), dry_run=False))
    return guard


def test_an_exec_alert_as_json_and_as_a_line(tmp_path):
    guard = guard_with(tmp_path, GOOD)
    e = FakeAlert(ts=3_000_000_000, cgroup=1, index=0, pid=42, ppid=7, uid=33, action=1)
    e.comm, e.parent_comm, e.path, e.file = b"sh", b"nginx", b"/bin/sh", b"/usr/bin/dash"
    raw = b"sh\0-c\0id\0"
    ctypes.memmove(ctypes.addressof(e) + FakeAlert.args.offset, raw, len(raw))
    e.args_len = len(raw)
    rec = guard.to_record(e, boot_offset=1000.0)
    assert rec == {"time": 1003.0, "rule": "shell_from_web", "severity": "critical", "kind": "exec",
                   "action": "kill", "pid": 42, "ppid": 7, "uid": 33, "comm": "sh", "parent_comm": "nginx",
                   "cgroup_id": 1, "path": "/bin/sh", "path_truncated": False, "file": "/usr/bin/dash",
                   "file_truncated": False, "argv": ["sh", "-c", "id"], "args_truncated": False}
    line = Guard.format_line(rec)
    assert line.endswith("CRITICAL shell_from_web [kill] exec pid=42 ppid=7 uid=33 comm=sh parent=nginx "
                         "path=/bin/sh file=/usr/bin/dash argv=sh -c id")


def put_args(e, raw: bytes) -> None:
    ctypes.memmove(ctypes.addressof(e) + FakeAlert.args.offset, raw, len(raw))
    e.args_len = len(raw)


def test_alert_text_is_escaped_and_every_cut_marked(tmp_path):
    # a tab, a byte that is not UTF-8 and a real U+FFFD: three different
    # strings, and unescape() gives each field's bytes back
    guard = guard_with(tmp_path, GOOD)
    e = FakeAlert(index=0, action=1, path_truncated=1, args_truncated=1)
    e.comm, e.parent_comm = b"a\tb\xff\xef\xbf\xbd", b"ng\\x"
    e.path, e.file = b"/tmp/x\ty\xff\xef\xbf\xbd", b"/tmp/f\x1b[0m"
    put_args(e, b"sh\0a\tb\0\xff\0\xef\xbf\xbd\0cut")
    rec = guard.to_record(e, boot_offset=0.0)
    assert {k: rec[k] for k in ("comm", "parent_comm", "path", "path_truncated", "file", "file_truncated",
                                "argv", "args_truncated")} == {
        "comm": "a\\x09b\\xff\ufffd", "parent_comm": "ng\\\\x",
        "path": "/tmp/x\\x09y\\xff\ufffd", "path_truncated": True,
        "file": "/tmp/f\\x1b[0m", "file_truncated": False,
        "argv": ["sh", "a\\x09b", "\\xff", "\ufffd", "cut"], "args_truncated": True}
    assert len(set(rec["argv"][1:4])) == 3
    from tracers.decoders import unescape
    assert [unescape(rec[k]) for k in ("comm", "parent_comm", "path", "file")] == [
        e.comm, e.parent_comm, e.path, e.file]
    assert [unescape(a) for a in rec["argv"]] == [b"sh", b"a\tb", b"\xff", "\ufffd".encode(), b"cut"]
    line = Guard.format_line(rec)
    assert "\t" not in line and "\x1b" not in line and "_truncated" not in line
    assert line.endswith("comm=a\\x09b\\xff\ufffd parent=ng\\\\x path=/tmp/x\\x09y\\xff\ufffd… "
                         "file=/tmp/f\\x1b[0m argv=sh a\\x09b \\xff \ufffd cut…")


def test_an_open_alert_marks_a_cut_path_and_has_no_file_when_unresolved(tmp_path):
    guard = guard_with(tmp_path, rule(kind='"open"', path='["/etc/shadow"]'))
    e = FakeAlert(index=rulebook.KINDS["open"][0] * rulebook.RULES_PER_KIND, flags=1, path_truncated=1)
    e.comm, e.parent_comm, e.path = b"w", b"sh", b"/etc/" + b"d" * 250
    rec = guard.to_record(e, boot_offset=0.0)
    assert {k: v for k, v in rec.items() if k not in ("time", "rule", "severity", "pid", "ppid", "uid")} == {
        "kind": "open", "action": "alert", "comm": "w", "parent_comm": "sh", "cgroup_id": 0,
        "path": "/etc/" + "d" * 250, "path_truncated": True, "flags": 1, "write": True}
    assert Guard.format_line(rec).endswith(f"path=/etc/{'d' * 250}… flags=1 write=True")


def test_connect_and_failed_kill_records(tmp_path):
    guard = guard_with(tmp_path, rule(kind='"connect"', cidr='["10.0.0.0/8"]', action='"kill"'))
    e = FakeAlert(index=rulebook.KINDS["connect"][0] * rulebook.RULES_PER_KIND, action=-3, family=4, port=22)
    e.addr[:4] = [10, 1, 2, 3]
    rec = guard.to_record(e, boot_offset=0.0)
    assert (rec["action"], rec["error"]) == ("kill-failed", "ESRCH")
    assert (rec["family"], rec["address"], rec["port"]) == ("IPv4", "10.1.2.3", 22)
