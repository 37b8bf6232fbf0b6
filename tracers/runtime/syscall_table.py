"""System call numbers <-> names for the running architecture.

From libseccomp's resolver (Debian's libseccomp2, which apt and systemd
depend on: every Debian system has it), read through ctypes. libseccomp
keeps one table per architecture and follows each kernel release; Debian's
stable updates carry the new entries (bookworm's 2.5.4-1+deb12u1 names up to
futex_requeue, 456). A number it does not know decodes as "syscall_<nr>";
`bpfwatch doctor` names the syscalls this kernel has (its syscalls:sys_enter_*
tracepoints) that the resolver cannot number yet.

Unlike a frozen x86_64 table, an architecture nobody can name is refused with
one line instead of being decoded with another architecture's numbers.
"""
from __future__ import annotations

import ctypes
import functools
import platform

from tracers.runtime.errors import BpfwatchError

# Native syscall numbers start at 0 on every architecture Debian ships
# (MIPS o32/n64, which start at 4000/5000, are not among them).
HIGHEST = 1024


class UnnamedArchitecture(BpfwatchError):
    """No source names this architecture's system calls."""


@functools.lru_cache(maxsize=None)
def _libseccomp():
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p  # malloc'd, freed below
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    return lib


@functools.lru_cache(maxsize=None)
def names() -> dict[int, str]:
    """number -> name for this architecture; UnnamedArchitecture if none."""
    lib = _libseccomp()
    arch = platform.machine()
    if lib is None:
        raise UnnamedArchitecture(f"cannot name {arch} system calls: libseccomp.so.2 "
                                  "(Debian's libseccomp2) is not installed")
    token = lib.seccomp_arch_native()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    table = {}
    for nr in range(HIGHEST):
        ptr = lib.seccomp_syscall_resolve_num_arch(token, nr)
        if ptr:
            table[nr] = ctypes.string_at(ptr).decode()
            libc.free(ptr)
    if not table:
        raise UnnamedArchitecture(f"cannot name {arch} system calls: libseccomp has no "
                                  "table for this architecture")
    return table


def source() -> str:
    """Which resolver names them, e.g. "libseccomp 2.5.4"."""
    lib = _libseccomp()
    if lib is None:
        return "no libseccomp"
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    return "libseccomp " + ".".join(map(str, lib.seccomp_version().contents))


@functools.lru_cache(maxsize=None)
def numbers() -> dict[str, int]:
    return {name: nr for nr, name in names().items()}


def require_for(spec) -> None:
    """A tracer whose labels name syscalls refuses, before loading anything,
    an architecture whose syscalls cannot be named."""
    if any(label.decoder == "syscall_name" for m in spec.metrics for label in m.labels):
        names()


# Tracepoints carry the kernel's SYSCALL_DEFINE names; these differ from the
# ABI names every table (and strace) uses.
KERNEL_ALIASES = {"newstat": "stat", "newlstat": "lstat", "newfstat": "fstat",
                  "newuname": "uname", "sendfile64": "sendfile", "umount": "umount2"}


def kernel_syscalls(tracefs) -> set[str]:
    """ABI names of the syscalls this kernel has, from its own sys_enter_*
    tracepoints (tracefs, readable by root)."""
    events = tracefs / "events" / "syscalls"
    raw = {p.name[len("sys_enter_"):] for p in events.glob("sys_enter_*")}
    return {KERNEL_ALIASES.get(name, name) for name in raw}
