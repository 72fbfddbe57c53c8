"""Servers that share a database (issue 23 §2): a server on another BATCHPOINT_HOME refuses to start,
naming both homes, before it writes anything (no second owner key); each server has a stable id,
kept under its home, logged at start, shown on each job (``server``) and in /metrics. In-process:
the real app over one SQLite file, through FastAPI's TestClient."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette asks for httpx2, which it works without
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from batchpoint.server.app import create_app
from batchpoint.server.instance import HomeMismatchError
from batchpoint.settings import Settings


def app_on(home: Path, database: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, database_url=f"sqlite:///{database}")))


def as_owner(client: TestClient, home: Path) -> TestClient:
    client.headers["Authorization"] = f"Bearer {(home / 'owner.key').read_text().strip()}"
    return client


def test_a_server_on_another_home_refuses_to_start_naming_both(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    database, first, other = tmp_path / "shared.db", tmp_path / "home-a", tmp_path / "home-b"
    with app_on(first, database) as a:
        as_owner(a, first)
        principals = {p["id"] for p in a.get("/principals").json()}
        with pytest.raises(HomeMismatchError) as refused, app_on(other, database):
            pass
        message = str(refused.value)
        assert str(first.resolve()) in message and str(other.resolve()) in message, message
        assert "BATCHPOINT_HOME" in message and "home.id" in message
        assert any("cannot start" in r.getMessage() and str(first.resolve()) in r.getMessage() for r in caplog.records)
        assert not (other / "owner.key").exists() and not (other / "server.key").exists()
        assert {p["id"] for p in a.get("/principals").json()} == principals  # no second owner minted
        with app_on(first, database) as same_home:  # a second server on the same home is fine
            assert as_owner(same_home, first).get("/computes").status_code == 200


def test_the_server_id_is_stable_logged_and_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home, database = tmp_path / "home", tmp_path / "metadata.db"
    caplog.set_level("INFO", logger="batchpoint.server")
    with app_on(home, database) as first:
        as_owner(first, home)
        server_id = first.app.state.ctx.dispatcher.owner
        metrics = first.get("/metrics").text
    assert 'batchpoint_server_info{host="' in metrics and f'server_id="{server_id}"' in metrics, metrics
    assert any(f"server {server_id} starting" in r.getMessage() for r in caplog.records)
    assert (home / "servers").is_dir() and server_id in "".join(p.read_text() for p in (home / "servers").iterdir())
    with app_on(home, database) as again:  # restarted on the same home: the same id
        assert again.app.state.ctx.dispatcher.owner == server_id
        with app_on(home, database) as beside:  # a second live one on this host and home: its own
            assert beside.app.state.ctx.dispatcher.owner != server_id
