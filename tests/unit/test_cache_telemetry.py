"""Cache counts in telemetry: the plugin's aggregation, the report's Cache section and
JSON keys, and the dashboard's hit rate."""

from __future__ import annotations

from scalable.cache.telemetry import summarise
from scalable.telemetry.plugin import CACHE_TOPIC, TelemetryConfig, TelemetryPlugin
from scalable.telemetry.report import render_cache
from scalable.telemetry.store import Event
from scalable.tui.model import cache_hits, fmt_cache


def plugin() -> TelemetryPlugin:
    return TelemetryPlugin(TelemetryConfig(mode="memory", project="p", target="t",
                                           provider="local", db_path=None))


def test_plugin_folds_worker_reports_into_one_event_per_flush() -> None:
    p = plugin()
    for hit, secs in [(False, 2.0), (True, 2.0), (True, 2.0)]:
        p.log_event(CACHE_TOPIC, {"key": "k", "function": "m.f", "tag": "sim", "hit": hit,
                                  "seconds": secs})
    p.log_event(CACHE_TOPIC, {"key": "k2", "function": "m.g", "tag": None, "hit": False,
                              "seconds": 1.0})
    events, _, _ = p._take()
    (ev,) = events
    assert ev[1] == "cache_calls"
    summary = summarise([Event("r", ev[0], ev[1], ev[2], ev[3])])
    assert summary is not None
    assert (summary.total.hits, summary.total.misses) == (2, 2)
    assert summary.by_tag["sim"].saved_seconds == 4.0
    assert summary.by_tag["-"].misses == 1
    assert p._take()[0] == []  # counts are not repeated


def test_report_section_and_json_sum_events() -> None:
    evs = [Event("r", float(i), "cache_calls", None, {"calls": [
        {"tag": "sim", "function": "m.f", "hits": 3, "misses": 1, "saved_seconds": 6.0,
         "compute_seconds": 2.0}]}) for i in range(2)]
    summary = summarise(evs)
    assert summary is not None
    text = "\n".join(render_cache(summary))
    assert "Cache: 8 calls, 6 hits (75%), 2 misses, 12.0s saved" in text
    assert "sim" in text
    d = summary.to_dict()
    assert d["hit_rate"] == 0.75 and d["by_tag"]["sim"]["time_saved_seconds"] == 12.0
    assert d["by_function"]["m.f"]["calls"] == 8
    assert cache_hits(evs) == (6, 8) and cache_hits(evs, until=0.5) == (3, 4)
    assert fmt_cache((6, 8)) == "cache 75% hits of 8"
    assert summarise([Event("r", 0.0, "worker_added", "w", {})]) is None
