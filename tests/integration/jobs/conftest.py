"""The HTTP face, in-process (FastAPI's TestClient over the real server) and as a real `genqueue api` process,
for tests that drive one job through every face beside real workers."""

from tests.api.conftest import api_config, api_env, api_process, client, token  # noqa: F401 - fixtures
