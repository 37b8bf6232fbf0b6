"""Histograms: text (bcc layouts) and Prometheus buckets.

Log2 histogram convention (the C side must follow it exactly)
-------------------------------------------------------------
A value v (u64) goes to slot v.bit_length():

    slot 0      holds v == 0
    slot k >= 1 holds 2**(k-1) <= v < 2**k       (slots 0..64)

In BCC C write

    u32 slot = v ? bpf_log2l(v) : 0;

bcc's bpf_log2l(v) already returns floor(log2(v)) + 1 for v >= 1 (it is the
bit length), but it also returns 1 for v == 0; the `v ? : 0` keeps zeros in
their own slot.  `bpf_log2l(v) + 1` would be off by one.

For Prometheus, slot k becomes the bucket le = 2**k * multiplier.  Its
integers reach only 2**k - 1, but the C side usually truncates (ns / 1000),
so a value counted in slot k was truly below 2**k units.  (cloudflare's
ebpf_exporter also labels exp2 bucket k with 2**k.)
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

_STARS = 40  # bar width of bcc's print_log2_hist


def _int(value) -> int:
    return value if isinstance(value, int) else int(value.value)  # ctypes from BCC maps


def _counts(buckets: Mapping | Sequence) -> list[int]:
    """Slot-indexed counts from a list of counts, a {slot: count} map, or
    (slot, count) pairs such as BCC's table.items() (ctypes keys don't hash)."""
    items = list(buckets.items() if isinstance(buckets, Mapping) else buckets)
    if isinstance(buckets, Mapping) or any(isinstance(v, tuple) for v in items):
        pairs = [(_int(k), _int(v)) for k, v in items]
        out = [0] * (max((k for k, _ in pairs), default=-1) + 1)
        for k, v in pairs:
            if k < 0:
                raise ValueError(f"negative histogram slot {k}")
            out[k] += v
    else:
        out = [_int(v) for v in items]
    if any(v < 0 for v in out):
        raise ValueError("negative histogram count")
    return out


def log2_bucket_bounds(slot: int) -> tuple[int, int]:
    """Inclusive integer range of a log2 slot: 0 -> (0, 0), 3 -> (4, 7)."""
    if slot < 0:
        raise ValueError(f"negative histogram slot {slot}")
    return (0, 0) if slot == 0 else (1 << (slot - 1), (1 << slot) - 1)


def _bar(count: int, peak: int, width: int) -> str:
    return "*" * (width * count // peak)


def _rows(counts: list[int], strip_leading_zero: bool) -> Iterable[tuple[int, int]]:
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    seen = not strip_leading_zero
    for i in range(last + 1):
        seen = seen or counts[i] > 0
        if seen:
            yield i, counts[i]


def log2_histogram(buckets: Mapping | Sequence, unit: str = "usecs", *,
                   strip_leading_zero: bool = False) -> str:
    """bcc print_log2_hist layout; "" when every slot is empty."""
    counts = _counts(buckets)
    rows = list(_rows(counts, strip_leading_zero))
    if not rows:
        return ""
    peak = max(counts)
    if rows[-1][0] <= 32:
        lines = ["     %-19s : count     distribution" % unit]
        body, width = "%10d -> %-10d : %-8d |%-*s|", _STARS
    else:  # wide values: bcc halves the bar to keep lines short
        lines = ["               %-29s : count     distribution" % unit]
        body, width = "%20d -> %-20d : %-8d |%-*s|", _STARS // 2
    for slot, count in rows:
        low, high = log2_bucket_bounds(slot)
        lines.append(body % (low, high, count, width, _bar(count, peak, width)))
    return "\n".join(lines)


def linear_histogram(buckets: Mapping | Sequence, unit: str = "value", *,
                     start: int = 0, step: int = 1,
                     strip_leading_zero: bool = False) -> str:
    """bcc print_linear_hist layout; bucket i is labelled start + i * step."""
    counts = _counts(buckets)
    rows = list(_rows(counts, strip_leading_zero))
    if not rows:
        return ""
    peak = max(counts)
    lines = ["     %-13s : count     distribution" % unit]
    for i, count in rows:
        lines.append("        %-10d : %-8d |%-*s|"
                     % (start + i * step, count, _STARS, _bar(count, peak, _STARS)))
    return "\n".join(lines)


def cumulative_buckets(log2_counts: Mapping | Sequence, multiplier: float = 1.0,
                       max_slot: int | None = None) -> list[tuple[float, int]]:
    """Log2 slot counts -> Prometheus [(le, cumulative count), ..., (inf, total)].

    le of slot k is 2**k * multiplier (see the module docstring); multiplier
    converts to base units (1e-6 for usecs -> seconds).  Give max_slot to
    keep the bucket set fixed across scrapes: higher slots count only in +Inf.
    """
    counts = _counts(log2_counts)
    top = len(counts) - 1 if max_slot is None else max_slot
    out, running = [], 0
    for k in range(top + 1):
        running += counts[k] if k < len(counts) else 0
        out.append(((1 << k) * multiplier, running))
    out.append((math.inf, sum(counts)))
    return out

