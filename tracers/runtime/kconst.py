"""Kernel constants, each in one place: where the kernel's pseudo
filesystems live and the ABI numbers (from its UAPI headers) that more than
one module uses. The bpf() syscall's own numbers live with its wrapper,
in bpfsys.py. No bcc import here."""
from __future__ import annotations

from pathlib import Path

# -- pseudo filesystems ------------------------------------------------------
TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS = Path("/sys/kernel/debug")
SECURITYFS = Path("/sys/kernel/security")
KPROBE_BLACKLIST = DEBUGFS / "kprobes" / "blacklist"
PMU_DIR = Path("/sys/bus/event_source/devices")  # the kprobe and uprobe perf PMUs

# -- packets -------------------------------------------------------------------
SO_ATTACH_BPF = 50  # include/uapi/asm-generic/socket.h
ETH_HLEN = 14  # bytes before the IP header on Ethernet and loopback
# clsact hooks: TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS)
CLSACT_PARENTS = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
