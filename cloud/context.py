"""What one app instance holds: settings, database, clock, policies, intake counters.

Nothing here is state another worker needs; it is all configuration or per-process counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.clock import Clock
from cloud.db import Database
from cloud.intake import Intake
from cloud.policies import PolicyBook
from cloud.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    db: Database
    clock: Clock
    policies: PolicyBook
    intake: Intake
