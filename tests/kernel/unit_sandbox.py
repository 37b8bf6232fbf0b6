"""Run a command under what a systemd unit's [Service] section would impose
that decides whether BPF loading works: NoNewPrivileges, MemoryDenyWriteExecute
(the kernel's PR_SET_MDWE), SystemCallFilter/SystemCallErrorNumber and
RestrictAddressFamilies (seccomp, through libseccomp). PID 1 here is not
systemd, so the unit cannot be started; this is its sandbox without it.

    python3 unit_sandbox.py UNIT_FILE COMMAND...
"""
import ctypes
import errno
import os
import socket
import subprocess
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def service_settings(path: str) -> dict[str, list[str]]:
    """[Service] key -> values (repeated keys accumulate, as systemd's lists do)."""
    out, section = {}, None
    for line in open(path):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).extend(value.split())
    return out


def expand(names: list[str], seen=None) -> set[str]:
    """Syscall names, with @groups expanded by systemd-analyze (recursively)."""
    seen = set() if seen is None else seen
    out = set()
    for name in names:
        if not name.startswith("@"):
            out.add(name)
            continue
        if name in seen:
            continue
        seen.add(name)
        listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                                 text=True, check=True).stdout
        members = [line.strip() for line in listing.splitlines()[1:]
                   if line.strip() and not line.strip().startswith("#")]
        out |= expand(members, seen)
    return out


def sandbox(settings: dict) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if settings.get("NoNewPrivileges") == ["yes"]:
        assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    if settings.get("MemoryDenyWriteExecute") == ["yes"]:
        assert libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0, "no PR_SET_MDWE"
    allowed = expand(settings.get("SystemCallFilter", []))
    families = [getattr(socket, f) for f in settings.get("RestrictAddressFamilies", [])]
    error = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[0])
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init(0x00050000 | error)  # SCMP_ACT_ERRNO
    for name in sorted(allowed - ({"socket"} if families else set())):
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # names of other architectures are skipped, as systemd does
            assert seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None) == 0, name
    if families and "socket" in allowed:
        nr = seccomp.seccomp_syscall_resolve_name(b"socket")
        for family in families:
            cmp = ArgCmp(0, SCMP_CMP_EQ, family, 0)
            assert seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, ctypes.byref(cmp)) == 0
    assert seccomp.seccomp_load(ctx) == 0


if __name__ == "__main__":
    sandbox(service_settings(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
