"""Telemetry: a scheduler plugin writing to SQLite, and its readers."""
