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


def read_raw(table) -> tuple[list, list] | None:
    """(keys as bytes, values) of a whole map in BPF_MAP_LOOKUP_BATCH walks,
    with no ctypes object per key; None when the map or kernel has no
    batch reads (then read_items)."""
    import ctypes
    import errno
    from bcc.libbcc import lib
    if not hasattr(table, "_alloc_keys_values"):
        return None
    room, keys, values = table._alloc_keys_values(alloc_k=True, alloc_v=True)
    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    token, count, total = ctypes.c_uint32(0), ctypes.c_uint32(0), 0
    while total < room.value:
        count.value = room.value - total
        res = lib.bpf_lookup_batch(table.map_fd, ctypes.byref(token) if total else None, ctypes.byref(token),
                                   ctypes.byref(keys, key_size * total), ctypes.byref(values, value_size * total),
                                   ctypes.byref(count))
        err = ctypes.get_errno()
        total += count.value
        if res != 0:
            if err == errno.ENOENT:
                break  # the whole map was walked
            return None
        if count.value == 0:
            break  # no progress (a concurrent update): what we have
    blob = ctypes.string_at(keys, key_size * total)
    return [blob[i:i + key_size] for i in range(0, key_size * total, key_size)], values[:total]
