"""guard: runtime security rules matched in the kernel; alert on a hit, or kill.

Rules (a TOML file, see _guard_rules.py) become map entries and -D masks
before any hook is attached. The kernel side (bpf_c/guard.bpf.c) counts
every hit per rule (the exporter's bpfwatch_guard_alerts_total) and streams
it; a kill rule sends SIGKILL from the hook, so the caller never runs
another instruction in user space (the syscall itself completes: see the
README for exactly what that does and does not prevent).
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import stat
import sys
import time
from pathlib import Path

from tracers import decoders, runner
from tracers.runtime import btf
from tracers.runtime.capture import quiet_stderr
from tracers.runtime.errors import LoadError
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError
from tracers.tools import _guard_rules as rulebook

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "exporters" / "examples" / "guard-default.toml"
ARGS_LEN = 256  # C: ARGS_LEN
# syscall -> entry point (by argument count: a program may not read past a record)
PRIVILEGE_CALLS = {"setuid": "on_set_id", "setgid": "on_set_id", "setreuid": "on_set_re_id",
                   "setregid": "on_set_re_id", "setresuid": "on_set_res_id",
                   "setresgid": "on_set_res_id", "capset": "on_capset"}
MODULE_CALLS = ("init_module", "finit_module")
KERNEL_FIELDS = {
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_COMM": ("task_struct", "comm"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "OFF_BINPRM_FILE": ("linux_binprm", "file"),
    "OFF_BINPRM_FILENAME": ("linux_binprm", "filename"),
    "OFF_BINPRM_INTERP": ("linux_binprm", "interp"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_DENTRY": ("file", "f_path.dentry"),
    "OFF_FILE_MNT": ("file", "f_path.mnt"),
    "OFF_INODE_NLINK": ("inode", "i_nlink"),
    "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "OFF_DENTRY_NAME": ("dentry", "d_name.name"),
    "OFF_DENTRY_NAME_LEN": ("dentry", "d_name.len"),
    "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_FS_ROOT_MNT": ("fs_struct", "root.mnt"),
    "OFF_FS_ROOT_DENTRY": ("fs_struct", "root.dentry"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
}
# struct mount is internal to fs/ (no header has it): from BTF whatever the
# headers; without them paths are matched as passed only.
MOUNT_FIELDS = {"OFF_MOUNT_MNT": ("mount", "mnt"), "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
                "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint")}
# Entry points each kind needs; the others are not attached.
ENTRY_POINTS = {
    "exec": ("on_exec",), "fileless_exec": ("on_exec",),
    "open": ("on_open_enter", "on_openat_enter", "on_openat2_enter", "on_open_exit"),
    "proc_mem_write": ("on_open_enter", "on_openat_enter", "on_openat2_enter", "on_open_exit"),
    "connect": ("on_connect", "on_connect_exit", "lsm__socket_connect"),
    "privilege": tuple(sorted(set(PRIVILEGE_CALLS.values()))), "ptrace": ("on_ptrace",), "bpf_load": ("on_bpf",),
    "module_load": ("on_module_load", "on_module_syscall"),
}


def _sys(name: str, fn: str, optional: bool = False, enter: bool = True) -> Hook:
    return Hook("tracepoint", f"syscalls:sys_{'enter' if enter else 'exit'}_{name}", fn, optional)


CONNECT_SYSCALL = (_sys("connect", "on_connect"), _sys("connect", "on_connect_exit", enter=False))
CONNECT_LSM = (Hook("lsm", "socket_connect", "lsm__socket_connect"),)


def _hooks(*module_hooks: Hook, connect=CONNECT_SYSCALL) -> tuple[Hook, ...]:
    return (
        Hook("raw_tracepoint", "sched_process_exec", "on_exec"),
        _sys("openat", "on_openat_enter"), _sys("openat", "on_open_exit", enter=False),
        # open() does not exist on every architecture, openat2 not before 5.6
        _sys("open", "on_open_enter", True), _sys("open", "on_open_exit", True, enter=False),
        _sys("openat2", "on_openat2_enter", True), _sys("openat2", "on_open_exit", True, enter=False),
        *connect,
        *(_sys(call, PRIVILEGE_CALLS[call]) for call in PRIVILEGE_CALLS),
        _sys("ptrace", "on_ptrace"), _sys("bpf", "on_bpf"),
        *module_hooks,
    )


SPEC = TracerSpec(
    name="guard",
    summary="runtime security: rules matched in the kernel, alert on a hit or kill the caller",
    c_file="guard.bpf.c",
    alternatives=(
        Alternative("tracepoint", _hooks(*(_sys(c, "on_module_load") for c in MODULE_CALLS)),
                    define="HOOK_MODULE_TRACEPOINTS", btf_fields=KERNEL_FIELDS, needs=("ringbuf",)),
        # Kernels built without module support have no module syscall tracepoints.
        Alternative("raw_sys_enter", _hooks(Hook("raw_tracepoint", "sys_enter", "on_module_syscall")),
                    define="HOOK_MODULE_RAW", btf_fields=KERNEL_FIELDS, needs=("ringbuf",)),
    ),
    metrics=(  # rule and severity: our own rules' names, so text() is enough
        Metric("guard_alerts_total", "guard rule hits (kills included), by rule and severity.",
               map="alerts", labels=(Label("rule", "rule", "text"), Label("severity", "severity", "text"))),
        Metric("guard_unreadable_total", "Paths or addresses guard could not read (not matched).",
               map="unreadable"),
    ),
    events_map="events",
    exporter_defines={"GUARD_COUNT_ONLY": 1},
    examples=(
        "bpfwatch guard                                 # the default rules, alerts as text",
        "bpfwatch guard --rules /etc/bpfwatch/guard.toml --json --output /var/log/guard.json",
        "bpfwatch guard --rules my.toml --dry-run       # kill rules only alert: try a policy",
        "bpfwatch guard --rules my.toml --ebpf          # validate the rules (no root), print the C",
    ),
)

# Where BPF LSM works (Debian's stock kernel), connect rules that kill also
# refuse the connect itself. Offered only to runs with such rules: probing
# for LSM costs a compile at start.
REFUSING_CONNECT = Alternative(
    "lsm_connect", _hooks(*(_sys(c, "on_module_load") for c in MODULE_CALLS), connect=CONNECT_LSM),
    define="HOOK_LSM_CONNECT", btf_fields=KERNEL_FIELDS, needs=("ringbuf",))

ACTIONS = {0: "alert", rulebook.ACTIONS["kill"]: "kill", rulebook.ACTION_DRY_RUN: "dry-run"}
CUT_FLAGS = {"path": "path_truncated", "file": "file_truncated", "argv": "args_truncated"}  # text: "…"
PTRACE_REQUESTS = {16: "PTRACE_ATTACH", 0x4206: "PTRACE_SEIZE"}


def open_output(path: str) -> int:
    """An append-only fd for alerts: never through a symlink, only a regular file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        why = "is a symbolic link (refused)" if exc.errno == errno.ELOOP else exc.strerror
        raise UsageError(f"--output {path}: {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"--output {path}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def _put_bytes(obj, name: str, data: bytes) -> None:
    """Raw bytes into a ctypes struct field (any array type)."""
    offset = getattr(type(obj), name).offset
    ctypes.memmove(ctypes.addressof(obj) + offset, data, len(data))


def fill_maps(bpf, rules: list[rulebook.Rule], dry_run: bool) -> None:
    """The rules as map entries: records, counters, path and CIDR tries, comm sets."""
    table, counters = bpf["rules"], bpf["alerts"]
    for r in rules:
        leaf = table.Leaf()
        action = rulebook.ACTIONS[r.action]
        leaf.action = rulebook.ACTION_DRY_RUN if dry_run and action else action
        leaf.conds, leaf.uid_min, leaf.uid_max = r.conds, r.uid_min, r.uid_max
        leaf.access, leaf.argv_len = rulebook.ACCESS[r.access], len(r.argv)
        for i in range(rulebook.PORTS_PER_RULE):  # unused slots repeat the first port
            leaf.ports[i] = r.ports[i] if i < len(r.ports) else (r.ports[0] if r.ports else 0)
        _put_bytes(leaf, "argv", r.argv)
        for i, (cgroup_id, level) in enumerate(r.cgroups):
            leaf.cgroup_ids[i], leaf.cgroup_levels[i] = cgroup_id, level
        leaf.label.rule, leaf.label.severity = r.name.encode(), r.severity.encode()
        table[table.Key(r.index)] = leaf
        counters[leaf.label] = counters.Leaf(0)
    paths = bpf["path_index"]
    for (kind, raw), mask in rulebook.path_index(rules).items():
        key = paths.Key()
        key.prefixlen, key.kind = 8 * (1 + len(raw)), kind
        _put_bytes(key, "path", raw)
        paths[key] = paths.Leaf(mask)
    cidrs = bpf["cidr_index"]
    for (family, addr, bits), mask in rulebook.cidr_index(rules).items():
        key = cidrs.Key()
        key.prefixlen, key.family = 8 + bits, family
        _put_bytes(key, "addr", addr)
        cidrs[key] = cidrs.Leaf(mask)
    comms = bpf["comm_sets"]
    for index, which, comm in rulebook.comm_entries(rules):
        key = comms.Key()
        key.index, key.list = index, which
        _put_bytes(key, "comm", comm)
        comms[key] = comms.Leaf(1)


def _argv(event) -> list[str]:
    """Escaped entries of the kernel's ARGS_LEN - 1 bytes (args_truncated marks a cut)."""
    raw = decoders.raw_field(event, "args")[:event.args_len]
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [decoders.escaped(p) for p in parts]


def _address(event) -> str:
    raw = bytes(event.addr)
    return decoders.inet4(raw[:4]) if event.family == 4 else decoders.inet6(raw)


def details(kind: str, event) -> dict:
    """The matched fields of one alert, by kind. Text escaped (every byte
    comes back through decoders.unescape), each cut marked by the kernel."""
    path = {"path": decoders.escaped(decoders.raw_field(event, "path")),
            "path_truncated": bool(event.path_truncated)}  # cut to PATH_LEN - 1 bytes
    file = decoders.escaped(decoders.raw_field(event, "file"))
    if file:  # the file's own path, when the kernel resolved it
        path.update(file=file, file_truncated=bool(event.file_truncated))
    if kind in ("exec", "fileless_exec"):
        return {**path, "argv": _argv(event), "args_truncated": bool(event.args_truncated)}
    if kind in ("open", "proc_mem_write"):
        return {**path, "flags": event.flags, "write": bool(event.flags & 3 or event.flags & 0o1100)}
    if kind == "connect":
        return {"family": f"IPv{event.family}", "address": _address(event), "port": event.port}
    if kind == "privilege":
        call = decoders.syscall_name(event.flags)
        return {"call": call, "effective_caps": event.target} if call == "capset" else {"call": call}
    if kind == "ptrace":
        return {"request": PTRACE_REQUESTS.get(event.flags, str(event.flags)), "target_pid": event.target}
    if kind == "module_load":
        return {"call": decoders.syscall_name(event.flags)}
    if kind == "bpf_load":
        return {"prog_type": event.flags}
    return {}


class Guard(Tracer):
    spec = SPEC

    def __init__(self):
        self.rules: list[rulebook.Rule] | None = None
        self.by_index: dict[int, rulebook.Rule] = {}
        self.dry_run = False
        self._filled = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rules", metavar="FILE", default=str(DEFAULT_RULES),
                            help="rules file (TOML; default: the shipped guard-default.toml)")
        parser.add_argument("--dry-run", action="store_true",
                            help="kill rules only alert (and say they would have killed)")
        parser.add_argument("--output", metavar="FILE",
                            help="append alerts to FILE (created 0600; never through a symlink)")

    def _load(self, args) -> list[rulebook.Rule]:
        if self.rules is None:
            self.rules = rulebook.load(args.rules)
            self.by_index = {r.index: r for r in self.rules}
            self.dry_run = args.dry_run
        return self.rules

    def defines(self, args) -> dict[str, int]:
        rules = self._load(args)
        out = rulebook.layout_defines()
        out["GUARD_SELF_PID"] = os.getpid()  # its own bpf() calls are not alerts
        for kind in rulebook.KINDS:
            out[f"GUARD_MASK_{kind.upper()}"] = rulebook.mask_of(rules, kind)
        out["GUARD_EXEC_ANY"] = rulebook.exec_without_path(rules)
        for call in (*PRIVILEGE_CALLS, *MODULE_CALLS):
            out[f"NR_{call.upper()}"] = decoders.syscall_number(call)
        try:
            out.update(btf.resolve_offsets(MOUNT_FIELDS))
        except (btf.BTFUnavailable, btf.FieldNotFound):
            pass
        return out

    def session_spec(self, args) -> TracerSpec:
        kills_connects = any(r.kind == "connect" and r.action == "kill" for r in self._load(args))
        if not kills_connects or args.dry_run:
            return SPEC
        return dataclasses.replace(SPEC, alternatives=(REFUSING_CONNECT, *SPEC.alternatives))

    def skip_hooks(self, args) -> set[str]:
        wanted = {fn for r in self._load(args) for fn in ENTRY_POINTS[r.kind]}
        return {fn for fns in ENTRY_POINTS.values() for fn in fns} - wanted

    def attachers(self, args) -> dict:
        return {"tracepoint": self._attach, "raw_tracepoint": self._attach, "lsm": self._attach}

    def _attach(self, session, hook: Hook) -> None:
        """Rules go into the maps before the first hook is attached (BCC
        attached the LSM program when it loaded it: until the maps are
        filled it matches nothing)."""
        if not self._filled:
            fill_maps(session.bpf, self.rules, self.dry_run)
            self._filled = True
        if hook.kind == "lsm":
            return
        b = session.bpf
        with quiet_stderr() as log:
            try:
                if hook.kind == "tracepoint":
                    b.attach_tracepoint(tp=hook.target, fn_name=hook.fn)
                else:
                    b.attach_raw_tracepoint(tp=hook.target, fn_name=hook.fn)
            except Exception as exc:
                if not hook.optional:
                    raise LoadError(f"guard: cannot attach {hook.kind} {hook.target}: "
                                    f"{log.first_error() or exc}", log.text) from None

    # -- output --------------------------------------------------------------------
    def to_record(self, event, boot_offset: float) -> dict:
        rule = self.by_index[event.index]
        rec = {"time": round(event.ts / 1e9 + boot_offset, 6), "rule": rule.name,
               "severity": rule.severity, "kind": rule.kind,
               "action": ACTIONS.get(event.action, "kill-failed"),
               "pid": event.pid, "ppid": event.ppid, "uid": event.uid,
               "comm": decoders.comm(decoders.raw_field(event, "comm")),
               "parent_comm": decoders.comm(decoders.raw_field(event, "parent_comm")),
               "cgroup_id": event.cgroup}
        if event.action < 0:
            rec["error"] = decoders.errno_name(event.action)
        rec.update(details(rule.kind, event))
        return rec

    @staticmethod
    def format_line(rec: dict) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(rec["time"]))
        fixed = ("time", "rule", "severity", "kind", "action", "pid", "ppid", "uid", "comm",
                 "parent_comm", "cgroup_id", *CUT_FLAGS.values())
        extra = " ".join(f"{k}={' '.join(v) if isinstance(v, list) else v}"
                         f"{'…' if rec.get(CUT_FLAGS.get(k, '')) else ''}"
                         for k, v in rec.items() if k not in fixed and v is not None)
        return (f"{when} {rec['severity'].upper():<8} {rec['rule']} [{rec['action']}] {rec['kind']} "
                f"pid={rec['pid']} ppid={rec['ppid']} uid={rec['uid']} comm={rec['comm']} "
                f"parent={rec['parent_comm']} {extra}").rstrip()

    def totals(self, session) -> dict[str, int]:
        return {decoders.text(bytes(k.rule)): int(v.value)  # our rule names: text() is enough
                for k, v in session.bpf["alerts"].items()}

    def run(self, session, args) -> int:
        kills = sum(r.action == "kill" for r in self.rules)
        print(f"bpfwatch guard: {len(self.rules)} rules from {args.rules} ({kills} kill"
              f"{', dry run: they only alert' if self.dry_run else ''})", file=sys.stderr, flush=True)
        fd = open_output(args.output) if args.output else None
        saved = None
        if fd is not None:  # alerts (and nothing else) go to the file: swap it in as stdout
            sys.stdout.flush()
            saved = os.dup(1)
            os.dup2(fd, 1)
        try:
            header = "TIME     SEVERITY RULE [ACTION] KIND WHO DETAILS"
            rc = runner.stream_events(session, args, "guard rules", header, self.to_record,
                                      self.format_line)
            if args.json:
                runner.emit({"alerts_total": self.totals(session)})
            return rc
        finally:
            if saved is not None:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
                os.close(fd)


TRACER = Guard
