"""Folded stacks and a small flame graph SVG renderer (stdlib only).

Folded format (Brendan Gregg's stackcollapse): one line per stack, frames
root first joined by ";", then a space and the value:
    comm;main;work;entry_SYSCALL_64;do_syscall_64 42
The SVG is self-contained: one <rect> per frame (width proportional to its
value), a hover <title> with the name, value and share, colours from a hash
of the name so a function keeps its colour across graphs.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable
from xml.sax.saxutils import escape, quoteattr

FRAME_LIMIT = 160  # characters kept per frame name
_UNSAFE = re.compile(r"[\x00-\x1f\x7f;]")  # no XML 1.0 controls; ";" splits frames


def clean_frame(name: str) -> str:
    """A frame name safe inside a folded line and an SVG."""
    name = _UNSAFE.sub(lambda m: ":" if m.group() == ";" else "?", name).strip()
    return name[:FRAME_LIMIT] or "[unknown]"


def folded_line(frames: Iterable[str], value: int) -> str:
    return ";".join(clean_frame(f) for f in frames) + f" {int(value)}"


def parse_folded(text: str) -> list[tuple[tuple[str, ...], int]]:
    """Folded lines -> [(frames, value)]; blank lines are skipped."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        stack, _, value = line.rpartition(" ")
        if not stack or not value.isdigit():
            raise ValueError(f"line {number}: not 'frame;frame... COUNT': {line[:80]!r}")
        out.append((tuple(stack.split(";")), int(value)))
    return out


class _Node:
    __slots__ = ("name", "value", "children")

    def __init__(self, name: str):
        self.name, self.value, self.children = name, 0, {}


def build_tree(stacks: Iterable[tuple[Iterable[str], int]]) -> _Node:
    root = _Node("all")
    for frames, value in stacks:
        if value <= 0:
            continue
        root.value += value
        node = root
        for frame in frames:
            node = node.children.setdefault(frame, _Node(frame))
            node.value += value
    return root


def colour(name: str) -> str:
    """Warm flame colours, stable per name."""
    h = hashlib.sha1(name.encode("utf-8", "replace")).digest()
    return f"rgb({205 + h[0] % 50},{h[1] % 230},{h[2] % 55})"


def render_svg(stacks: Iterable[tuple[Iterable[str], int]], title: str = "Flame Graph",
               unit: str = "samples", width: int = 1200, frame_height: int = 16,
               min_width: float = 0.1) -> str:
    """The flame graph as an SVG document (root at the bottom)."""
    root = build_tree(stacks)
    pad, top, char_w = 10, 40, 7.0
    total = root.value or 1
    scale = (width - 2 * pad) / total
    boxes = []  # (depth, x, w, node)

    def walk(node: _Node, depth: int, x: float) -> int:
        boxes.append((depth, x, node.value * scale, node))
        deepest = depth
        for name in sorted(node.children):
            child = node.children[name]
            if child.value * scale >= min_width:
                deepest = max(deepest, walk(child, depth + 1, x))
            x += child.value * scale
        return deepest

    depth_max = walk(root, 0, float(pad))
    height = top + (depth_max + 1) * frame_height + 2 * pad
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Verdana, sans-serif" font-size="12">',
        "<style>g.f:hover rect { stroke: #000; stroke-width: 0.8; } text { pointer-events: none; }</style>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f8"/>',
        f'<text x="{width / 2:.0f}" y="24" text-anchor="middle" font-size="17">{escape(title)}</text>',
    ]
    for depth, x, w, node in boxes:
        y = height - pad - (depth + 1) * frame_height
        share = 100.0 * node.value / total
        tip = f"{node.name} ({node.value:,} {unit}, {share:.2f}%)"
        out.append(f'<g class="f"><title>{escape(tip)}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{frame_height - 1}" '
                   f'fill={quoteattr(colour(node.name))} rx="2" ry="2"/>')
        fits = int((w - 6) / char_w)
        if fits >= 3:
            label = node.name if len(node.name) <= fits else node.name[:fits - 2] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{y + frame_height - 4}">{escape(label)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
