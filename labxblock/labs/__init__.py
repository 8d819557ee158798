"""Operations on labs, for the block and the tasks: the only code that opens transactions
and starts tasks (always after commit).

The block calls the learner functions; tasks call the engine, observe, calls, jobs and periodic ones.
"""

from labxblock.labs import budgets
from labxblock.labs.addressing import AddressRefused, BadPort
from labxblock.labs.ahead import launch_ahead
from labxblock.labs.audit import record_staff_terminal
from labxblock.labs.learner import (
    estimate_seconds,
    get_status,
    keepalive,
    leave,
    request_launch,
    request_reset,
    retry,
    status_of,
    terminal_access,
)
from labxblock.labs.specs import LabSpec, LabStatus, ProviderChoice, TerminalAccess

__all__ = [
    "AddressRefused",
    "BadPort",
    "LabSpec",
    "LabStatus",
    "ProviderChoice",
    "TerminalAccess",
    "budgets",
    "estimate_seconds",
    "get_status",
    "keepalive",
    "launch_ahead",
    "leave",
    "record_staff_terminal",
    "request_launch",
    "request_reset",
    "retry",
    "status_of",
    "terminal_access",
]
