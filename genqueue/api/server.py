"""The module uvicorn imports (`genqueue.api.server:app`), once per server process."""

from __future__ import annotations

from ..settings import Settings
from ..tasks.registry import import_task_modules
from .app import create_app

settings = Settings.from_env()
import_task_modules(settings.tasks)  # so POST /api/jobs checks a task's kwargs and sees its api option
app = create_app(settings)
