"""The module uvicorn imports (`genqueue.api.server:app`), once per server process."""

from __future__ import annotations

from ..settings import Settings
from .app import create_app

app = create_app(Settings.from_env())
