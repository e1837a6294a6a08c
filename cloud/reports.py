"""Policies of orders people report (no device profile decides them).

The contract's defaults: a repair request is answered within 2 hours and finished within 24;
an emergency is answered within 15 minutes and made safe within 4 hours.
"""

from __future__ import annotations

from device_profiles.schema import Category, WorkOrderPolicy

TEAMS: dict[str, str] = {
    "elevator": "elevator_contractor",
    "engineering": "engineering",
    "security": "security",
    "cleaning": "cleaning",
    "energy": "engineering",
}


def report_policy(category: Category, emergency: bool) -> WorkOrderPolicy:
    if emergency:
        return WorkOrderPolicy(
            category=category, priority="P1", team=TEAMS[category],
            response_sla=15 * 60.0, resolve_sla=4 * 3600.0,
        )
    return WorkOrderPolicy(
        category=category, priority="P3", team=TEAMS[category],
        response_sla=2 * 3600.0, resolve_sla=24 * 3600.0,
    )
