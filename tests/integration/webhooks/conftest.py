"""The HTTP face in-process (FastAPI's TestClient over the real server) for the webhook fields' checks."""

from tests.api.conftest import api_config, client, token  # noqa: F401 - fixtures
