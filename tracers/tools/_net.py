"""Command-line values of the packet tracers (tctraffic, sockfilter): interfaces, CIDRs, ports."""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from tracers.runtime.kconst import ETH_HLEN

# -- option parsing (argparse types: bad input is one line) --------------------
def interface(text: str) -> str:
    try:
        socket.if_nametoindex(text)
    except OSError:
        raise argparse.ArgumentTypeError(f"no interface {text!r} in this network namespace") from None
    return text


def cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address or CIDR") from None


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return value


def address_words(packed: bytes) -> list[int]:
    """16 bytes (IPv4 padded with zeros) as four native-order u32 words: what
    the C side reads into u32 src[4]/dst[4]."""
    raw = packed.ljust(16, b"\0")
    return [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, 16, 4)]


def link_layer_len(name: str) -> int:
    """ETH_HLEN (14) on Ethernet and loopback, 0 on raw-IP devices (tun, wireguard)."""
    from pyroute2 import IPRoute
    try:
        with IPRoute() as ipr:
            kind = ipr.get_links(socket.if_nametoindex(name))[0]["ifi_type"]
    except Exception:  # vanished since parsing: attaching will say so in one line
        return ETH_HLEN
    return ETH_HLEN if kind in (1, 772) else 0  # ARPHRD_ETHER, ARPHRD_LOOPBACK
