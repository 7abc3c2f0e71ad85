"""The bench's scenarios, one module each; run.py runs them in this order."""

from __future__ import annotations

NAMES = (
    "enqueue",
    "success",
    "events",
    "failure",
    "dlq",
    "bulk",
    "cli",
    "api",
    "storm",
    "iobound",
    "fairness",
    "tokens",
)
