"""`/metrics` exposition of the SDK's metrics, merged across worker processes, rendered by prometheus_client
in the Prometheus text format or, when the scraper asks for it, OpenMetrics 1.0 (`_created`, exemplars
carrying the trace id, `# EOF`).

Each worker collects its own metrics (cumulative) and, every few seconds, writes a snapshot to
`<var>/metrics/<group>/<pid>.json`; `/metrics` answers with this worker's live figures plus the other workers'
latest snapshots, so `market serve --workers N` reports the whole server whichever worker answers.
Counters and histograms add up across workers (their `_created` is the earliest worker's, their exemplars the
latest); gauges take the latest value, except the process_* figures, which add up (memory, open files, CPU
seconds) or take the earliest start time.

The group is one `market serve` (host name and the serve process's id, handed to its workers in the
environment): replicas that share a var folder each report their own work, never the sum of all of them —
Prometheus scrapes every replica and adds them up itself.

Also exposed: `target_info` (the resource: service.name, service.instance.id, ...), and a zero series for
every known label set (payment outcomes, search outcomes, webhook outcomes, and status 500/503 of every route
the app serves, from the start, and of every route seen), so that the first error moves `increase()` instead of
appearing at 1.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum
from opentelemetry.sdk.resources import Resource
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from market.private_files import private_dir, write_private_text

from . import names
from .metrics import DURATION_BUCKETS_S

# prometheus family name -> {"type", "help", "samples": {key: value}, and optionally "created": {key: unix s},
# "exemplars": {key: [trace_id, span_id, value, unix s]}, "merge": "sum" | "min" | "max" (gauges)}
Snapshot = dict[str, dict[str, Any]]

PROMETHEUS_TEXT = "text/plain; version=0.0.4"
OPENMETRICS_TEXT = "application/openmetrics-text; version=1.0.0; charset=utf-8"

GROUP_VARIABLE = "_MARKET_SERVE_GROUP"
"""Internal, not a setting: `market serve` names its process group here for the workers it starts."""


def new_process_group() -> str:
    """A name for the `market serve` starting now: unique per host and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_group() -> str:
    """The group whose snapshots this process merges: its `market serve`'s, or this process alone."""
    return os.environ.get(GROUP_VARIABLE) or new_process_group()


def prometheus_name(otel_name: str, unit: str, kind: str) -> str:
    base = otel_name.replace(".", "_").replace("-", "_")
    suffix = {"s": "_seconds", "ms": "_milliseconds", "By": "_bytes", "{cent}": "_cents"}.get(unit, "")
    if suffix and not base.endswith(suffix):
        base += suffix
    if kind == "counter" and not base.endswith("_total"):
        base += "_total"
    return base


def _labels(attributes: Any) -> list[list[str]]:
    return sorted([k.replace(".", "_"), str(v)] for k, v in (attributes or {}).items())


def _key(suffix: str, labels: list[list[str]]) -> str:
    return json.dumps([suffix, labels], separators=(",", ":"))


def snapshot(data: MetricsData | None) -> Snapshot:
    """A JSON-serialisable, mergeable copy of the collected metrics."""
    families: Snapshot = {}
    if data is None:
        return families
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _add_metric(families, metric)
    return families


def _add_metric(families: Snapshot, metric: Any) -> None:
    data = metric.data
    if isinstance(data, Sum):
        kind = "counter" if data.is_monotonic else "gauge"
    elif isinstance(data, Histogram):
        kind = "histogram"
    elif isinstance(data, Gauge):
        kind = "gauge"
    else:
        return
    name = prometheus_name(metric.name, metric.unit or "", kind)
    family = families.setdefault(
        name, {"type": kind, "help": metric.description or metric.name, "samples": {}}
    )
    samples = family["samples"]
    cumulative_kind = kind in ("counter", "histogram")
    created = family.setdefault("created", {}) if cumulative_kind else None
    exemplars = family.setdefault("exemplars", {}) if cumulative_kind else None
    for point in data.data_points:
        labels = _labels(point.attributes)
        if created is not None and getattr(point, "start_time_unix_nano", None):
            created[_key("", labels)] = point.start_time_unix_nano / 1e9
        if kind == "histogram":
            cumulative = 0
            bounds = [*point.explicit_bounds, math.inf]
            for bound, count in zip(bounds, point.bucket_counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == math.inf else _number(bound)
                samples[_key("_bucket", sorted([*labels, ["le", le]]))] = cumulative
            samples[_key("_sum", labels)] = point.sum
            samples[_key("_count", labels)] = point.count
            for exemplar in _exemplars(point):
                bound = next(b for b in bounds if exemplar[2] <= b)
                le = "+Inf" if bound == math.inf else _number(bound)
                exemplars[_key("_bucket", sorted([*labels, ["le", le]]))] = exemplar  # type: ignore[index]
        else:
            samples[_key("", labels)] = point.value
            if exemplars is not None:
                for exemplar in _exemplars(point):
                    exemplars[_key("", labels)] = exemplar


def _exemplars(point: Any) -> list[list[Any]]:
    """[trace_id, span_id, value, unix seconds] of each exemplar the SDK kept with a trace (sampled spans)."""
    kept = []
    for exemplar in getattr(point, "exemplars", None) or ():
        if exemplar.trace_id:
            kept.append(
                [
                    format(exemplar.trace_id, "032x"),
                    format(exemplar.span_id or 0, "016x"),
                    exemplar.value,
                    exemplar.time_unix_nano / 1e9,
                ]
            )
    kept.sort(key=lambda e: e[3])
    return kept


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    merged: Snapshot = {}
    for snap in snapshots:
        for name, family in snap.items():
            target = merged.setdefault(name, {"type": family["type"], "help": family["help"], "samples": {}})
            how = family.get("merge")
            if how:
                target["merge"] = how
            for key, value in family["samples"].items():
                current = target["samples"].get(key)
                if (family["type"] == "gauge" and how is None) or current is None:
                    target["samples"][key] = value
                elif family["type"] != "gauge" or how == "sum":
                    target["samples"][key] = current + value
                else:
                    target["samples"][key] = min(current, value) if how == "min" else max(current, value)
            for key, when in (family.get("created") or {}).items():
                created = target.setdefault("created", {})
                created[key] = min(created.get(key, when), when)
            for key, exemplar in (family.get("exemplars") or {}).items():
                exemplars = target.setdefault("exemplars", {})
                if key not in exemplars or exemplars[key][3] <= exemplar[3]:
                    exemplars[key] = exemplar
    return merged


# --- Known label sets, zero until they happen --------------------------------------------------------------
# Counters start every known series at zero themselves (metrics.zero_known_series). The request duration gets,
# at render time, a zero series for each 5xx status the app can answer beside every (method, route) the app
# serves (MetricsExposition.expect_routes, from the Litestar app at start) and every (method, route, scheme)
# seen: a route's first-ever 5xx then moves increase() instead of appearing at 1. The app answers only these
# two 5xx statuses (adapters/http/problems.py): 500 for what it did not expect (an HTTPException >= 500 too),
# 503 when the database, the payment provider or the password-hashing budget cannot serve now, and for
# /health/ready while the database is unreachable.
ZERO_STATUSES = ("500", "503")
ZERO_SCHEME = "http"  # uvicorn runs without TLS or proxy headers (cli.py): every request's url.scheme is http
_HTTP_DURATION = "http_server_request_duration_seconds"
_METHOD = names.HTTP_REQUEST_METHOD.replace(".", "_")
_ROUTE = names.HTTP_ROUTE.replace(".", "_")
_SCHEME = names.URL_SCHEME.replace(".", "_")
_STATUS = names.HTTP_RESPONSE_STATUS_CODE.replace(".", "_")
_ERROR_TYPE = names.ERROR_TYPE.replace(".", "_")
Route = tuple[str, str]
"""(route template, method), e.g. ("/api/v1/items/{item_id}", "GET")."""


def missing_zero_series(
    snap: Snapshot, routes: Iterable[Route] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The `_count` keys of the zero 5xx series to add (one for each of ZERO_STATUSES beside every (method,
    route, scheme) seen and every expected (method, route) with scheme `http`, where the status has no series
    yet), and the `le` values of their buckets. Creates the request-duration family (empty) when routes are
    expected and nothing was recorded yet."""
    family = snap.get(_HTTP_DURATION)
    routes = tuple(routes)
    if family is None:
        if not routes:
            return (), ()
        name, _, description = names.HTTP_SERVER_REQUEST_DURATION
        family = snap[_HTTP_DURATION] = {"type": "histogram", "help": description or name, "samples": {}}
    seen: set[tuple[tuple[str, str], ...]] = set()
    bounds: set[str] = set()
    samples = family["samples"]
    for key in samples:
        suffix, labels = json.loads(key)
        if suffix == "_bucket":
            bounds.update(v for k, v in labels if k == "le")
        elif suffix == "_count":
            seen.add(tuple((k, v) for k, v in labels if k not in (_STATUS, _ERROR_TYPE)))
    for route, method in routes:
        seen.add(tuple(sorted({_METHOD: method, _ROUTE: route, _SCHEME: ZERO_SCHEME}.items())))
    missing = tuple(key for key in _zero_count_keys(frozenset(seen)) if key not in samples)
    return missing, tuple(sorted(bounds)) or _default_bounds()


def with_known_series(snap: Snapshot, routes: Iterable[Route] = ()) -> Snapshot:
    """The snapshot plus the zero series of missing_zero_series() as samples (render() adds them as text)."""
    missing, bounds = missing_zero_series(snap, routes)
    if missing:
        snap[_HTTP_DURATION]["samples"].update(_zero_samples(missing, bounds))
    return snap


def _default_bounds() -> tuple[str, ...]:
    """The `le` values of the request-duration view, as snapshot() spells them (before any request is seen)."""
    return tuple(sorted([*(_number(float(b)) for b in DURATION_BUCKETS_S), "+Inf"]))


@functools.lru_cache(maxsize=4)
def _zero_count_keys(series: frozenset[tuple[tuple[str, str], ...]]) -> tuple[str, ...]:
    """The `_count` key of each series with each zero status (built once per set of series, not per scrape)."""
    return tuple(
        _key("_count", sorted([[k, v] for k, v in (*labels, (_STATUS, status), (_ERROR_TYPE, status))]))
        for labels in sorted(series)
        for status in ZERO_STATUSES
    )


def _zero_samples(count_keys: tuple[str, ...], bounds: tuple[str, ...]) -> dict[str, int]:
    samples = {}
    for count_key in count_keys:
        labels = json.loads(count_key)[1]
        samples[count_key] = 0
        samples[_key("_sum", labels)] = 0
        for le in bounds:
            samples[_key("_bucket", sorted([*labels, ["le", le]]))] = 0
    return samples


def _zero_text(count_keys: tuple[str, ...], bounds: tuple[str, ...], openmetrics: bool) -> str:
    """The zero series' sample lines (about 2 300 for the app's 69 (route, method) pairs: the bulk of /metrics),
    each series rendered by prometheus_client once per format, not at every scrape."""
    return "".join(_zero_block(key, bounds, openmetrics) for key in count_keys)


@functools.lru_cache(maxsize=4096)
def _zero_block(count_key: str, bounds: tuple[str, ...], openmetrics: bool) -> str:
    family = {"type": "histogram", "help": "", "samples": _zero_samples((count_key,), bounds)}
    collector = _Families({_HTTP_DURATION: family}, None, openmetrics)
    generate = generate_openmetrics if openmetrics else generate_text
    text = generate(collector).decode()  # type: ignore[arg-type]
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


# --- Process metrics (per worker, added up by merge) -------------------------------------------------------
_PROCESS_MERGE = {"process_start_time_seconds": "min", "process_max_fds": "max"}


def process_snapshot() -> Snapshot:
    """This process's CPU, memory, open files and start time (prometheus_client's process collector)."""
    families: Snapshot = {}
    for metric in ProcessCollector(registry=None).collect():
        for sample in metric.samples:
            kind = "counter" if metric.type == "counter" else "gauge"
            families[sample.name] = {
                "type": kind,
                "help": metric.documentation,
                "samples": {_key("", []): sample.value},
                "merge": _PROCESS_MERGE.get(sample.name, "sum"),
            }
    return families


# --- Rendering ---------------------------------------------------------------------------------------------
def wants_openmetrics(accept: str | None) -> bool:
    """Content negotiation: OpenMetrics when the Accept header ranks it at least as high as the text format
    (`text/plain`, or `*/*` and `text/*` standing for it), by the quality values (RFC 9110 12.5.1). Prometheus
    sends OpenMetrics at q=0.5 and the text format at q=0.3; a bare `application/openmetrics-text` wins; `q=0`
    means not acceptable."""
    openmetrics = text = 0.0
    for entry in (accept or "").lower().split(","):
        media_range, *parameters = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if media_range == "application/openmetrics-text":
            openmetrics = max(openmetrics, quality)
        elif media_range in ("text/plain", "text/*", "*/*"):
            text = max(text, quality)
    return openmetrics > 0 and openmetrics >= text


class _Families:
    """A prometheus_client collector over one merged snapshot."""

    def __init__(
        self,
        snap: Snapshot,
        resource: Resource | None,
        openmetrics: bool,
        families: Iterable[str] | None = None,
    ) -> None:
        self.snap = snap
        self.resource = resource
        self.openmetrics = openmetrics
        self.families = sorted(snap) if families is None else list(families)  # which, in this order

    def collect(self) -> Iterable[Metric]:
        if self.resource is not None:
            info = Metric("target", "Target metadata: the OpenTelemetry resource of this service.", "info")
            labels = {k.replace(".", "_"): str(v) for k, v in sorted(self.resource.attributes.items())}
            info.add_sample("target_info", labels, 1)
            yield info
        for name in self.families:
            yield self._family(name, self.snap[name])

    def _family(self, name: str, family: dict[str, Any]) -> Metric:
        kind = family["type"]
        base = name.removesuffix("_total") if kind == "counter" else name
        unit = "seconds" if base.endswith("_seconds") and self.openmetrics else ""
        metric = Metric(base, family["help"], kind, unit)
        created = family.get("created") or {}
        exemplars = (family.get("exemplars") or {}) if self.openmetrics else {}
        seen_series: set[str] = set()
        for key in sorted(family["samples"], key=_sample_order):
            suffix, labels = json.loads(key)
            sample_name = name + suffix if kind == "histogram" else name
            if kind == "counter" and not sample_name.endswith("_total"):
                sample_name += "_total"
            label_dict = {k: self._le(v) if k == "le" else v for k, v in labels}
            metric.samples.append(
                Sample(
                    sample_name,
                    label_dict,
                    float(family["samples"][key]),
                    None,
                    _exemplar(exemplars.get(key)),
                )
            )
            if not self.openmetrics or suffix not in ("", "_count"):
                continue
            series = _key("", [pair for pair in labels if pair[0] != "le"])
            if series in created and series not in seen_series:
                seen_series.add(series)
                series_labels = {k: v for k, v in labels if k != "le"}
                metric.samples.append(Sample(base + "_created", series_labels, created[series], None, None))
        return metric

    def _le(self, value: str) -> str:
        """OpenMetrics spells bucket bounds as canonical floats (`1.0`); the text format keeps `1` as before."""
        return floatToGoString(float(value)) if self.openmetrics else value


def _exemplar(found: list[Any] | None) -> Exemplar | None:
    if not found:
        return None
    trace_id, span_id, value, when = found
    return Exemplar({"trace_id": trace_id, "span_id": span_id}, float(value), when)


def render(
    snap: Snapshot,
    *,
    openmetrics: bool = False,
    resource: Resource | None = None,
    routes: Iterable[Route] = (),
) -> str:
    """The exposition of a merged snapshot: Prometheus text (default) or OpenMetrics 1.0, with the zero series
    of every known label set (`routes`: the app's (route template, method) pairs)."""
    missing, bounds = missing_zero_series(snap, routes)
    generate = generate_openmetrics if openmetrics else generate_text
    if not missing:
        return generate(_Families(snap, resource, openmetrics)).decode()  # type: ignore[arg-type]
    # The request-duration family, then its zero series (text rendered once, see _zero_text), then the rest.
    ordered = sorted(snap)
    cut = ordered.index(_HTTP_DURATION) + 1
    head = generate(_Families(snap, resource, openmetrics, ordered[:cut])).decode()  # type: ignore[arg-type]
    tail = generate(_Families(snap, None, openmetrics, ordered[cut:])).decode()  # type: ignore[arg-type]
    return head.removesuffix("# EOF\n") + _zero_text(missing, bounds, openmetrics) + tail


_SUFFIX_RANK = {"": 0, "_bucket": 1, "_sum": 2, "_count": 3}


def _sample_order(key: str) -> tuple[Any, ...]:
    """Series together; within a histogram series, buckets by increasing bound, then _sum and _count."""
    suffix, labels = json.loads(key)
    series = [pair for pair in labels if pair[0] != "le"]
    le = next((float(v) for k, v in labels if k == "le"), 0.0)
    return (series, _SUFFIX_RANK.get(suffix, 9), le)


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer():
            return str(int(value)) if abs(value) < 1e15 else repr(value)
        return repr(value)
    return str(value)


class SnapshotDirectory:
    """Where the workers of one `market serve` leave their snapshots: `<root>/<group>/`. Cleared by
    `market serve` before its workers start; other groups' folders are left alone (another replica sharing
    the var folder), except those of this host's processes that are gone."""

    def __init__(self, root: Path, group: str | None = None) -> None:
        self.root = root
        self.group = group or process_group()
        self.directory = root / self.group

    def write(self, snap: Snapshot) -> None:
        private_dir(self.directory)
        target = self.directory / f"{os.getpid()}.json"
        temporary = target.with_suffix(".tmp")
        write_private_text(temporary, json.dumps(snap))  # business figures: not for other local users
        temporary.replace(target)  # readers never see half a file

    def others(self) -> list[Snapshot]:
        if not self.directory.is_dir():
            return []
        own = f"{os.getpid()}.json"
        snaps = []
        for path in self.directory.glob("*.json"):
            if path.name == own:
                continue
            try:
                snaps.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a worker replacing its file right now; its next snapshot will do
        return snaps

    def clear(self) -> None:
        """Empty this group's folder; drop the snapshots of this host's groups whose process has exited and
        the flat `<root>/*.json` of older versions."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*.json"):
            path.unlink(missing_ok=True)
        host = socket.gethostname()
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            name_host, _, pid = folder.name.rpartition("-")
            if folder.name == self.group or (name_host == host and pid.isdigit() and not _alive(int(pid))):
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class MetricsExposition:
    """What `/metrics` serves: this worker's live metrics plus the other workers' snapshots."""

    def __init__(self, reader: Any, directory: SnapshotDirectory, resource: Resource | None = None) -> None:
        self.reader = reader  # the SharedMetricReader: its collections keep the latest exemplars
        self.directory = directory
        self.resource = resource
        self.routes: tuple[Route, ...] = ()

    def expect_routes(self, routes: Iterable[Route]) -> None:
        """The (route template, method) pairs the app serves, known at start: each gets zero 5xx series of the
        request duration from the first scrape on, before its first request."""
        self.routes = tuple(sorted(set(routes)))

    def collect(self) -> Snapshot:
        return snapshot(self.reader.get_metrics_data())

    def render(self, *, openmetrics: bool = False) -> str:
        own = {**self.collect(), **process_snapshot()}
        return render(
            merge([*self.directory.others(), own]),
            openmetrics=openmetrics,
            resource=self.resource,
            routes=self.routes,
        )

    def write_snapshot(self) -> None:
        self.directory.write({**self.collect(), **process_snapshot()})
