"""/metrics bodies, text or OpenMetrics as prometheus-client negotiates them,
with the map families' sample lines written from label strings the
collector keeps per map key between scrapes.

prometheus-client formats every sample anew (sorting and escaping each
label): over half a 100k-series scrape. Families it did not build here
(self-telemetry, process_*, or any family after a name[] filter) still go
through its own encoders, and so do the HELP/TYPE lines of ours: the body
is the one prometheus-client would write, byte for byte.
"""
from __future__ import annotations

import gzip
import inspect
from functools import partial

from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


def label_text(names, values) -> str:
    """`{a="x",b="y"}` as prometheus-client writes it (sorted, escaped)."""
    if not names:
        return ""
    pairs = sorted(zip(names, values))
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


def _escape(value: str) -> str:
    """Label value escaping of the text format and OpenMetrics alike (our own:
    prometheus-client's helper is private and changed between 0.16 and 0.2x)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _value_text(v) -> str:
    """floatToGoString, without its float round trip for the usual counts."""
    if type(v) is int and -10**15 < v < 10**6:  # no exponent either way: "123.0"
        return f"{v}.0"
    return floatToGoString(v)


class _Rendered:
    """A counter or gauge family given as {label values: value} and
    {label values: sample line prefix}; `samples` are only built when asked
    for (tests, name[] filters), the body is written from the prefixes."""

    _series = None

    def set_series(self, names: list[str], series: dict, prefixes: dict) -> None:
        self._names, self._series, self._prefixes = names, series, prefixes

    @property
    def samples(self):
        series, self._series = self._series, None
        if series:
            name = self.name + ("_total" if self.type == "counter" else "")
            self._samples.extend(Sample(name, dict(zip(self._names, lv)), v) for lv, v in series.items())
        return self._samples

    @samples.setter
    def samples(self, value) -> None:
        self._samples = value

    def sample_lines(self) -> str:
        prefixes, text = self._prefixes, _value_text
        return "".join([f"{prefixes[lv]}{text(v)}\n" for lv, v in self._series.items()])


class RenderedCounter(_Rendered, CounterMetricFamily):
    pass


class RenderedGauge(_Rendered, GaugeMetricFamily):
    pass


class _One:
    """One family, as a registry for prometheus-client's encoders."""

    def __init__(self, family):
        self.family = family

    def collect(self):
        yield self.family


def render(registry, encoder) -> bytes:
    """What `encoder` (from choose_encoder) would write for registry.collect()."""
    openmetrics = getattr(encoder, "func", encoder) is om.generate_latest
    eof = b"# EOF\n"
    out = []
    for family in registry.collect():
        if isinstance(family, _Rendered) and family._series is not None:
            head = Metric(family.name, family.documentation, family.type, family.unit)
            body, lines = encoder(_One(head)), family.sample_lines().encode()
        else:
            body, lines = encoder(_One(family)), b""
        if openmetrics and body.endswith(eof):
            body = body[:-len(eof)]
        out += [body, lines]
    if openmetrics:
        out.append(eof)
    return b"".join(out)


def bake(registry, accept: str | None, accept_encoding: str | None, params: dict, shared=None):
    """(headers, body) of /metrics, as prometheus_client.exposition._bake_output.
    shared: a SharedScrapes, so that concurrent scrapes share collections."""
    encoder, content_type = exposition.choose_encoder(accept)
    names = tuple(params.get("name[]", ()))
    if names:
        registry = registry.restricted_registry(names)
    if shared is None:
        body = render(registry, encoder)
    else:
        body = shared.get((content_type, names), lambda: render(registry, encoder))
    headers = [("Content-Type", content_type)]
    if exposition.gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return headers, body


def generate_latest(registry, openmetrics: bool = False) -> bytes:
    """The body without HTTP: text, or OpenMetrics 1.0.0."""
    encoder = exposition.generate_latest
    if openmetrics:  # Debian 12's 0.16 knows one OpenMetrics version and no escaping options
        params = inspect.signature(om.generate_latest).parameters
        encoder = partial(om.generate_latest, escaping=om.UNDERSCORES, version="1.0.0") \
            if "escaping" in params else om.generate_latest
    return render(registry, encoder)
