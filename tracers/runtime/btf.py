"""Read struct layouts, enums and function names from the kernel's BTF.

BCC compiles against whatever headers it finds (here: Debian 6.1 headers on a
6.18 kernel), so kernel-internal struct layouts in C can be wrong. Probes that
read kernel structs take their field offsets from BTF instead, passed to the C
code as -D constants (see resolve_offsets).

Pure stdlib, no bcc. Format: kernel Documentation/bpf/btf.rst.
"""

import array
import struct
import sys

__all__ = ["BTF", "BTFUnavailable", "FieldNotFound", "resolve_offsets"]

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F

# BTF_KIND_* values.
(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST,
 RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG,
 ENUM64) = range(1, 20)

# Extra 32-bit words after the 3-word btf_type header: (fixed, per vlen item).
_EXTRA = {INT: (1, 0), ARRAY: (3, 0), STRUCT: (0, 3), UNION: (0, 3),
          ENUM: (0, 2), FUNC_PROTO: (0, 2), VAR: (1, 0), DATASEC: (0, 3),
          DECL_TAG: (1, 0), ENUM64: (0, 3)}
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
_COMPOSITE = (STRUCT, UNION)

_CACHE = {}


class BTFUnavailable(OSError):
    """The BTF file is missing, unreadable or not BTF."""


class FieldNotFound(LookupError):
    """A struct, or a member on a path through it, can't be used by offset.

    Also raised for bitfields that are not byte-aligned: a probe can't read
    them by offset either, so callers need to handle only one exception.
    """

    def __init__(self, struct_name, path, message=None):
        self.struct = struct_name
        self.path = path
        super().__init__(message or
                         f"struct {struct_name} has no field {path!r} in kernel BTF")


class BTF:
    """Parsed raw BTF (one type section, one string section)."""

    def __init__(self, data):
        """Parse raw BTF bytes (as in /sys/kernel/btf/vmlinux)."""
        if len(data) < 24:
            raise BTFUnavailable("BTF data too short for a header")
        magic = struct.unpack_from("<H", data)[0]
        little = magic == MAGIC
        if not little and magic != 0x9FEB:
            raise BTFUnavailable(f"bad BTF magic {magic:#06x}")
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<5I" if little else ">5I", data, 4)
        types = hdr_len + type_off
        strs = hdr_len + str_off
        if types + type_len > len(data) or strs + str_len > len(data) or type_len % 4:
            raise BTFUnavailable("BTF header points outside the data")
        # A flat u32 array: indexing it is much faster than struct.unpack per
        # field, and it stays 4 bytes a word (a list of ints took ~30 MiB).
        words = array.array("I", data[types:types + type_len])
        if little != (sys.byteorder == "little"):
            words.byteswap()
        self._w = w = words
        self._strs = bytes(data[strs:strs + str_len])
        # _pos[type_id] = index of that type's header in _w; id 0 is void.
        pos = [0]
        append = pos.append
        extra = _EXTRA.get
        i, n = 0, len(w)
        while i < n:
            append(i)
            info = w[i + 1] if i + 1 < n else 0
            fixed, per = extra((info >> 24) & 0x1F, (0, 0))
            i += 3 + fixed + per * (info & 0xFFFF)
        if i != n:
            raise BTFUnavailable("BTF type section is truncated")
        self._pos = array.array("I", pos)
        # Name offset per type id, for index() lookups (C-speed scans).
        self._names = array.array("I", [0] + [w[p] for p in pos[1:]])
        self._memo = {}  # (name, kinds) -> ids: probes ask for the same structs

    @classmethod
    def load(cls, path=VMLINUX):
        """Parse the BTF file at path once per process; later calls reuse it."""
        btf = _CACHE.get(path)
        if btf is None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise BTFUnavailable(f"cannot read BTF at {path}: {e.strerror}") from None
            try:
                btf = _CACHE[path] = cls(data)
            except BTFUnavailable as e:
                raise BTFUnavailable(f"{path}: {e}") from None
        return btf

    # -- low-level access ------------------------------------------------

    def _str(self, off):
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode()

    def _kind(self, tid):
        p = self._pos[tid]
        info = self._w[p + 1]
        return (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31), p

    def _ids(self, name, kinds):
        """Type ids named name whose kind is in kinds."""
        key = (name, kinds)
        if key in self._memo:
            return self._memo[key]
        needle, found, at = b"\0" + name.encode() + b"\0", [], -1
        while True:
            at = self._strs.find(needle, at + 1)
            if at < 0:
                self._memo[key] = found
                return found
            off, start = at + 1, 1
            while True:
                try:
                    tid = self._names.index(off, start)
                except ValueError:
                    break
                if self._kind(tid)[0] in kinds:
                    found.append(tid)
                start = tid + 1

    def _strip(self, tid):
        """Follow typedef/const/volatile/restrict/type_tag to the real type."""
        while tid:
            kind, _, _, p = self._kind(tid)
            if kind not in _MODIFIERS:
                break
            tid = self._w[p + 2]
        return tid

    def _size(self, tid):
        tid = self._strip(tid)
        kind, _, _, p = self._kind(tid) if tid else (0, 0, 0, 0)
        if kind == PTR:
            return struct.calcsize("P")  # BTF has no pointer size; it's the host's
        if kind == ARRAY:
            return self._w[p + 5] * self._size(self._w[p + 3])
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return self._w[p + 2]
        raise ValueError(f"BTF type {tid} (kind {kind}) has no size")

    def _find_member(self, tid, name):
        """(bit offset, bitfield bits or 0, type id) of name in struct tid,
        looking inside anonymous struct/union members too; None if absent."""
        kind, vlen, kflag, p = self._kind(tid)
        w = self._w
        for m in range(p + 3, p + 3 + 3 * vlen, 3):
            name_off, mtype, off = w[m], w[m + 1], w[m + 2]
            bits, off = (off >> 24, off & 0xFFFFFF) if kflag else (0, off)
            if name_off == 0:
                inner = self._strip(mtype)
                if inner and self._kind(inner)[0] in _COMPOSITE:
                    hit = self._find_member(inner, name)
                    if hit:
                        return off + hit[0], hit[1], hit[2]
            elif self._str(name_off) == name:
                inner = self._strip(mtype)
                if not kflag and inner and self._kind(inner)[0] == INT:
                    # Old-style bitfield: the INT itself carries bit offset/width.
                    q = self._pos[inner]
                    enc = w[q + 3]
                    if (enc >> 16) & 0xFF or (enc & 0xFF) != w[q + 2] * 8:
                        return off + ((enc >> 16) & 0xFF), enc & 0xFF, mtype
                return off, bits, mtype
        return None

    def _member(self, struct_name, path):
        ids = self._ids(struct_name, _COMPOSITE) or self._ids(struct_name, (TYPEDEF,))
        ids = [t for t in map(self._strip, ids) if t and self._kind(t)[0] in _COMPOSITE]
        if not ids:
            raise FieldNotFound(struct_name, path,
                                f"kernel BTF has no struct {struct_name!r} (wanted field {path!r})")
        # A few names (e.g. 'console') have several unrelated definitions in
        # vmlinux: take the first one that has the path.
        try:
            return self._walk(ids[0], struct_name, path)
        except FieldNotFound:
            for tid in ids[1:]:
                try:
                    return self._walk(tid, struct_name, path)
                except FieldNotFound:
                    pass
            raise

    def _walk(self, tid, struct_name, path):
        parts = path.split(".")
        bitoff = bits = 0
        for k, name in enumerate(parts):
            cur = self._strip(tid)
            if k and (bits or not cur or self._kind(cur)[0] not in _COMPOSITE):
                raise FieldNotFound(struct_name, path,
                                    f"struct {struct_name}: {'.'.join(parts[:k])!r} is not "
                                    f"a struct or union, cannot reach {path!r}")
            hit = self._find_member(cur, name)
            if hit is None:
                raise FieldNotFound(struct_name, path)
            bitoff += hit[0]
            bits, tid = hit[1], hit[2]
        return bitoff, bits, tid

    # -- public API ------------------------------------------------------

    def field_offset(self, struct_name, path):
        """Byte offset of a (dotted) member path in struct_name."""
        bitoff, _, _ = self._member(struct_name, path)
        if bitoff % 8:
            raise FieldNotFound(struct_name, path,
                                f"struct {struct_name} field {path!r} is a bitfield at bit "
                                f"{bitoff}, not byte-aligned; can't read it by offset")
        return bitoff // 8

    def field_size(self, struct_name, path):
        """Size in bytes of the member's type (a whole-byte bitfield's width)."""
        bitoff, bits, tid = self._member(struct_name, path)
        if bits:
            if bits % 8 or bitoff % 8:
                raise FieldNotFound(struct_name, path,
                                    f"struct {struct_name} field {path!r} is a {bits}-bit "
                                    f"bitfield; can't read it by offset")
            return bits // 8
        return self._size(tid)

    def enum_values(self, name):
        """{value: enumerator name} of enum name (ENUM or ENUM64)."""
        ids = self._ids(name, (ENUM, ENUM64))
        if not ids:
            raise LookupError(f"kernel BTF has no enum {name!r}")
        kind, vlen, signed, p = self._kind(ids[0])
        w, out = self._w, {}
        step = 2 if kind == ENUM else 3
        bits = 32 if kind == ENUM else 64
        for m in range(p + 3, p + 3 + step * vlen, step):
            val = w[m + 1] if kind == ENUM else w[m + 1] | w[m + 2] << 32
            if signed and val >> (bits - 1):
                val -= 1 << bits
            out[val] = self._str(w[m])
        return out

    def has_function(self, name):
        """True if the kernel BTF describes a function (BTF_KIND_FUNC) name."""
        return bool(self._ids(name, (FUNC,)))

    def function_id(self, name):
        """The BTF id of function name (what a TRACING or LSM program's
        attach_btf_id names), or None."""
        ids = self._ids(name, (FUNC,))
        return ids[0] if ids else None


def resolve_offsets(fields, btf=None):
    """Map {define: (struct, path)} to {define: byte offset}, for -D cflags.

    Raises FieldNotFound for the first field that can't be resolved, its
    message prefixed with the define name.
    """
    btf = btf or BTF.load()
    out = {}
    for define, (struct_name, path) in fields.items():
        try:
            out[define] = btf.field_offset(struct_name, path)
        except FieldNotFound as e:
            raise FieldNotFound(struct_name, path, f"{define}: {e}") from None
    return out
