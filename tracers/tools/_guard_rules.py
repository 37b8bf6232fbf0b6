"""guard's rules file: TOML, validated completely before anything loads.

    [[rules]]
    name = "shell_from_web_server"     # [a-z][a-z0-9_]*, at most 31 bytes, unique
    kind = "exec"                      # see KINDS
    severity = "critical"              # info | low | medium | high | critical
    action = "alert"                   # alert | kill
    description = "why this matters"   # optional, shown nowhere but the file
    path = ["/bin/sh", "/bin/bash"]    # exact paths (exec, open)
    parent_comm = ["nginx"]            # and any other condition the kind takes

Every condition of a rule must hold; a list holds when any entry does. The
result is plain data (rule records, index entries, -D masks) that guard.py
writes into maps: no rule text reaches the C source. Pure Python, no bcc.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field

from tracers.spec import UsageError

# kind -> (id, conditions besides the common ones, one-line meaning)
KINDS = {
    "exec": (0, ("path", "path_prefix", "argv"), "a program starts (after exec succeeded)"),
    "open": (1, ("path", "path_prefix", "access"), "open/openat/openat2 of a path"),
    "connect": (2, ("cidr", "ports"), "connect() to an IPv4/IPv6 address"),
    "privilege": (3, (), "setuid/setgid/setre*/setres* to 0, or capset, by a non-root caller"),
    "ptrace": (4, (), "PTRACE_ATTACH or PTRACE_SEIZE of another process"),
    "module_load": (5, (), "init_module or finit_module"),
    "bpf_load": (6, (), "bpf(BPF_PROG_LOAD) by a process other than this guard"),
    "fileless_exec": (7, (), "exec of a file with no name on disk (memfd, O_TMPFILE, deleted)"),
    "proc_mem_write": (8, (), "open of /proc/<pid>/mem or /proc/<pid>/task/<tid>/mem for writing"),
}
COMMON = ("name", "kind", "severity", "action", "description", "comm", "not_comm",
          "parent_comm", "not_parent_comm", "uid_min", "uid_max", "cgroup", "container")
SEVERITIES = ("info", "low", "medium", "high", "critical")
ACTIONS = {"alert": 0, "kill": 1}
ACTION_DRY_RUN = 2  # a kill rule under --dry-run: alert, say what would have happened
ACCESS = {"any": 0, "write": 1, "read": 2}

# Bounds, documented in the README; a file beyond them is refused.
RULES_PER_KIND = 32  # one u32 mask of candidate rules per kind
PATHS_PER_RULE = 16
COMMS_PER_LIST = 16
CIDRS_PER_RULE = 16
PORTS_PER_RULE = 8
CGROUPS_PER_RULE = 4  # cgroup and container entries together
PATH_KEY_LEN = 64  # path bytes the kernel reads: a prefix <= 63, an exact path <= 62
ARGV_BYTES = 128  # argv entries, NUL-terminated and joined, the kernel compares
NAME_LEN = 32  # rule name bytes with the NUL (the counter key)
SEVERITY_LEN = 16
PATH_ENTRIES = 1024  # path index capacity (all kinds)
CIDR_ENTRIES = 1024
COMM_ENTRIES = 4096

NAME = re.compile(r"[a-z][a-z0-9_]*")
U32_MAX = 2**32 - 1

# Condition bits of a rule record (C: COND_*).
COND = {"comm": 1, "not_comm": 2, "parent_comm": 4, "not_parent_comm": 8, "argv": 16, "ports": 32,
        "cgroup": 64}
COMM_LIST = {"comm": 1, "not_comm": 2, "parent_comm": 3, "not_parent_comm": 4}


class RulesError(UsageError):
    pass


@dataclass
class Rule:
    name: str
    kind: str
    severity: str
    action: str
    slot: int  # index within its kind (bit in the kind's mask)
    comm: dict[str, list[str]] = field(default_factory=dict)  # list name -> comms
    uid_min: int = 0
    uid_max: int = U32_MAX
    paths: list[bytes] = field(default_factory=list)  # index keys: exact paths end in NUL
    argv: bytes = b""  # argv[0..n] joined with their NULs
    access: str = "any"
    cidrs: list = field(default_factory=list)  # ipaddress networks
    ports: list[int] = field(default_factory=list)
    # ("cgroup", path) or ("container", id prefix), as written; resolve_cgroups
    # turns them into (cgroup id, level) pairs when the rules are loaded
    cgroup_names: list[tuple[str, str]] = field(default_factory=list)
    cgroups: list[tuple[int, int]] = field(default_factory=list)

    @property
    def kind_id(self) -> int:
        return KINDS[self.kind][0]

    @property
    def index(self) -> int:
        """The rule's entry in the kernel's rules array."""
        return self.kind_id * RULES_PER_KIND + self.slot

    @property
    def conds(self) -> int:
        bits = sum(COND[k] for k in self.comm)
        if self.argv:
            bits |= COND["argv"]
        if self.ports:
            bits |= COND["ports"]
        if self.cgroup_names:
            bits |= COND["cgroup"]
        return bits


class _Bad(Exception):
    def __init__(self, field_name: str, why: str):
        super().__init__(field_name, why)
        self.field, self.why = field_name, why


def _text(field_name: str, value) -> str:
    if not isinstance(value, str):
        raise _Bad(field_name, f"must be a string, got {type(value).__name__}")
    if "\0" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _Bad(field_name, f"control characters are not allowed: {value!r}")
    return value


def _list(field_name: str, value, most: int) -> list:
    if not isinstance(value, list) or not value:
        raise _Bad(field_name, "must be a non-empty list")
    if len(value) > most:
        raise _Bad(field_name, f"at most {most} entries, got {len(value)}")
    return value


def _uid(field_name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise _Bad(field_name, f"must be an integer 0..{U32_MAX}")
    return value


def _comm(field_name: str, value) -> str:
    text = _text(field_name, value)
    if not 1 <= len(text.encode()) <= 15:
        raise _Bad(field_name, f"a command name is 1 to 15 bytes, got {text!r}")
    return text


def _path(field_name: str, value, exact: bool) -> bytes:
    raw = os.fsencode(_text(field_name, value))
    if not raw.startswith(b"/"):
        raise _Bad(field_name, f"must be absolute (paths are compared as the caller wrote them), got {value!r}")
    # The kernel reads PATH_KEY_LEN bytes with the NUL: it can tell a path
    # of PATH_KEY_LEN - 2 bytes from a longer one, not one of PATH_KEY_LEN - 1.
    most = PATH_KEY_LEN - 2 if exact else PATH_KEY_LEN - 1
    if len(raw) > most:
        raise _Bad(field_name, f"at most {most} bytes ({'exact path' if exact else 'prefix'}), "
                               f"got {len(raw)}")
    return raw + b"\0" if exact else raw


def _rule(raw, slots: dict[str, int]) -> Rule:
    if not isinstance(raw, dict):
        raise _Bad("", "must be a table ([[rules]])")
    for key in ("name", "kind", "severity", "action"):
        if key not in raw:
            raise _Bad(key, "missing")
    name = _text("name", raw["name"])
    if not NAME.fullmatch(name) or len(name) >= NAME_LEN:
        raise _Bad("name", f"must match [a-z][a-z0-9_]* and be at most {NAME_LEN - 1} bytes")
    kind = _text("kind", raw["kind"])
    if kind not in KINDS:
        raise _Bad("kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    allowed = COMMON + KINDS[kind][1]
    for key in raw:
        if key not in allowed:
            raise _Bad(key, f"unknown field for kind {kind} (known: {', '.join(allowed)})")
    severity = _text("severity", raw["severity"])
    if severity not in SEVERITIES:
        raise _Bad("severity", f"must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    action = _text("action", raw["action"])
    if action not in ACTIONS:
        raise _Bad("action", f"must be alert or kill, got {action!r}")
    if "description" in raw:
        _text("description", raw["description"])
    slot = slots.get(kind, 0)
    if slot >= RULES_PER_KIND:
        raise _Bad("kind", f"more than {RULES_PER_KIND} rules of kind {kind}")
    slots[kind] = slot + 1
    rule = Rule(name, kind, severity, action, slot)
    for key in COMM_LIST:
        if key in raw:
            rule.comm[key] = [_comm(f"{key}[{i}]", c) for i, c in enumerate(_list(key, raw[key], COMMS_PER_LIST))]
    rule.uid_min = _uid("uid_min", raw.get("uid_min", 0))
    rule.uid_max = _uid("uid_max", raw.get("uid_max", U32_MAX))
    if rule.uid_min > rule.uid_max:
        raise _Bad("uid_min", f"is above uid_max ({rule.uid_min} > {rule.uid_max})")
    for key, exact in (("path", True), ("path_prefix", False)):
        if key in raw:
            rule.paths += [_path(f"{key}[{i}]", p, exact)
                           for i, p in enumerate(_list(key, raw[key], PATHS_PER_RULE))]
    if len(rule.paths) > PATHS_PER_RULE:
        raise _Bad("path", f"path and path_prefix together: at most {PATHS_PER_RULE} entries")
    if kind == "open" and not rule.paths:
        raise _Bad("path", "an open rule needs path or path_prefix (every open is opensnoop's job)")
    if "argv" in raw:
        args = [os.fsencode(_text(f"argv[{i}]", a)) for i, a in enumerate(_list("argv", raw["argv"], 16))]
        rule.argv = b"".join(a + b"\0" for a in args)
        if len(rule.argv) > ARGV_BYTES:
            raise _Bad("argv", f"the entries with their NULs are at most {ARGV_BYTES} bytes, "
                               f"got {len(rule.argv)}")
    if "access" in raw:
        rule.access = _text("access", raw["access"])
        if rule.access not in ACCESS:
            raise _Bad("access", f"must be write, read or any, got {rule.access!r}")
    if "cidr" in raw:
        for i, text in enumerate(_list("cidr", raw["cidr"], CIDRS_PER_RULE)):
            try:
                rule.cidrs.append(ipaddress.ip_network(_text(f"cidr[{i}]", text), strict=True))
            except ValueError as exc:
                raise _Bad(f"cidr[{i}]", f"not a CIDR: {exc}") from None
    elif kind == "connect":
        rule.cidrs = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    for key in ("cgroup", "container"):
        if key in raw:
            rule.cgroup_names += [(key, _text(f"{key}[{i}]", c))
                                  for i, c in enumerate(_list(key, raw[key], CGROUPS_PER_RULE))]
    if len(rule.cgroup_names) > CGROUPS_PER_RULE:
        raise _Bad("cgroup", f"cgroup and container together: at most {CGROUPS_PER_RULE} entries")
    if "ports" in raw:
        for i, port in enumerate(_list("ports", raw["ports"], PORTS_PER_RULE)):
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise _Bad(f"ports[{i}]", f"a port is 1 to 65535, got {port!r}")
            rule.ports.append(port)
    return rule


def parse(data, path: str) -> list[Rule]:
    """Rules from a parsed TOML document; RulesError names file, rule and field."""
    if set(data) - {"rules"}:
        extra = sorted(set(data) - {"rules"})[0]
        raise RulesError(f"rules {path}: {extra}: unknown top-level field (only [[rules]])")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"rules {path}: needs at least one [[rules]] table")
    rules, names, slots = [], set(), {}
    for i, raw in enumerate(raw_rules):
        label = f"rules[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label += f" {raw['name']!r}"
        try:
            rule = _rule(raw, slots)
        except _Bad as bad:
            where = f".{bad.field}" if bad.field else ""
            raise RulesError(f"rules {path}: {label}{where}: {bad.why}") from None
        if rule.name in names:
            raise RulesError(f"rules {path}: {label}.name: {rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return rules


def load(path: str) -> list[Rule]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RulesError(f"rules {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules {path}: not valid TOML: {exc}") from None
    rules = parse(data, path)
    resolve_cgroups(rules, path)
    return rules


def resolve_cgroups(rules: list[Rule], path: str, resolver=None) -> None:
    """cgroup paths and container id prefixes -> (cgroup id, level), once, at
    start: the kernel matches the cgroup and everything below it (level is
    its depth: the ancestor of the current task's cgroup to compare)."""
    from tracers import containers
    root = None
    for i, rule in enumerate(rules):
        for key, text in rule.cgroup_names:
            try:
                if key == "container":
                    resolver = resolver or containers.Resolver()
                    text = resolver.find(text).cgroup
                full, cgroup_id = containers.cgroup_dir(text)
                root = root or containers.require_mount()
            except containers.CgroupError as exc:
                raise RulesError(f"rules {path}: rules[{i}] {rule.name!r}.{key}: {exc}") from None
            below_root = os.path.relpath(full, root)
            level = 0 if below_root == "." else len(below_root.split(os.sep))
            if level == 0:
                raise RulesError(f"rules {path}: rules[{i}] {rule.name!r}.{key}: {text!r} is the "
                                 "root cgroup (every process): leave the condition out instead")
            rule.cgroups.append((cgroup_id, level))


# -- what the kernel gets ------------------------------------------------------------

def mask_of(rules: list[Rule], kind: str) -> int:
    return sum(1 << r.slot for r in rules if r.kind == kind)


def path_index(rules: list[Rule]) -> dict[tuple[int, bytes], int]:
    """(kind id, key bytes) -> mask of the kind's rules whose paths match.

    The kernel finds the longest matching key in an LPM trie, so each key's
    mask also holds the rules of every shorter key that is its prefix."""
    own: dict[tuple[int, bytes], int] = {}
    for r in rules:
        for p in r.paths:
            own[(r.kind_id, p)] = own.get((r.kind_id, p), 0) | (1 << r.slot)
    return {(k, p): sum(m for (k2, p2), m in own.items() if k2 == k and p.startswith(p2))
            for (k, p) in own}


def cidr_index(rules: list[Rule]) -> dict[tuple[int, bytes, int], int]:
    """(family 4|6, address bytes, prefix bits) -> mask of connect rules (with ancestors)."""
    own: dict = {}
    for r in rules:
        for net in r.cidrs:
            own[net] = own.get(net, 0) | (1 << r.slot)
    out = {}
    for net in own:
        mask = sum(m for other, m in own.items()
                   if other.version == net.version and net.subnet_of(other))
        out[(net.version, net.network_address.packed, net.prefixlen)] = mask
    return out


def exec_without_path(rules: list[Rule]) -> int:
    """exec rules that name no path: candidates for every exec."""
    return sum(1 << r.slot for r in rules if r.kind == "exec" and not r.paths)


def comm_entries(rules: list[Rule]) -> list[tuple[int, int, bytes]]:
    """(rule index, list id, comm bytes) for the kernel's comm sets."""
    return [(r.index, COMM_LIST[key], c.encode()) for r in rules
            for key, comms in r.comm.items() for c in comms]


def layout_defines() -> dict[str, int]:
    """Sizes and codes both sides share, passed on every build (C has no defaults)."""
    out = {"GUARD_RULES_PER_KIND": RULES_PER_KIND, "GUARD_PATH_KEY_LEN": PATH_KEY_LEN,
           "GUARD_ARGV_BYTES": ARGV_BYTES, "GUARD_PORTS": PORTS_PER_RULE,
           "GUARD_NAME_LEN": NAME_LEN, "GUARD_SEVERITY_LEN": SEVERITY_LEN,
           "GUARD_PATH_ENTRIES": PATH_ENTRIES, "GUARD_CIDR_ENTRIES": CIDR_ENTRIES,
           "GUARD_COMM_ENTRIES": COMM_ENTRIES, "GUARD_KINDS": len(KINDS),
           "GUARD_CGROUPS": CGROUPS_PER_RULE,
           "ACTION_KILL": ACTIONS["kill"], "ACCESS_WRITE": ACCESS["write"],
           "ACCESS_READ": ACCESS["read"]}
    out.update({f"KIND_{k.upper()}": v[0] for k, v in KINDS.items()})
    out.update({f"COND_{k.upper()}": v for k, v in COND.items()})
    out.update({f"LIST_{k.upper()}": v for k, v in COMM_LIST.items()})
    return out
