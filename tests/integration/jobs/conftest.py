"""The HTTP face in-process (FastAPI's TestClient over the real server), for tests that drive one job through
both faces beside real workers."""

from tests.api.conftest import api_config, client, token  # noqa: F401 - fixtures
