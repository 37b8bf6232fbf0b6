"""tracers.runtime.btf: a hand-built BTF blob (parser logic, any machine) and the
host kernel's BTF checked against bpftool's own reading of it."""

import os
import re
import shutil
import struct
import subprocess

import pytest

from tracers.runtime.btf import (ARRAY, BTF, CONST, ENUM, ENUM64, FUNC, FUNC_PROTO,
                         INT, PTR, STRUCT, TYPEDEF, UNION, VMLINUX,
                         BTFUnavailable, FieldNotFound, resolve_offsets)


class Blob:
    """Encodes raw BTF: ids count from 1 in add() order."""

    def __init__(self):
        self.strs, self.words, self.count = b"\0", [], 0

    def s(self, name):
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, kind, name="", size_or_type=0, extra=(), vlen=0, kflag=False):
        info = kflag << 31 | kind << 24 | vlen
        self.words += [self.s(name), info, size_or_type, *extra]
        self.count += 1
        return self.count

    def composite(self, kind, name, size, members, kflag=False):
        words = []
        for mname, mtype, off in members:
            words += [self.s(mname), mtype, off]
        return self.add(kind, name, size, words, len(members), kflag)

    def enum(self, kind, name, values, signed=False):
        words = []
        for vname, val in values:
            val &= (1 << (32 if kind == ENUM else 64)) - 1
            words += [self.s(vname), val & 0xFFFFFFFF]
            if kind == ENUM64:
                words.append(val >> 32)
        return self.add(kind, name, 4 if kind == ENUM else 8, words, len(values), signed)

    def bytes(self):
        tlen = 4 * len(self.words)
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, tlen, tlen, len(self.strs))
        return hdr + struct.pack(f"<{len(self.words)}I", *self.words) + self.strs


@pytest.fixture(scope="module")
def tiny():
    b = Blob()
    int_t = b.add(INT, "int", 4, [32])
    char = b.add(INT, "char", 1, [8])
    u32 = b.add(TYPEDEF, "u32_t", int_t)
    pair = b.composite(STRUCT, "", 8, [("y", u32, 0), ("z", u32, 32)])
    anon = b.composite(UNION, "", 8, [("x", int_t, 0), ("", pair, 0)])
    outer = b.composite(STRUCT, "outer", 16, [
        ("a", int_t, 0), ("", anon, 32),
        ("bf", char, 3 << 24 | 96), ("bf8", char, 8 << 24 | 104),
        ("bfx", char, 3 << 24 | 99)], kflag=True)
    outer_t = b.add(TYPEDEF, "outer_t", b.add(CONST, "", outer))
    arr = b.add(ARRAY, "", 0, [int_t, int_t, 4])
    b.composite(STRUCT, "wrap", 40, [
        ("o", outer_t, 0), ("p", b.add(PTR, "", outer), 128), ("arr", arr, 192)])
    # Old-style bitfield (no kind_flag): the INT carries bit offset 2, width 3.
    b.composite(STRUCT, "oldbf", 8, [
        ("f", b.add(INT, "", 1, [2 << 16 | 3]), 0), ("g", int_t, 32)])
    # Same name, unrelated layouts (vmlinux has a few, e.g. 'console').
    b.composite(STRUCT, "dup", 8, [("a", int_t, 0), ("b", int_t, 32)])
    b.composite(STRUCT, "dup", 4, [("c", int_t, 0)])
    b.enum(ENUM, "colour", [("RED", -1), ("BLUE", 2)], signed=True)
    b.enum(ENUM, "ucolour", [("BIG", 0xFFFFFFFF)])
    b.enum(ENUM64, "big", [("HUGE", 1 << 40), ("NEG", -2)], signed=True)
    b.add(FUNC, "do_thing", b.add(FUNC_PROTO, "", 0))
    return BTF(b.bytes())


@pytest.mark.parametrize("struct_name,path,offset,size", [
    ("outer", "a", 0, 4),
    ("outer", "x", 4, 4),        # in an anonymous union
    ("outer", "y", 4, 4),        # anonymous struct in anonymous union, typedef
    ("outer", "z", 8, 4),
    ("outer", "bf8", 13, 1),     # byte-aligned whole-byte bitfield
    ("wrap", "o.z", 8, 4),       # through typedef + const
    ("wrap", "p", 16, 8),
    ("wrap", "arr", 24, 16),
    ("oldbf", "g", 4, 4),
    ("dup", "b", 4, 4),          # first struct of that name has it
    ("dup", "c", 0, 4),          # only the second does
])
def test_tiny_offsets(tiny, struct_name, path, offset, size):
    assert tiny.field_offset(struct_name, path) == offset
    assert tiny.field_size(struct_name, path) == size


@pytest.mark.parametrize("call,struct_name,path,message", [
    ("offset", "outer", "nope", "struct outer has no field 'nope' in kernel BTF"),
    ("offset", "wrap", "o.nope", "struct wrap has no field 'o.nope' in kernel BTF"),
    ("offset", "wrap", "p.a", "struct wrap: 'p' is not a struct or union, cannot reach 'p.a'"),
    ("offset", "dup", "d", "struct dup has no field 'd' in kernel BTF"),
    ("offset", "nostruct", "a", "kernel BTF has no struct 'nostruct' (wanted field 'a')"),
    ("offset", "outer", "bfx", "struct outer field 'bfx' is a bitfield at bit 99, "
                               "not byte-aligned; can't read it by offset"),
    ("offset", "oldbf", "f", "struct oldbf field 'f' is a bitfield at bit 2, "
                             "not byte-aligned; can't read it by offset"),
    ("size", "outer", "bf", "struct outer field 'bf' is a 3-bit bitfield; "
                            "can't read it by offset"),
])
def test_tiny_errors(tiny, call, struct_name, path, message):
    fn = tiny.field_offset if call == "offset" else tiny.field_size
    with pytest.raises(FieldNotFound) as e:
        fn(struct_name, path)
    assert str(e.value) == message
    assert (e.value.struct, e.value.path) == (struct_name, path)


def test_tiny_enums_and_functions(tiny):
    assert tiny.enum_values("colour") == {-1: "RED", 2: "BLUE"}
    assert tiny.enum_values("ucolour") == {0xFFFFFFFF: "BIG"}
    assert tiny.enum_values("big") == {1 << 40: "HUGE", -2: "NEG"}
    with pytest.raises(LookupError, match="no enum 'nope'"):
        tiny.enum_values("nope")
    assert tiny.has_function("do_thing")
    assert not tiny.has_function("outer") and not tiny.has_function("do_thin")


def test_tiny_resolve_offsets(tiny):
    assert resolve_offsets({"OFF_A": ("outer", "a"), "OFF_Z": ("wrap", "o.z")},
                           btf=tiny) == {"OFF_A": 0, "OFF_Z": 8}
    with pytest.raises(FieldNotFound,
                       match=r"^OFF_Q: struct outer has no field 'q' in kernel BTF$"):
        resolve_offsets({"OFF_A": ("outer", "a"), "OFF_Q": ("outer", "q"),
                         "OFF_R": ("outer", "r")}, btf=tiny)


def test_unavailable(tmp_path):
    with pytest.raises(BTFUnavailable, match="cannot read BTF at .*missing"):
        BTF.load(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(BTFUnavailable, match="bad BTF magic"):
        BTF.load(str(bad))


# -- the host kernel's BTF, checked against bpftool ----------------------

needs_vmlinux = pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"no {VMLINUX}")
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"


@pytest.fixture(scope="module")
def bpftool_types():
    """{id: (kind, name, type_id, [(member, type_id, bits_offset)])}."""
    if not os.access(BPFTOOL, os.X_OK):
        pytest.skip("bpftool not installed")
    out = subprocess.run([BPFTOOL, "btf", "dump", "file", VMLINUX, "format", "raw"],
                         check=True, capture_output=True, text=True).stdout
    types, members = {}, None
    for line in out.splitlines():
        m = re.match(r"\[(\d+)\] (\w+) '([^']*)'(?:.*? type_id=(\d+))?", line)
        if m:
            members = []
            types[int(m[1])] = (m[2], m[3], int(m[4] or 0), members)
            continue
        m = re.match(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)", line)
        if m:
            members.append((m[1], int(m[2]), int(m[3])))
    return types


def expected_offset(types, struct_name, path):
    """Sum bpftool's bits_offset along path, searching anonymous members."""
    def strip(tid):
        while types[tid][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            tid = types[tid][2]
        return tid

    def find(tid, name):
        for mname, mtype, bits in types[tid][3]:
            if mname == name:
                return bits, mtype
            if mname == "(anon)" and types[strip(mtype)][0] in ("STRUCT", "UNION"):
                hit = find(strip(mtype), name)
                if hit:
                    return bits + hit[0], hit[1]
        return None

    tid = next(i for i, t in types.items() if t[:2] == ("STRUCT", struct_name))
    bits = 0
    for name in path.split("."):
        off, tid = find(strip(tid), name)
        bits += off
    assert bits % 8 == 0
    return bits // 8


@pytest.fixture(scope="module")
def kernel():
    return BTF.load()


@needs_vmlinux
@pytest.mark.parametrize("struct_name,path", [
    ("tcp_sock", "bytes_acked"),
    ("tcp_sock", "bytes_received"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "__sk_common.skc_num"),
    ("sock", "sk_rcvbuf"),
    ("task_struct", "tgid"),
    ("task_struct", "pid"),
    ("task_struct", "real_parent"),
])
def test_kernel_offsets_match_bpftool(kernel, bpftool_types, struct_name, path):
    assert kernel.field_offset(struct_name, path) == \
        expected_offset(bpftool_types, struct_name, path)


@needs_vmlinux
def test_kernel_sizes_enums_functions(kernel):
    assert kernel.field_size("sock", "__sk_common.skc_dport") == 2
    assert kernel.field_size("task_struct", "pid") == 4
    assert kernel.field_size("task_struct", "real_parent") == 8
    assert "SKB_DROP_REASON_NO_SOCKET" in kernel.enum_values("skb_drop_reason").values()
    assert kernel.has_function("do_sys_openat2")
    assert not kernel.has_function("tcp_sock")
    assert BTF.load() is kernel  # cached per path


@needs_vmlinux
def test_kernel_missing_field_message(kernel):
    with pytest.raises(FieldNotFound) as e:
        resolve_offsets({"OFF_X": ("tcp_sock", "bytes_acked_x")}, btf=kernel)
    assert str(e.value) == "OFF_X: struct tcp_sock has no field 'bytes_acked_x' in kernel BTF"
