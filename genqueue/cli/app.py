"""The per-invocation context: settings from the environment and a lazily opened connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from ..settings import Settings


@dataclass
class App:
    settings: Settings
    as_json: bool = False
    _connection: Any = field(default=None, repr=False)

    def for_queue(self, queue: str | None) -> App:
        if queue:
            self.settings = self.settings.with_queue(queue)
        return self

    @property
    def connection(self):
        if self._connection is None:
            from ..backend.connection import connect

            self._connection = connect(self.settings)
        return self._connection

    def store(self):
        from ..dlq.store import DLQStore

        return DLQStore(self.connection, self.settings.queue, retention_s=self.settings.dlq_retention_s)


def get_app(queue: str | None = None, as_json: bool = False) -> App:
    app: App = click.get_current_context().find_object(App)
    app.as_json = app.as_json or as_json
    return app.for_queue(queue)
