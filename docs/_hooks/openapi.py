"""MkDocs hook: the HTTP API page's OpenAPI schema, generated from the code at every build.

`create_app` builds the FastAPI app exactly as `genqueue api` does, with a client that is never used (so no
embedded server is started and none is contacted), and its schema is added to the site as
`reference/openapi.json`, which the HTTP API page renders with the swagger-ui tag. Nothing is committed, so
the page cannot drift from the routes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files
from redis import Redis

SCHEMA_PATH = "reference/openapi.json"


def openapi_schema() -> dict:
    from genqueue.api.app import create_app
    from genqueue.api.config import ApiConfig
    from genqueue.settings import Settings

    with tempfile.TemporaryDirectory() as home:
        # An explicit secret, so that building the docs never writes a local secret into a GENQUEUE_HOME.
        env = {"GENQUEUE_HOME": home, "GENQUEUE_API_JWT_SECRET": "docs-build-only-" + "x" * 32}
        settings = Settings.from_env(env)
        unused = Redis(unix_socket_path=str(Path(home) / "never.sock"))  # connects on first use: never, here
        app = create_app(settings, ApiConfig.from_env(Path(home), env), connection=unused)
        return app.fastapi.openapi()


def on_files(files: Files, config) -> Files:
    content = json.dumps(openapi_schema(), indent=2, sort_keys=False)
    files.append(File.generated(config, SCHEMA_PATH, content=content))
    return files
