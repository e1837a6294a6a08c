"""The cloud service: event intake, work orders and SLAs, device ledger, users, dashboard."""
