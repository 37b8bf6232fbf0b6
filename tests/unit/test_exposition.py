"""The exporter's /metrics body: byte for byte what prometheus-client writes
(text and OpenMetrics), from label strings kept per map key between scrapes."""
import ctypes

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from exporters import exposition
from exporters.collector import MapCollector, Target
from tracers import decoders
from tracers.spec import Label, Metric, TracerSpec


class Key(ctypes.Structure):
    _fields_ = [("port", ctypes.c_uint32), ("comm", ctypes.c_char * 16)]


class FakeMap:
    def __init__(self, items):
        self.items_now, self.max_entries = list(items), 4096

    def items_lookup_batch(self):
        yield from self.items_now


PORTS = Metric("conns_total", "Connections \\ by port\nand comm.", map="conns",
               labels=(Label("port", "port", "port_host"), Label("name", "comm", "text")))
LEVEL = Metric("level", "A gauge.", map="level", kind="gauge", labels=(Label("port", "", "port_host"),))


class Snapshot:
    def __init__(self, registry):
        self.families = list(registry.collect())

    def collect(self):
        return iter(self.families)


def registry_over(maps):
    spec = TracerSpec(name="fake", summary="fake", c_file="fake.bpf.c", alternatives=(),
                      metrics=(PORTS, LEVEL))
    registry = CollectorRegistry(auto_describe=True)  # as the daemon's: name[] filters work
    collector = MapCollector([Target(spec, "tracepoint", maps.__getitem__, lambda: {})],
                             registry=registry)
    return registry, collector


def entries(n, bump=0):
    # quotes, backslashes, newlines and non-ASCII in label values: all escaped alike
    names = [b'a"b', b"c\\d", b"e\nf", "é".encode(), b"plain"]
    return [(Key(port=i, comm=names[i % len(names)]), i + 1 + bump) for i in range(n)]


def test_body_is_prometheus_clients_in_both_formats_scrape_after_scrape():
    maps = {"conns": FakeMap(entries(50)), "level": FakeMap([(7, -3), (8, 2.5)])}
    registry, _ = registry_over(maps)
    for bump in (0, 5, 5):  # the second and third scrapes come from the cache
        maps["conns"].items_now = entries(50 if bump == 0 else 60, bump)
        for ours, theirs in ((lambda r: exposition.generate_latest(r), generate_latest),
                             (lambda r: exposition.generate_latest(r, openmetrics=True), om_generate_latest)):
            scrape = Snapshot(registry)  # one scrape for both: telemetry holds its duration
            body = ours(scrape)
            # prometheus-client renders the same families from their samples
            assert body == theirs(scrape)
        ours_text, ours_om = exposition.generate_latest(registry), body
        assert b'bpfwatch_conns_total{name="a\\"b",port="5"} ' in ours_text
        assert ours_om.endswith(b"# EOF\n") and ours_om.count(b"# EOF") == 1
    assert b"bpfwatch_conns_total{" in ours_text and b"# TYPE bpfwatch_conns counter" in ours_om


def test_label_values_cached_per_key_until_the_key_is_gone():
    maps = {"conns": FakeMap(entries(3)), "level": FakeMap([])}
    registry, collector = registry_over(maps)
    calls = []
    real = decoders.DECODERS["port_host"]
    decoders.DECODERS["port_host"] = lambda v: calls.append(v) or real(v)
    try:
        exposition.generate_latest(registry)
        first = len(calls)
        exposition.generate_latest(registry)
        assert len(calls) == first  # nothing decoded again
        maps["conns"].items_now = entries(4)
        exposition.generate_latest(registry)
        assert len(calls) == first + 1  # only the new key
        assert len(collector._label_cache[("fake", "conns_total")]) == 4
        maps["conns"].items_now = entries(2)
        exposition.generate_latest(registry)
        assert len(collector._label_cache[("fake", "conns_total")]) == 2  # gone keys forgotten
    finally:
        decoders.DECODERS["port_host"] = real


def test_name_filter_and_gzip_as_prometheus_client():
    maps = {"conns": FakeMap(entries(5)), "level": FakeMap([(7, 1)])}
    registry, _ = registry_over(maps)
    headers, body = exposition.bake(registry, "application/openmetrics-text; version=1.0.0", None,
                                    {"name[]": ["bpfwatch_level"]})
    assert dict(headers)["Content-Type"].startswith("application/openmetrics-text")
    assert b"bpfwatch_level" in body and b"bpfwatch_conns" not in body
    headers, body = exposition.bake(registry, None, "gzip", {})
    assert ("Content-Encoding", "gzip") in headers
    import gzip
    text = gzip.decompress(body)
    assert text.startswith(b"# HELP bpfwatch_conns_total ") and b"# EOF" not in text
