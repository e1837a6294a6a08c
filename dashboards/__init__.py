"""Grafana dashboards and provisioning for the telemetry database (see docs/telemetry.md)."""
