"""Map contents as numbers and decoded labels: the one decoding that the
exporter's collector and the CLI's summary loop share. No bcc: tests feed
fake maps (ints, ctypes structs, per-CPU lists)."""
from __future__ import annotations

import ctypes

from tracers import decoders
from tracers.spec import Label

# The CLI's JSON keeps numbers (pid, port) as numbers; Prometheus labels are text.
NUMBER = "number"


def number(value, field: str = "") -> int:
    """An int from a map value: a scalar, a struct field, or per-CPU copies summed."""
    if isinstance(value, (list, tuple, ctypes.Array)):  # per-CPU copies
        parts = [getattr(v, field) for v in value] if field else value
        if all(type(p) is int for p in parts):
            return sum(parts)
        return sum(number(p) for p in parts)
    if field:
        value = getattr(value, field)
    return value if isinstance(value, int) else int(value.value)


def raw_label(key, value, label: Label):
    """The raw bytes or number a label decodes: a key field, the scalar key,
    or (`value.<field>`) a field of a struct value, e.g. a comm kept there."""
    if label.field.startswith("value."):
        return field_bytes(value, label.field[len("value."):])
    return getattr(key, label.field) if label.field else key


def field_bytes(struct, name: str):
    """A field; char arrays as all their bytes (ctypes stops reading at a NUL)."""
    desc = getattr(type(struct), name, None)
    if desc is not None and isinstance(getattr(struct, name), bytes):
        return ctypes.string_at(ctypes.addressof(struct) + desc.offset, desc.size)
    return getattr(struct, name)


def decode_labels(key, value, labels: tuple[Label, ...], custom: dict | None = None) -> tuple:
    """Label values of one map entry; raises decoders.DecodeError (or KeyError
    for an unknown decoder) when a decoder refuses. `custom` maps decoder
    names to per-run decoders (e.g. a rule index -> the rule's text)."""
    out = []
    for label in labels:
        raw = raw_label(key, value, label)
        if label.decoder == NUMBER:
            out.append(number(raw))
            continue
        decode = (custom or {}).get(label.decoder) or decoders.DECODERS[label.decoder]
        out.append(decode(raw))
    return tuple(out)
