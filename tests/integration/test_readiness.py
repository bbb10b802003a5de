"""Readiness tells the load balancer the truth about the database."""

from __future__ import annotations

from litestar.testing import TestClient

from market.bootstrap import build_app
from market.config import Settings
from tests.conftest import _admin


def _settings(url: str, tmp_path) -> Settings:
    return Settings.from_env({"MARKET_DATABASE_URL": url, "MARKET_VAR_DIR": str(tmp_path)}, dotenv=None)


def test_ready_is_200_while_the_database_answers(database_url, tmp_path):
    with TestClient(build_app(_settings(database_url, tmp_path))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_a_503_problem_once_the_database_is_gone(fresh_postgres_url, tmp_path):
    with TestClient(build_app(_settings(fresh_postgres_url, tmp_path))) as client:
        assert client.get("/health/ready").status_code == 200
        name = fresh_postgres_url.rsplit("/", 1)[1]
        _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        response = client.get("/health/ready")
        live = client.get("/health/live")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503 and len(body["trace_id"]) == 32
    assert "asyncpg" not in body["detail"] and "Traceback" not in body["detail"]
    assert live.status_code == 200  # liveness does not depend on the database
