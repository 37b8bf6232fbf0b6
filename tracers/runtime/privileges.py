"""Capabilities, not uid 0: what each hook kind needs, checked in CapEff.

A process may run as any uid with the right capabilities (a systemd unit's
AmbientCapabilities, `setpriv --ambient-caps`); root without them (a
container) cannot load anything. So the check reads the effective set the
kernel will consult, and names the capability that is missing.

NEEDS was measured on the host kernel (6.18) and on Debian's 6.1 by running
each hook kind as uid 65534 with one capability fewer at a time; README
"Capabilities" has the table.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

from tracers.runtime.errors import BpfwatchError

# include/uapi/linux/capability.h
NUMBERS = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
    "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
    "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
    "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
    "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
    "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
    "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
    "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36, "audit_read": 37,
    "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}
NAMES = {n: name for name, n in NUMBERS.items()}

# Loading any program and creating maps (ring buffers included).
BASE = frozenset({"bpf"})
# tracefs (/sys/kernel/tracing is 0700, events/*/id and format 0440, all
# root's): BCC reads the ids to attach and the formats for argument structs.
TRACEFS_READ = frozenset({"dac_read_search"})
TRACING = BASE | {"perfmon"}
NEEDS: dict[str, frozenset[str]] = {
    "tracepoint": TRACING | TRACEFS_READ,
    # the planner looks the raw tracepoint up in tracefs
    "raw_tracepoint": TRACING | TRACEFS_READ,
    "perf_event": TRACING,
    # The uprobe PMU wants CAP_SYS_ADMIN again since 2025 (a CAP_PERFMON
    # process could place probes in binaries it cannot write), and the
    # kernel takes CAP_SYS_ADMIN for CAP_BPF and CAP_PERFMON too (see
    # held()). Our uprobes are perf events of the PMU: no tracefs.
    "uprobe": frozenset({"sys_admin"}),
    "uretprobe": frozenset({"sys_admin"}),
    # Not measurable on a kernel without kprobes and fentry: the kernel's own
    # checks (perfmon_capable), plus tracefs/debugfs reads for BCC's lookups.
    "kprobe": TRACING | TRACEFS_READ,
    "kretprobe": TRACING | TRACEFS_READ,
    "fentry": TRACING | TRACEFS_READ,
    "fexit": TRACING | TRACEFS_READ,
    "tc": BASE | {"net_admin"},
    "xdp": BASE | {"net_admin"},
    # the program needs CAP_BPF; the AF_PACKET socket it attaches to, CAP_NET_RAW
    "socket_filter": BASE | {"net_raw"},
}
# Mounting tracefs/debugfs where nothing mounted them yet (PID 1 usually does).
MOUNT = frozenset({"sys_admin"})


def parse_mask(hex_text: str) -> frozenset[str]:
    mask = int(hex_text, 16)
    return frozenset(NAMES.get(bit, f"cap_{bit}") for bit in range(64) if mask >> bit & 1)


def capabilities(kind: str = "CapEff", pid: int | str = "self") -> frozenset[str]:
    """A capability set (CapEff, CapPrm, CapInh, CapBnd, CapAmb) of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return parse_mask(line.split()[1])
    raise BpfwatchError(f"/proc/{pid}/status has no {kind} line")


def held() -> frozenset[str]:
    """What this process may do with BPF: its effective set, plus what the
    kernel grants for CAP_SYS_ADMIN too (bpf_capable(), perfmon_capable())."""
    caps = capabilities()
    return caps | {"bpf", "perfmon"} if "sys_admin" in caps else caps


def needed_for(hook_kinds) -> frozenset[str]:
    out = set(BASE)
    for kind in hook_kinds:
        out |= NEEDS.get(kind, BASE)
    return frozenset(out)


def cap_list(names) -> str:
    return ", ".join(f"CAP_{n.upper()}" for n in sorted(names, key=lambda n: NUMBERS.get(n, 99)))


def require(needed, what: str = "", have: frozenset[str] | None = None) -> None:
    """One line naming every missing capability, or nothing. The callers
    prefix "bpfwatch <command>: "; `what` says for what, if not everything;
    `have`: held(), if the caller read it already."""
    missing = set(needed) - (held() if have is None else have)
    if missing:
        raise BpfwatchError(f"{what + ' need' if what else 'needs'} {cap_list(missing)}, "
                            "missing from this process's effective capabilities (root has them; "
                            "or grant them, see README \"Capabilities\")")


def require_for_hooks(hooks, tracer: str) -> None:
    """Before compiling: what these hooks need, named with their kinds."""
    have = held()
    kinds = sorted({h.kind for h in hooks if NEEDS.get(h.kind, BASE) - have})
    if kinds:
        require(needed_for(kinds), f"{tracer}'s {'/'.join(kinds)} hooks", have)


def require_for_alternatives(alternatives, tracer: str) -> None:
    """Before planning (which reads tracefs): what every alternative needs."""
    common = frozenset.intersection(*(needed_for(h.kind for h in a.hooks) for a in alternatives))
    require(common, f"{tracer}'s hooks")


# -- dropping -----------------------------------------------------------------
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _mask(names) -> int:
    return sum(1 << NUMBERS[n] for n in names)


def drop_all_but(keep) -> frozenset[str]:
    """Keep only `keep` (where held): effective, permitted, inheritable and
    ambient; the bounding set too when CAP_SETPCAP allows. Irreversible.

    Capabilities are per thread: call this before starting threads (those
    inherit the reduced sets). Returns the effective set afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    held = capabilities("CapPrm")
    kept = _mask(set(keep) & held)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        word = (kept >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if "setpcap" in capabilities():  # bounding set: only with CAP_SETPCAP, before losing it
        for name, bit in NUMBERS.items():
            if name not in keep:
                libc.prctl(PR_CAPBSET_DROP, bit, 0, 0, 0)
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise BpfwatchError(f"cannot drop capabilities: {os.strerror(err)}")
    return capabilities()


def _map_read_needs_bpf(map_fd: int) -> bool:
    """Whether reading a map we hold needs CAP_BPF (kernels before 6.5 with
    unprivileged BPF disabled check every bpf() call, later ones only loads
    and creates). Tried with an empty effective set, then restored: the
    permitted set is untouched until drop_all_but."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    saved = (_Data * 2)()
    if libc.capget(ctypes.byref(header), saved) != 0:
        return True
    empty = (_Data * 2)(*[_Data(0, d.permitted, d.inheritable) for d in saved])
    from tracers.runtime import bpfsys
    next_key = ctypes.create_string_buffer(512)
    # union bpf_attr for map element commands: map_fd, pad, key (NULL: the first), next_key
    attr = struct.pack("=IIQQ", map_fd, 0, 0, ctypes.addressof(next_key))
    libc.capset(ctypes.byref(header), empty)
    try:
        bpfsys.bpf(bpfsys.BPF_MAP_GET_NEXT_KEY, attr)
        needs = False
    except OSError as exc:
        needs = exc.errno != errno.ENOENT  # ENOENT: an empty map, read fine
    finally:
        libc.capset(ctypes.byref(header), saved)
    return needs


def drop_after_attach(targets) -> frozenset[str]:
    """The exporter, once everything is attached: keep only what serving and
    detaching still need (ebpf_exporter's --capabilities.keep, decided by
    trying). targets: attached ones have .table(map) and their chosen
    alternative in .spec/.hook. Returns the effective set afterwards."""
    attached = [t for t in targets if t.table is not None]
    keep = set()
    # clsact filters are removed over netlink at exit (tcx links go with their fd)
    if any(h.kind in ("tc", "xdp") for t in attached for h in t.spec.alternative(t.hook).hooks):
        keep.add("net_admin")
    if attached and _map_read_needs_bpf(attached[0].table("bpfwatch_stats").map_fd):
        keep.add("bpf")
    return drop_all_but(keep)
