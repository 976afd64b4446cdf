"""Telemetry: a scheduler plugin writing to SQLite, and its readers.

Modules (import them directly; this package imports nothing, to stay cheap):

- ``scalable.telemetry.store``: the database (``TelemetryDB``) and its records
  (``Run``, ``Event``, ``TaskRow``, ``Aggregate``, ``WorkerSpan``, ``TimelinePoint``).
  The API others build on::

      db = TelemetryDB.for_root(spec.root)        # <root>/.scalable/telemetry.db
      db.runs(target=None, limit=None)            # newest first
      db.last_run(target=None); db.run(run_id); db.open_run(target, scheduler_address)
      db.events(run_id, kinds=None)               # time order
      db.record_event(run_id, kind, data)         # e.g. "scale_decision", {from, to, reason}
      db.task_durations(target, tag=None, prefix=None)  # seconds, across runs
      db.worker_spans(run_id); db.worker_timeline(run_id)

- ``scalable.telemetry.plugin``: the Dask ``SchedulerPlugin`` (``--preload``).
- ``scalable.telemetry.recorder``: the engine's event sink (``RunRecorder``),
  ``current_run(workspace)`` and ``pull`` for remote schedulers.
- ``scalable.telemetry.report``: run summaries (``build_report``, ``render_report``).

See docs/guides/telemetry.rst for what is recorded, the schema and the privacy rules.
"""
