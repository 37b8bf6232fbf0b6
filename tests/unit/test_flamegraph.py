"""Folded stacks, the flame graph SVG, and the stack/histogram output of the
scheduler and profiling tracers (no root, no bcc)."""
import ctypes
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from tracers.output import flamegraph
from tracers.tools import _hist, _stacks, offcputime, runqlat

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("frames, value, line", [
    (["bash", "main", "read"], 7, "bash;main;read 7"),
    (["a;b", "c"], 1, "a:b;c 1"),                 # ";" would split a frame
    (["x\ny", "\x01z"], 2, "x?y;?z 2"),           # no control characters
    (["", "f"], 3, "[unknown];f 3"),
    (["operator new(unsigned long)"], 4, "operator new(unsigned long) 4"),
])
def test_folded_line(frames, value, line):
    assert flamegraph.folded_line(frames, value) == line


def test_folded_round_trip_keeps_spaces_in_frames():
    text = "comm;operator new(unsigned long) 5\n\ncomm;main 3\n"
    assert flamegraph.parse_folded(text) == [(("comm", "operator new(unsigned long)"), 5),
                                             (("comm", "main"), 3)]


@pytest.mark.parametrize("bad", ["no-count", "a;b x", "a;b -1", " 5"])
def test_parse_folded_rejects_bad_lines(bad):
    with pytest.raises(ValueError, match="line 1"):
        flamegraph.parse_folded(bad)


def test_tree_sums_shared_prefixes():
    root = flamegraph.build_tree([(("a", "b"), 3), (("a", "c"), 1), (("d",), 4), (("e",), 0)])
    assert root.value == 8
    assert root.children["a"].value == 4 and root.children["a"].children["b"].value == 3
    assert "e" not in root.children


def boxes(svg_text):
    root = ET.fromstring(svg_text)  # must be well-formed XML
    out = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title").text
        rect = g.find(f"{SVG}rect")
        out[title.split(" (")[0]] = (title, float(rect.get("x")), float(rect.get("width")),
                                     float(rect.get("y")), rect.get("fill"))
    return root, out


def test_svg_widths_are_proportional_and_titles_count():
    svg = flamegraph.render_svg([(("comm", "main", "hot"), 75), (("comm", "main", "cold"), 25)],
                                width=1020, title="T <&>")
    root, b = boxes(svg)
    assert root.get("width") == "1020"
    usable = 1020 - 20
    assert b["all"][2] == pytest.approx(usable)
    assert b["hot"][2] == pytest.approx(0.75 * usable)
    assert b["cold"][2] == pytest.approx(0.25 * usable)
    assert b["hot"][0] == "hot (75 samples, 75.00%)"
    # siblings sorted by name, side by side; children sit above parents
    assert b["cold"][1] == pytest.approx(b["main"][1])
    assert b["hot"][1] == pytest.approx(b["cold"][1] + b["cold"][2])
    assert b["hot"][3] < b["main"][3] < b["comm"][3] < b["all"][3]
    assert "T &lt;&amp;&gt;" in svg


def test_svg_escapes_names_and_colours_by_name():
    svg = flamegraph.render_svg([(('<script>"x"&', "f"), 2), (("g", "f"), 2)], unit="us")
    _, b = boxes(svg)
    assert '<script>"x"&' in b and b['<script>"x"&'][0].endswith("(2 us, 50.00%)")
    assert "<script>" not in svg
    assert flamegraph.colour("f") == flamegraph.colour("f") != flamegraph.colour("g")


def test_svg_of_nothing_is_still_valid():
    _, b = boxes(flamegraph.render_svg([]))
    assert list(b) == ["all"]


def test_tiny_frames_are_dropped_but_count_in_the_parent():
    svg = flamegraph.render_svg([(("a",), 100000), (("b",), 1)], width=1000)
    _, b = boxes(svg)
    assert "b" not in b and b["all"][0].startswith("all (100,001 samples")


def test_stack_frames_order_comm_user_kernel():
    row = {"comm": "app", "user_stack": ["main", "f"], "kernel_stack": ["entry", "schedule"]}
    assert _stacks.frames(row) == ["app", "main", "f", "entry", "schedule"]


def test_latency_histogram_per_pid_delta_render_and_json():
    class Key(ctypes.Structure):  # struct pid_key in bpf_c/runqlat.bpf.c
        _fields_ = [("pid", ctypes.c_uint32), ("slot", ctypes.c_uint32)]
    hist = _hist.latency_histogram(SimpleNamespace(milliseconds=False, pids=True, tids=False, per_container=False), "(none)")
    assert hist.map == "dist_pid"
    before = hist.read([(Key(7, 1), 2), (Key(7, 3), 5)])
    now = hist.read([(Key(7, 1), 2), (Key(7, 3), 9), (Key(7, 4), 1)])
    d = hist.rows(now, before)
    assert d == {(7,): {3: 4, 4: 1}}
    text = hist.text(d)[0]
    assert text.splitlines()[0] == "pid = 7"
    assert "         4 -> 7          : 4        |****************************************|" in text
    assert "         8 -> 15         : 1        |**********                              |" in text
    assert hist.records(d) == [{
        "pid": 7, "unit": "usecs", "total": 5,
        "buckets": [{"low": 4, "high": 7, "count": 4}, {"low": 8, "high": 15, "count": 1}]}]
    assert hist.records({}) == [] and hist.text({}) == ["(none)"]


def test_defines_are_integers_from_options():
    args = SimpleNamespace(milliseconds=True, pids=True, tids=False, per_container=False)
    assert runqlat.TRACER().defines(args) == {"UNIT_NS": 1_000_000, "PER_PROCESS": 1}
    args = SimpleNamespace(svg=None, user_stacks_only=False, kernel_stacks_only=True,
                           user_threads_only=False, kernel_threads_only=False,
                           min_block_time=5, max_block_time=None)
    assert offcputime.TRACER().defines(args) == {"KERNEL_STACKS_ONLY": 1, "MIN_BLOCK_US": 5}
