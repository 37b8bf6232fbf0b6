"""Syscall names come from libseccomp for the running architecture (no root, no bcc)."""
import platform

import pytest

from tracers import decoders as d
from tracers.runtime import syscall_table


@pytest.fixture
def fresh_tables():
    cached = (syscall_table.names, syscall_table.numbers, syscall_table._libseccomp)
    for fn in cached:
        fn.cache_clear()
    yield
    for fn in cached:
        fn.cache_clear()


def test_syscalls_added_after_linux_6_1_have_names():
    # The frozen x86_64 table stopped at 450 (Linux 6.1) and printed these as numbers.
    assert platform.machine() == "x86_64", "expected numbers below are x86_64's"
    newer = {451: "cachestat", 452: "fchmodat2", 453: "map_shadow_stack", 454: "futex_wake",
             455: "futex_wait", 456: "futex_requeue"}
    assert {nr: d.syscall_name(nr) for nr in newer} == newer
    assert d.syscall_number("cachestat") == 451
    names = syscall_table.names()
    assert names[0] == "read" and names[60] == "exit" and len(set(names.values())) == len(names)


class NoTableLib:
    """libseccomp built for an architecture it has no table for."""
    @staticmethod
    def seccomp_arch_native():
        return 0

    @staticmethod
    def seccomp_syscall_resolve_num_arch(arch, nr):
        return None


@pytest.mark.parametrize("lib,why", [(None, "libseccomp.so.2"), (NoTableLib, "no table")])
def test_an_architecture_without_names_is_refused_in_one_line(monkeypatch, fresh_tables, lib, why):
    monkeypatch.setattr(syscall_table, "_libseccomp", lambda: lib)
    monkeypatch.setattr(syscall_table.platform, "machine", lambda: "sparc64")
    with pytest.raises(syscall_table.UnnamedArchitecture) as err:
        d.syscall_name(0)  # not a DecodeError: nothing may be decoded with wrong numbers
    assert "\n" not in str(err.value) and "sparc64" in str(err.value) and why in str(err.value)
    with pytest.raises(syscall_table.UnnamedArchitecture):
        d.syscall_number("read")
