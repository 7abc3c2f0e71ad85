"""The per-invocation context: settings from the environment and a lazily opened connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from ..settings import Settings

if TYPE_CHECKING:
    from redis import Redis

    from ..dlq.store import DLQStore


@dataclass
class App:
    settings: Settings
    as_json: bool = False
    _connection: Redis | None = field(default=None, repr=False)

    def for_queue(self, queue: str | None) -> App:
        if queue:
            self.settings = self.settings.with_queue(queue)
        return self

    @property
    def connection(self) -> Redis:
        if self._connection is None:
            from ..backend.connection import connect

            self._connection = connect(self.settings)
        return self._connection

    def store(self) -> DLQStore:
        from ..dlq.store import DLQStore

        return DLQStore(self.connection, self.settings.queue, retention_s=self.settings.dlq_retention_s)


def get_app(queue: str | None = None, as_json: bool = False) -> App:
    app = click.get_current_context().find_object(App)
    if app is None:  # the `genqueue` group makes it before any command runs
        raise RuntimeError("no genqueue CLI context: run the command through the genqueue group")
    app.as_json = app.as_json or as_json
    return app.for_queue(queue)
