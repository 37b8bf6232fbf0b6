"""Tests for tracers.output.text: exact strings, so output changes are deliberate."""
import ctypes
import math

import pytest

from tracers.output import text as fmt


def bpf_log2(v: int) -> int:
    """bcc's C helper, transcribed (u32 arithmetic)."""
    r = (v > 0xFFFF) << 4; v >>= r
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift
    shift = (v > 0xF) << 2; v >>= shift; r |= shift
    shift = (v > 0x3) << 1; v >>= shift; r |= shift
    return r | (v >> 1)


def bpf_log2l(v: int) -> int:
    hi = v >> 32
    return bpf_log2(hi) + 32 + 1 if hi else bpf_log2(v) + 1


VALUES = [0, 1, 2, 3, 4, 7, 8, 1000, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("v", VALUES + list(range(300)))
def test_documented_c_slot_matches_bounds(v):
    slot = v and bpf_log2l(v)  # the module docstring's `v ? bpf_log2l(v) : 0`
    assert slot == v.bit_length()
    low, high = fmt.log2_bucket_bounds(slot)
    assert low <= v <= high
    assert v < cumulative_le(slot)


def cumulative_le(slot):
    return fmt.cumulative_buckets([0] * (slot + 1))[slot][0]


@pytest.mark.parametrize("slot,bounds", [
    (0, (0, 0)), (1, (1, 1)), (2, (2, 3)), (3, (4, 7)), (10, (512, 1023)), (64, (2**63, 2**64 - 1)),
])
def test_log2_bucket_bounds(slot, bounds):
    assert fmt.log2_bucket_bounds(slot) == bounds


def test_log2_bucket_bounds_rejects_negative():
    with pytest.raises(ValueError):
        fmt.log2_bucket_bounds(-1)


EMPTY_BAR = "|" + " " * 40 + "|"
LOG2_EXPECTED = "\n".join([
    "     usecs               : count     distribution",
    "         0 -> 0          : 0        " + EMPTY_BAR,
    "         1 -> 1          : 1        |" + "*" * 10 + " " * 30 + "|",
    "         2 -> 3          : 4        |" + "*" * 40 + "|",
    "         4 -> 7          : 2        |" + "*" * 20 + " " * 20 + "|",
])


@pytest.mark.parametrize("buckets", [
    [0, 1, 4, 2],
    [0, 1, 4, 2, 0, 0],  # trailing empty slots are not printed
    {1: 1, 2: 4, 3: 2},
    [(ctypes.c_int(1), ctypes.c_ulong(1)), (ctypes.c_int(3), ctypes.c_ulong(2)), (2, 4)],  # table.items()
])
def test_log2_histogram(buckets):
    assert fmt.log2_histogram(buckets) == LOG2_EXPECTED


def test_log2_histogram_literal_rows():
    # The same output spelled out once, to catch a wrong width in both sides.
    out = fmt.log2_histogram({2: 2, 3: 1}, "msecs", strip_leading_zero=True)
    assert out.splitlines()[0] == "     msecs               : count     distribution"
    assert out.splitlines()[1] == (
        "         2 -> 3          : 2        |****************************************|")
    assert out.splitlines()[2] == (
        "         4 -> 7          : 1        |********************                    |")
    assert len(out.splitlines()) == 3


def test_log2_histogram_wide_values():
    # Past slot 32 bcc widens the number columns to 20 and halves the bar.
    out = fmt.log2_histogram(iter([0] * 40 + [1]), "nsecs", strip_leading_zero=True).splitlines()
    assert out == [
        "               nsecs                         : count     distribution",
        "        549755813888 -> 1099511627775        : 1        |" + "*" * 20 + "|",
    ]


@pytest.mark.parametrize("fn", [fmt.log2_histogram, fmt.linear_histogram])
@pytest.mark.parametrize("buckets", [[], [0, 0], {}])
def test_empty_histogram(fn, buckets):
    assert fn(buckets) == ""


@pytest.mark.parametrize("buckets", [[-1], {-1: 3}])
def test_histogram_rejects_negative(buckets):
    with pytest.raises(ValueError):
        fmt.log2_histogram(buckets)


def test_linear_histogram():
    assert fmt.linear_histogram([0, 3, 1], "queue len", start=10, step=5,
                                strip_leading_zero=True) == "\n".join([
        "     queue len     : count     distribution",
        "        15         : 3        |" + "*" * 40 + "|",
        "        20         : 1        |" + "*" * 13 + " " * 27 + "|",
    ])


def test_cumulative_buckets():
    assert fmt.cumulative_buckets([1, 2, 3], 1e-6) == [
        (1e-6, 1), (2e-6, 3), (4e-6, 6), (math.inf, 6)]
    # Multiplying by powers of two keeps bounds as clean as the multiplier.
    assert [repr(le) for le, _ in fmt.cumulative_buckets([0] * 11, 1e-6)[8:11]] == [
        "0.000256", "0.000512", "0.001024"]


def test_cumulative_buckets_fixed_top():
    # Slots above max_slot only count in +Inf, so the bucket set never changes.
    assert fmt.cumulative_buckets({0: 1, 5: 2}, max_slot=2) == [
        (1, 1), (2, 1), (4, 1), (math.inf, 3)]
    assert fmt.cumulative_buckets({}, max_slot=1) == [(1, 0), (2, 0), (math.inf, 0)]

