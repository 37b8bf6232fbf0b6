"""Stack ids from a BPF_STACK_TRACE map -> symbol names (through BCC)."""
from __future__ import annotations

import errno

from tracers import decoders

MISSING = "[missing stack]"  # id < 0 other than EFAULT: map full or hash collision


class Symbolizer:
    """Frames root first, as folded stacks want them.

    User addresses resolve against the process's maps at call time (BCC
    caches per pid), so symbolise before the traced process exits.
    """

    def __init__(self, bpf, stack_map: str = "stacks"):
        self.bpf = bpf
        self.table = bpf[stack_map]
        self.missing = 0

    def _frames(self, stack_id: int, name_of) -> list[str]:
        if stack_id < 0:
            if stack_id == -errno.EFAULT:  # no such stack (kernel thread, user-mode sample)
                return []
            self.missing += 1
            return [MISSING]
        try:
            addrs = list(self.table.walk(stack_id))
        except KeyError:
            self.missing += 1
            return [MISSING]
        return [name_of(a) for a in reversed(addrs)]

    # Frame names are symbols, not text a process writes: text() bounds them
    # (C++ names run long); a stray byte in a name reads U+FFFD.
    def kernel(self, stack_id: int) -> list[str]:
        return self._frames(stack_id, lambda a: decoders.text(self.bpf.ksym(a), limit=160))

    def user(self, stack_id: int, pid: int) -> list[str]:
        return self._frames(stack_id, lambda a: decoders.text(self.bpf.sym(a, pid), limit=160))
