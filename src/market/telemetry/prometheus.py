"""Prometheus text exposition of the SDK's metrics, merged across worker processes.

Each worker collects its own metrics (cumulative) and, every few seconds, writes a snapshot to
`<var>/metrics/<group>/<pid>.json`; `/metrics` answers with this worker's live figures plus the other workers'
latest snapshots, so `market serve --workers N` reports the whole server whichever worker answers.
Counters and histograms add up across workers; gauges take the latest value.

The group is one `market serve` (host name and the serve process's id, handed to its workers in the
environment): replicas that share a var folder each report their own work, never the sum of all of them —
Prometheus scrapes every replica and adds them up itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

from market.private_files import private_dir, write_private_text

Snapshot = dict[str, dict[str, Any]]  # prometheus family name -> {"type", "help", "samples": {key: value}}

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
    for point in data.data_points:
        labels = _labels(point.attributes)
        if kind == "histogram":
            cumulative = 0
            for bound, count in zip([*point.explicit_bounds, math.inf], point.bucket_counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == math.inf else _number(bound)
                samples[_key("_bucket", sorted([*labels, ["le", le]]))] = cumulative
            samples[_key("_sum", labels)] = point.sum
            samples[_key("_count", labels)] = point.count
        else:
            samples[_key("", labels)] = point.value


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    merged: Snapshot = {}
    for snap in snapshots:
        for name, family in snap.items():
            target = merged.setdefault(name, {"type": family["type"], "help": family["help"], "samples": {}})
            for key, value in family["samples"].items():
                if family["type"] == "gauge":
                    target["samples"][key] = value
                else:
                    target["samples"][key] = target["samples"].get(key, 0) + value
    return merged


def render(snap: Snapshot) -> str:
    lines: list[str] = []
    for name in sorted(snap):
        family = snap[name]
        kind = family["type"]
        lines.append(f"# HELP {name} {_escape_help(family['help'])}")
        lines.append(f"# TYPE {name} {kind}")
        for key in sorted(family["samples"], key=_sample_order):
            suffix, labels = json.loads(key)
            sample_name = name if kind != "histogram" else name + suffix
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            value = family["samples"][key]
            lines.append(
                f"{sample_name}{{{label_text}}} {_number(value)}"
                if label_text
                else f"{sample_name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


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


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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

    def __init__(self, reader: Any, directory: SnapshotDirectory) -> None:
        self.reader = reader  # an InMemoryMetricReader registered with the meter provider
        self.directory = directory

    def collect(self) -> Snapshot:
        return snapshot(self.reader.get_metrics_data())

    def render(self) -> str:
        return render(merge([*self.directory.others(), self.collect()]))

    def write_snapshot(self) -> None:
        self.directory.write(self.collect())
