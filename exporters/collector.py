"""BPF maps as Prometheus metrics, read at scrape time (no copying thread).

Each Target is one tracer: its spec's Metric declarations say which map
becomes which metric. A map is read once per scrape (one batched syscall
where the kernel allows), per-CPU values are summed, key fields become
labels through named decoders, and log2/linear bucket maps become
cumulative Prometheus histograms in base units. Nothing here clears a map,
so counters never go backwards. Imports no bcc: tests feed fake maps.
"""
from __future__ import annotations

import ctypes
import platform
import threading
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporters.ledger import EvictionLedger, raw_key
from exporters.exposition import RenderedCounter, RenderedGauge, label_text
from tracers import decoders
from tracers.output import text as fmt
from tracers.mapdata import decode_labels, number, raw_label
from tracers.runtime.maps import read_items, read_raw
from tracers.spec import Label, Metric, TracerSpec

NAMESPACE = "bpfwatch"
OTHER = "other"  # label value of the series folded by the --max-series guard
DEFAULT_MAX_SERIES = 10000
# Labels that name processes: cardinality follows the workload, so opt-in.
PER_PROCESS_LABELS = frozenset({"pid", "tid", "comm"})


def is_per_process(label: Label) -> bool:
    return label.name in PER_PROCESS_LABELS or label.decoder == "comm"


# A key field holding a cgroup v2 id (decoder "cgroup"): summed away unless
# --per-container, which turns it into these labels ("" on the host).
CONTAINER_LABELS = ("container", "pod", "namespace")
DEFAULT_CONTAINER_TTL = 300.0


def is_per_container(label: Label) -> bool:
    return label.decoder == "cgroup"


# Decoders whose answer for the same bytes can change while we run: never
# cached per map key (a disk number is reused after hotplug).
VOLATILE_DECODERS = frozenset({"disk_name", "cgroup"})


def metric_name(metric: Metric) -> str:
    return f"{NAMESPACE}_{metric.name}"


@dataclass
class Target:
    """One tracer as the collector sees it; table is None when not attached."""
    spec: TracerSpec
    hook: str = ""  # the hook alternative chosen
    table: Callable[[str], object] | None = None  # map name -> BCC table
    stats: Callable[[], dict] | None = None  # the bpfwatch_stats counters
    why: str = ""  # why it is not attached

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def from_session(cls, session) -> "Target":
        return cls(session.spec, session.alternative.name, session.bpf.__getitem__, session.stats)


def linear_buckets(counts: dict[int, int], width: int, multiplier: float,
                   top: int) -> list[tuple[float, int]]:
    """Linear slot i holds [i*width, (i+1)*width): its le is (i+1)*width."""
    out, running = [], 0
    for i in range(top + 1):
        running += counts.get(i, 0)
        out.append(((i + 1) * width * multiplier, running))
    out.append((float("inf"), sum(counts.values())))
    return out


class MapCollector:
    """A prometheus-client custom collector over live tracer sessions.

    registry: registered there when given (never the global one by default).
    max_series: per metric; label sets beyond it fold into one `other` series.
    per_process: keep pid/comm labels (else they are summed away).
    per_container: cgroup-id labels become container/pod/namespace; series of
    a container gone for container_ttl seconds are no longer served.
    """

    def __init__(self, targets: list[Target], registry=None, max_series: int = DEFAULT_MAX_SERIES,
                 per_process: bool = False, version: str = "", per_container: bool = False,
                 container_ttl: float = DEFAULT_CONTAINER_TTL, resolver=None, clock=time.monotonic):
        self.targets = list(targets)
        self.max_series = max_series
        self.per_process = per_process
        self.per_container = per_container
        self.container_ttl = container_ttl
        self.resolver = resolver
        self.clock = clock
        self._gone_since: dict[str, float] = {}
        self._retired: set[str] = set()  # containers no longer served
        self._alive: dict[str, bool] = {}  # per scrape
        self._ledger = EvictionLedger()  # counters stay monotonic over LRU evictions
        self._last_series: dict[tuple, set] = {}  # metric -> label sets at the last scrape
        self._folded_total: dict[tuple, int] = {}
        self.version = version
        self.closed = False
        self._lock = threading.Lock()  # one scrape at a time: the state below is shared
        self._batch_ok: dict[tuple, bool] = {}
        self._admitted: dict[tuple, set] = {}  # sticky: a series never moves to `other`
        self._top_slot: dict[tuple, int] = {}  # histogram buckets only ever grow
        self._decoder_errors: dict[tuple, int] = {}
        self._read_errors: dict[tuple, int] = {}
        self._folded: dict[tuple, int] = {}
        self._entries: dict[tuple, tuple[int, int]] = {}
        self._label_cache: dict[tuple, dict] = {}  # metric -> raw key -> label values (last scrape's keys)
        self._prefixes: dict[tuple, dict] = {}  # metric -> label values -> 'name{labels} '
        self._key_types: dict[tuple, type] = {}  # (tracer, map) -> its ctypes key, for raw keys
        if registry is not None:
            registry.register(self)

    def close(self) -> None:
        """Serve no more map data; waits for a scrape in flight (before maps go away)."""
        with self._lock:
            self.closed = True

    # -- one scrape --------------------------------------------------------------
    def collect(self):
        with self._lock:
            started = time.perf_counter()
            self._alive = {}
            families = []
            for target in self.targets:
                if target.table is None or self.closed:
                    continue
                for metric in target.spec.metrics:
                    try:
                        family = self._family(target, metric)
                    except Exception:  # one unreadable metric must not fail the whole scrape
                        key = (target.name, metric.map)
                        self._read_errors[key] = self._read_errors.get(key, 0) + 1
                        continue
                    if family is not None:
                        families.append(family)
            families += self._telemetry(time.perf_counter() - started)
        yield from families

    def _read(self, target: Target, map_name: str, raw_keys: bool = False) -> list | None:
        """(key, value) pairs; keys as bytes when raw_keys and the kernel
        reads the map in batches (no ctypes object per key)."""
        key = (target.name, map_name)
        try:
            table = target.table(map_name)
            raw = read_raw(table) if raw_keys and self._batch_ok.get(key, True) else None
            if raw is not None:
                items, batched = list(zip(*raw)), True
                self._key_types[key] = table.Key
            else:
                items, batched = read_items(table, self._batch_ok.get(key, True))
        except Exception:
            self._read_errors[key] = self._read_errors.get(key, 0) + 1
            return None
        self._batch_ok[key] = batched
        self._entries[key] = (len(items), int(getattr(table, "max_entries", 0) or 0))
        return items

    def _labels(self, target: Target, metric: Metric, key, value, labels: tuple[Label, ...]):
        """Decoded label values (tracers.mapdata: the CLI decodes alike), or
        None (counted per decoder) when a decoder refuses."""
        out = []
        for label in labels:
            if is_per_container(label):
                served = self._container_labels(number(raw_label(key, value, label)))
                if served is None:
                    return None  # a container gone long enough: no longer served
                out += served
                continue
            try:
                out += decode_labels(key, value, (label,))
            except (decoders.DecodeError, KeyError):
                k = (target.name, metric.name, label.decoder)
                self._decoder_errors[k] = self._decoder_errors.get(k, 0) + 1
                return None
        return tuple(out)

    def _kept_labels(self, metric: Metric) -> tuple[Label, ...]:
        return tuple(l for l in metric.labels if (self.per_process or not is_per_process(l))
                     and (self.per_container or not is_per_container(l)))

    @staticmethod
    def _names(labels: tuple[Label, ...]) -> list[str]:
        return [n for l in labels for n in (CONTAINER_LABELS if is_per_container(l) else (l.name,))]

    def _container_labels(self, cgroup_id: int) -> tuple[str, str, str] | None:
        """(container, pod, namespace) of a cgroup id, or None once it is retired."""
        if self.resolver is None:
            from tracers.containers import Resolver
            self.resolver = Resolver()
        ident = self.resolver.identity(cgroup_id)
        if ident is None:
            return ("", "", "")  # the host (or a cgroup gone before it was ever seen)
        short = ident.short
        if short in self._retired:
            return None
        alive = self._alive.get(short)
        if alive is None:
            alive = self._alive[short] = self.resolver.alive(ident)
        if alive:
            self._gone_since.pop(short, None)
        elif self.clock() - self._gone_since.setdefault(short, self.clock()) >= self.container_ttl:
            self._retired.add(short)  # and its slots under --max-series are free again
            for admitted in self._admitted.values():
                admitted -= {lv for lv in admitted if short in lv}
            return None
        return (short, ident.pod or "", ident.namespace or "")

    def _carry_evicted(self, target: Target, metric: Metric, map_name: str, entries: dict,
                       width: int, slot: bool = False) -> dict:
        """What entries evicted from an LRU map (gone, or back with less) had,
        by label set (exporters/ledger.py): added to the series, a counter
        never goes backwards. Kept under `other` once the label set can never
        be served; dropped for containers retired for good.
        slot: label values end with a histogram slot."""
        mkey = (target.name, metric.name)
        admitted = self._admitted.get(mkey, set())
        other = (OTHER,) * width

        def keep_under(lv):
            labels = lv[:-1] if slot else lv
            if labels in admitted or len(admitted) < self.max_series:
                return lv
            return other + lv[-1:] if slot else other
        carried = self._ledger.carry(mkey + (map_name,), (target.name, map_name), entries, keep_under)
        if self._retired:
            self._ledger.forget(mkey + (map_name,), lambda lv: bool(self._retired.intersection(lv)))
        return carried

    def _family(self, target: Target, metric: Metric):
        labels = self._kept_labels(metric)
        items = self._read(target, metric.map, raw_keys=metric.kind != "histogram" and self._cacheable(labels))
        if items is None:
            return None
        names = self._names(labels)
        if metric.kind == "histogram":
            return self._histogram(target, metric, items, labels, names)
        series: dict[tuple, int] = {}
        entries = {} if metric.kind == "counter" else None
        labels_of = self._labels_cached(target, metric, labels)
        scalar = not metric.value_field
        for key, value in items:
            v = value if scalar and type(value) is int else number(value, metric.value_field)
            if not v and metric.kind == "counter":
                continue  # arrays hold every slot; a zero counter is noise
            lv = labels_of(key, value)
            if lv is not None:
                series[lv] = series.get(lv, 0) + v
                if entries is not None:
                    entries[raw_key(key)] = (lv, v)
        if entries is not None:
            for lv, v in self._carry_evicted(target, metric, metric.map, entries, len(names)).items():
                series[lv] = series.get(lv, 0) + v
        series = self._guard(target, metric, series, len(names), lambda a, b: a + b, abs)
        cls = RenderedCounter if metric.kind == "counter" else RenderedGauge
        family = cls(metric_name(metric), metric.help, labels=names)
        family.set_series(names, series, self._prefixes_for(target, metric, family, names, series))
        return family

    def _labels_cached(self, target: Target, metric: Metric, labels: tuple[Label, ...]):
        """labels_of(key, value): _labels, remembered per raw key from one
        scrape to the next when they depend on the key's bytes alone (no
        value field, no volatile decoder). Refusals are not remembered:
        they count at every scrape, as before."""
        if not self._cacheable(labels):
            return lambda key, value: self._labels(target, metric, key, value, labels)
        mkey = (target.name, metric.name)
        before, now = self._label_cache.get(mkey, {}), {}
        self._label_cache[mkey] = now  # only keys in the map now: bounded by its size
        key_type = self._key_types.get((target.name, metric.map))

        def labels_of(key, value):
            raw = key if type(key) is int else bytes(key)  # bytes already when read raw
            lv = before.get(raw)
            if lv is None:
                if key_type is not None and type(key) is bytes:
                    key = key_type.from_buffer_copy(key)
                lv = self._labels(target, metric, key, value, labels)
                if lv is None:
                    return None
            now[raw] = lv
            return lv
        return labels_of

    @staticmethod
    def _cacheable(labels: tuple[Label, ...]) -> bool:
        """Label values that follow from a key's bytes alone."""
        return not any(l.field.startswith("value.") or l.decoder in VOLATILE_DECODERS for l in labels)

    def _prefixes_for(self, target, metric, family, names, series: dict) -> dict:
        """Label values -> sample line prefix `name{labels} `, kept for the
        label sets served at the last scrape."""
        mkey = (target.name, metric.name)
        prefixes = self._prefixes.setdefault(mkey, {})
        sample = family.name + ("_total" if metric.kind == "counter" else "")
        for lv in [lv for lv in series if lv not in prefixes]:
            prefixes[lv] = f"{sample}{label_text(names, lv)} "
        if len(prefixes) > len(series):  # label sets gone from the map
            prefixes = self._prefixes[mkey] = {lv: prefixes[lv] for lv in series}
        return prefixes

    def _histogram(self, target, metric, items, labels, names):
        groups: dict[tuple, dict[int, int]] = {}
        entries = {}
        for key, value in items:
            count = number(value, metric.value_field)
            if not count:
                continue
            slot = number(getattr(key, metric.bucket_field, key))  # or a scalar key
            lv = self._labels(target, metric, key, value, labels)
            if lv is not None:
                bucket = groups.setdefault(lv, {})
                bucket[slot] = bucket.get(slot, 0) + count
                entries[raw_key(key)] = (lv + (slot,), count)
        for lv_slot, count in self._carry_evicted(target, metric, metric.map, entries, len(names),
                                                  slot=True).items():
            bucket = groups.setdefault(lv_slot[:-1], {})
            bucket[lv_slot[-1]] = bucket.get(lv_slot[-1], 0) + count

        def merge(a, b):
            return {s: a.get(s, 0) + b.get(s, 0) for s in a.keys() | b.keys()}
        groups = self._guard(target, metric, groups, len(names), merge, lambda c: sum(c.values()))
        sums = self._sums(target, metric, labels)  # after the guard: it folds the same way
        mkey = (target.name, metric.name)
        top = max([self._top_slot.get(mkey, 0)] + [s for c in groups.values() for s in c])
        self._top_slot[mkey] = top
        family = HistogramMetricFamily(metric_name(metric), metric.help, labels=names)
        for lv, counts in groups.items():
            if metric.buckets == "exp2":
                bounds = fmt.cumulative_buckets(counts, metric.multiplier, max_slot=top)
            else:
                bounds = linear_buckets(counts, metric.bucket_width, metric.multiplier, top)
            buckets = [(floatToGoString(le), c) for le, c in bounds]
            total = sums.get(lv) if sums is not None else None
            family.add_metric(list(lv), buckets, total)
            if total is None:  # no sum map: _count still, from the +Inf bucket
                family.samples.append(Sample(family.name + "_count", dict(zip(names, lv)),
                                             bounds[-1][1], None))
        return family

    def _sums(self, target, metric, labels) -> dict | None:
        if not metric.sum_map:
            return None
        items = self._read(target, metric.sum_map)
        if items is None:
            return None
        sums: dict[tuple, float] = {}
        entries = {}
        for key, value in items:
            lv = self._labels(target, metric, key, value, labels)
            if lv is not None:
                raw = number(value)
                sums[lv] = sums.get(lv, 0) + raw * metric.multiplier
                entries[raw_key(key)] = (lv, raw)
        width = len(self._names(labels))
        for lv, raw in self._carry_evicted(target, metric, metric.sum_map, entries, width).items():
            sums[lv] = sums.get(lv, 0) + raw * metric.multiplier
        admitted = self._admitted.get((target.name, metric.name))
        if admitted is not None and any(lv not in admitted for lv in sums):
            other = (OTHER,) * width
            folded = {}
            for lv, s in sums.items():
                dest = lv if lv in admitted else other
                folded[dest] = folded.get(dest, 0) + s
            sums = folded
        return sums

    def _guard(self, target, metric, series: dict, width: int, merge, weight) -> dict:
        """At most max_series label sets (first come, biggest first), the rest in `other`.
        Counts the label sets folded now (a gauge) and each one's arrival in
        `other` (a counter: it was not in the map at the last scrape)."""
        mkey = (target.name, metric.name)
        before, self._last_series[mkey] = self._last_series.get(mkey, set()), set(series)
        admitted = self._admitted.setdefault(mkey, set())
        room = self.max_series - len(admitted)
        fresh = [lv for lv in series if lv not in admitted]
        if fresh and room > 0:
            if len(fresh) > room:
                fresh.sort(key=lambda lv: -weight(series[lv]))
            admitted.update(fresh[:room])
        if all(lv in admitted for lv in fresh):  # the usual case: nothing to fold
            self._folded[mkey] = 0
            return series
        out, rest, folded, arrived = {}, None, 0, 0
        other = (OTHER,) * width
        for lv, v in series.items():
            if lv in admitted:
                out[lv] = v
            else:
                if lv != other:  # `other` itself: what evicted label sets left
                    folded += 1
                    arrived += lv not in before
                rest = v if rest is None else merge(rest, v)
        if rest is not None:
            out[other] = merge(out[other], rest) if other in out else rest
        self._folded[mkey] = folded
        self._folded_total[mkey] = self._folded_total.get(mkey, 0) + arrived
        return out

    # -- self-telemetry ------------------------------------------------------------
    def _telemetry(self, seconds: float):
        g = GaugeMetricFamily
        attached = g(f"{NAMESPACE}_program_attached", "1 when the tracer's programs are attached.",
                     labels=["tracer", "hook"])
        dropped = CounterMetricFamily(f"{NAMESPACE}_events_dropped", "Events the kernel side dropped.",
                                      labels=["tracer"])
        failures = CounterMetricFamily(f"{NAMESPACE}_map_update_failures",
                                       "Map updates that failed in the kernel (map full).",
                                       labels=["tracer"])
        for t in self.targets:
            attached.add_metric([t.name, t.hook or "none"], 0 if t.table is None or self.closed else 1)
            if t.stats is None or self.closed:
                continue
            try:
                stats = t.stats()
            except Exception:
                continue
            dropped.add_metric([t.name], stats.get("events_dropped", 0))
            failures.add_metric([t.name], stats.get("map_update_failures", 0))
        yield attached
        yield dropped
        yield failures
        entries = g(f"{NAMESPACE}_map_entries", "Entries read from the map at this scrape.",
                    labels=["tracer", "map"])
        limit = g(f"{NAMESPACE}_map_max_entries", "The map's capacity.", labels=["tracer", "map"])
        for (tracer, name), (n, cap) in sorted(self._entries.items()):
            entries.add_metric([tracer, name], n)
            limit.add_metric([tracer, name], cap)
        yield entries
        yield limit
        yield self._counts(f"{NAMESPACE}_decoder_errors", "Map keys a decoder refused (skipped).",
                           ["tracer", "metric", "decoder"], self._decoder_errors, CounterMetricFamily)
        yield self._counts(f"{NAMESPACE}_map_read_errors", "Map reads (or their decoding) that failed: "
                           "that metric is left out of the scrape, the rest is served.",
                           ["tracer", "map"], self._read_errors, CounterMetricFamily)
        yield self._counts(f"{NAMESPACE}_series_folded", "Label sets folded into the `other` "
                           "series by the max-series guard at this scrape.",
                           ["tracer", "metric"], self._folded, GaugeMetricFamily)
        yield self._counts(f"{NAMESPACE}_series_folded_arrivals", "Label sets that arrived beyond "
                           "--max-series and were folded into `other` (counted at each arrival).",
                           ["tracer", "metric"], self._folded_total, CounterMetricFamily)
        yield self._counts(f"{NAMESPACE}_map_evictions", "Map entries found gone (an LRU map "
                           "evicted them) or back with less since the last scrape; what they had "
                           "stays in the served counters.",
                           ["tracer", "map"], self._ledger.evictions, CounterMetricFamily)
        yield g(f"{NAMESPACE}_scrape_duration_seconds", "Time spent reading maps for this scrape.",
                value=seconds)
        info = g(f"{NAMESPACE}_build_info", "bpfwatch version, Python and kernel release.",
                 labels=["version", "python", "kernel"])
        info.add_metric([self.version, platform.python_version(), platform.release()], 1)
        yield info

    @staticmethod
    def _counts(name, doc, labels, values: dict, cls):
        family = cls(name, doc, labels=labels)
        for key, v in sorted(values.items()):
            family.add_metric(list(key), v)
        return family
