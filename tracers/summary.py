"""What a summary tracer declares instead of writing a loop: tables and
histograms read from its maps. The runner's summary loop reads them (batched),
decodes keys with the exporter's decoders (tracers.mapdata), takes deltas
since the last interval and prints one text block or one JSON envelope.

Maps are never cleared (the exporter serves them as counters), so every
interval is "now minus before". A row whose count went down was evicted
from an LRU map and inserted again: its current count is the delta.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from tracers import decoders
from tracers.mapdata import decode_labels, number
from tracers.output import text as fmt
from tracers.spec import Label

OTHER = "other"  # what evictions took, as the exporter names folded series


@dataclass(frozen=True)
class Column:
    """A label column (decoded from the key by `label`) or a counted column
    (a value field summed over CPUs: "" for a scalar value)."""
    name: str  # JSON key
    header: str  # text header; "" for a column only JSON carries
    width: int  # text width; labels align left, counts right
    label: Label | None = None
    field: str = ""
    text_scale: float = 1.0  # counted columns in text only, e.g. ns -> us
    text_format: str = "d"


def label(name: str, header: str, width: int, field: str = "", decoder: str = "int") -> Column:
    return Column(name, header, width, label=Label(name, field, decoder))


def count(name: str, header: str, width: int, field: str = "", text_scale: float = 1.0,
          text_format: str = "d") -> Column:
    return Column(name, header, width, field=field, text_scale=text_scale, text_format=text_format)


@dataclass(frozen=True)
class Table:
    """Rows of one map. `sort_by` ranks rows (largest first; default: the first
    counted column); `top` caps the rows shown; `decoders` holds per-run
    decoders by name (e.g. a rule index -> the rule as the user wrote it)."""
    name: str  # JSON key of the row list
    map: str
    columns: tuple[Column, ...]
    sort_by: str = ""
    top: int | None = None
    title: str = ""  # text: a line of its own before the header
    hide_empty: bool = False  # text: no header when there are no rows
    decoders: dict[str, Callable] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.label is not None)

    @property
    def counts(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.label is None)

    def collect(self, read_map) -> dict:
        return self.read(read_map(self.map))

    def read(self, items) -> dict[tuple, tuple]:
        """Cumulative counts by decoded label values."""
        labels = tuple(c.label for c in self.labels)
        out: dict[tuple, tuple] = {}
        for key, value in items:
            counts = tuple(number(value, c.field) for c in self.counts)
            if not any(counts):
                continue  # arrays hold every slot
            try:
                lv = decode_labels(key, value, labels, self.decoders)
            except decoders.DecodeError:
                continue  # a key no decoder can name cannot be shown (the exporter counts these)
            old = out.get(lv)
            out[lv] = counts if old is None else tuple(a + b for a, b in zip(old, counts))
        return out

    def rows(self, now: dict, before: dict) -> list[dict]:
        rows = []
        for lv, counts in now.items():
            old = before.get(lv)
            if old is not None and counts[0] < old[0]:
                old = None  # evicted and inserted again: all of it is new
            delta = counts if old is None else tuple(a - b for a, b in zip(counts, old))
            if any(d > 0 for d in delta):
                row = dict(zip((c.name for c in self.labels), lv))
                row.update(zip((c.name for c in self.counts), delta))
                rows.append(row)
        by = self.sort_by or self.counts[0].name
        rows.sort(key=lambda r: (-r[by], [str(r[c.name]) for c in self.labels]))
        return rows[:self.top] if self.top else rows

    def json(self, rows: list[dict]) -> dict:
        return {self.name: rows}

    def text(self, rows: list[dict]) -> list[str]:
        if self.hide_empty and not rows:
            return []
        shown = [c for c in self.columns if c.header]
        lines = [self.title] if self.title else []
        lines.append(" ".join(_cell(c, c.header, header=True) for c in shown))
        for r in rows:
            lines.append(" ".join(_cell(c, r[c.name]) for c in shown))
        return lines


@dataclass(frozen=True)
class TableWithOther(Table):
    """A table over an LRU map whose exact totals per `group` (a label column)
    live in a second, lossless map (`exact`, with the same counted columns).
    What evictions took from the rows comes back as one `other` row per
    group, so every interval adds up to the exact total."""
    exact: Table | None = None
    group: str = ""

    def collect(self, read_map) -> tuple[dict, dict]:
        return self.read(read_map(self.map)), self.exact.read(read_map(self.exact.map))

    def rows(self, now: tuple, before: tuple) -> list[dict]:
        rows = Table.rows(self, now[0], before[0] if before else {})
        shown = Table.rows(replace(self, top=None), now[0], before[0] if before else {})
        exact = self.exact.rows(now[1], before[1] if before else {})
        names = [c.name for c in self.counts]
        for total in exact:
            mine = [r for r in shown if r[self.group] == total[self.group]]
            lost = [total[n] - sum(r[n] for r in mine) for n in names]
            if lost[0] > 0:
                row = {c.name: (total[self.group] if c.name == self.group else OTHER) for c in self.labels}
                row.update(zip(names, (max(0, n) for n in lost)))
                rows.append(row)
        return rows


def _cell(column: Column, value, header: bool = False) -> str:
    if value is None:  # a label with no value (the host's container)
        value = "-"
    if column.label is not None:
        return f"{value:<{column.width}}"
    if header:
        return f"{value:>{column.width}}"
    return f"{value * column.text_scale if column.text_scale != 1 else value:>{column.width}{column.text_format}}"


@dataclass(frozen=True)
class Histogram:
    """Log2 histograms of one map, one per value of the `by` label columns (or
    just one). The key is the slot, or a struct with `slot_field` and the
    `by` fields. `flat`: JSON carries the one histogram's fields at the top."""
    map: str
    unit: str
    by: tuple[Column, ...] = ()
    slot_field: str = ""
    empty: str = "(nothing seen)"
    flat: bool = False
    decoders: dict[str, Callable] = field(default_factory=dict)  # per-run, as Table's

    def collect(self, read_map) -> dict:
        return self.read(read_map(self.map))

    def read(self, items) -> dict:
        labels = tuple(c.label for c in self.by)
        out: dict = {}
        for key, value in items:
            n = number(value)
            if not n:
                continue
            slot = number(getattr(key, self.slot_field) if self.slot_field else key)
            try:
                ident = decode_labels(key, value, labels, self.decoders)
            except decoders.DecodeError:
                continue
            hist = out.setdefault(ident, {})
            hist[slot] = hist.get(slot, 0) + n
        return out

    def rows(self, now: dict, before: dict) -> dict:
        out = {}
        for ident, slots in now.items():
            old = before.get(ident, {})
            delta = {s: c - old.get(s, 0) for s, c in slots.items() if c - old.get(s, 0) > 0}
            if delta:
                out[ident] = delta
        return out

    def records(self, hists: dict) -> list[dict]:
        """JSON form: slots as [{low, high, count}], total per histogram."""
        out = []
        for ident in sorted(hists, key=_ident_order):
            buckets = [{"low": fmt.log2_bucket_bounds(s)[0], "high": fmt.log2_bucket_bounds(s)[1],
                        "count": c} for s, c in sorted(hists[ident].items())]
            out.append({**dict(zip((c.name for c in self.by), ident)), "unit": self.unit,
                        "total": sum(b["count"] for b in buckets), "buckets": buckets})
        return out

    def json(self, hists: dict) -> dict:
        if self.flat:
            records = self.records(hists)
            return records[0] if records else {"unit": self.unit, "total": 0, "buckets": []}
        return {"histograms": self.records(hists)}

    def text(self, hists: dict) -> list[str]:
        parts = []
        for ident in sorted(hists, key=_ident_order):
            head = ", ".join(f"{c.header} = {'-' if v is None else v}" for c, v in zip(self.by, ident))
            text = fmt.log2_histogram(hists[ident], self.unit)
            parts.append(f"{head}\n{text}" if head else text)
        return ["\n\n".join(parts) or self.empty]


def _ident_order(ident: tuple):
    return tuple((not isinstance(v, int), v if isinstance(v, int) else 0, str(v)) for v in ident)
