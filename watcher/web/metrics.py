"""``/metrics``: the monitor's numbers in Prometheus' text format, through prometheus-client.

The values are read when Prometheus asks (a custom collector over a :class:`View`), not kept
in counters the service would have to update: the catalog and the state file already hold
them, and a restarted service must not start its counts from zero. ``runs_total`` therefore
counts the catalog's runs, which only ever grow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.web.view import View

PREFIX = "siip_watcher_"
RESULTS = ("ok", "warning", "failed")


def families(view: View) -> list[Metric]:
    """Every metric for ``view`` (pure)."""
    st = view.status
    out: list[Metric] = []

    def gauge(name: str, doc: str, value: float | None) -> None:
        if value is not None:
            out.append(GaugeMetricFamily(PREFIX + name, doc, value=value))

    snap = st.get("last_snapshot")
    run = st.get("last_run")
    gauge("up", "1 while the backup service runs (it serves this page, so always 1 here)",
          1.0 if st["running"] else 0.0)
    gauge("last_success_timestamp_seconds", "When the newest snapshot was taken (Unix time)",
          datetime.fromisoformat(snap["created_at"]).timestamp() if snap else None)
    gauge("last_snapshot_bytes", "Size of the newest snapshot's archive",
          float(snap["size"]) if snap else None)
    gauge("last_run_duration_seconds", "How long the last finished run took",
          run.get("duration_seconds") if run else None)
    gauge("last_run_success", "1 if the last run stored a snapshot, 0 if it failed",
          (0.0 if run["result"] == "failed" else 1.0) if run else None)
    gauge("backup_running", "1 while a backup is in progress",
          1.0 if st.get("backup_running") else 0.0)
    changes = st["changes"]
    gauge("changes_pending", "Changes seen in the tree since the last snapshot",
          float(changes["events"] or 0) if changes["known"] else None)
    gauge("snapshots", "Snapshots in the catalog (here or at a destination)",
          float(st["snapshots"]))
    gauge("data_loss_alert", "1 while a data-loss alert holds pruning",
          1.0 if st.get("alert") else 0.0)

    queue = GaugeMetricFamily(PREFIX + "upload_queue_length",
                              "Copies waiting at a destination (pending or failed)",
                              labels=["destination"])
    for d in view.destinations:
        queue.add_metric([d.name], float(d.pending + d.failed))
    out.append(queue)

    runs = CounterMetricFamily(PREFIX + "runs", "Finished runs recorded in the catalog",
                               labels=["result"])
    for result in sorted(set(RESULTS) | set(view.run_counts)):
        runs.add_metric([result], float(view.run_counts.get(result, 0)))
    out.append(runs)
    return out


class _ViewCollector(Collector):
    def __init__(self, read: Callable[[], View]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from families(self._read())


def exposition(read: Callable[[], View]) -> bytes:
    """The text Prometheus scrapes, read through ``read`` now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ViewCollector(read))
    return generate_latest(registry)
