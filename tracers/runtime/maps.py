"""Reading whole BPF maps: one batched syscall where the kernel allows."""
from __future__ import annotations


def read_items(table, use_batch: bool = True) -> tuple[list, bool]:
    """(all (key, value) pairs, whether the batch read worked).

    A 512-entry array read key by key costs 512 bpf() calls; the batch
    read is one (or a few). Per-CPU values come back the same either way."""
    if use_batch and hasattr(table, "items_lookup_batch"):
        try:
            return list(table.items_lookup_batch()), True
        except Exception:  # kernel or map type without batch ops: per-key reads
            pass
    return list(table.items()), False


def as_int(key) -> int:
    """A scalar key or value as int: batch reads give ints, items() ctypes."""
    return key if isinstance(key, int) else int(key.value)
