"""The workspace keeps at least one Owner, and an operator can get Owner access back from the host.

* Deleting the last ``Owner`` assignment on ``workspace`` is refused (409 ``conflict``) with a message
  naming the fix; an Owner on a narrower scope (``endpoint:x``) does not count as a workspace Owner.
* The check and the delete are one transaction: two concurrent deletes of the last two Owners cannot
  both succeed (SQLite and PostgreSQL, against the store).
* ``python -m batchpoint.server recover-owner --home HOME`` gives the local owner Owner again with a
  fresh key in ``<home>/owner.key`` (0600), while the server runs or not.

The REST refusals run in-process (the real app over a real SQLite, ``fixtures/inproc.py``), each
workspace of its own, so the shared session server keeps its owner; the CLI's one error line, the
recovery while a server runs and with it stopped use real server processes.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from batchpoint.exceptions import ConflictError
from fixtures.inproc import TestClient
from batchpoint.store.sql import SqlMetadataStore
from conftest import ServerHandle, record_secret, start_server, stop_server
from fixtures.inproc_cli import run_cli
from fixtures.inproc import InProc, workspace

OWNER = f"user:{getpass.getuser()}"  # the principal the server bootstraps


def _serve(home: Path) -> Iterator[ServerHandle]:
    handle = start_server(home)
    record_secret(_owner_key(handle))
    try:
        yield handle
    finally:
        stop_server(handle)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerHandle]:
    """A server of this test's own (for tests that change who is Owner or revoke the owner's key)."""
    yield from _serve(tmp_path / "home")


@pytest.fixture(scope="module")
def kept_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server shared by the tests that leave its owner and the owner's key as they were."""
    yield from _serve(tmp_path_factory.mktemp("last-owner") / "home")


@pytest.fixture(scope="module")
def kept_inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    """An in-process workspace shared by the REST tests that leave its owner as it was."""
    with workspace(tmp_path_factory.mktemp("last-owner-inproc")) as ws:
        yield ws


def _owner_key(handle: ServerHandle) -> str:
    return (handle.home / "owner.key").read_text().strip()


def _http(handle: ServerHandle, key: str) -> httpx.Client:
    return httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _owner_assignment(http: httpx.Client, principal: str = OWNER) -> int:
    response = http.get("/roleAssignments", params={"principal_id": principal})
    assert response.status_code == 200, response.text
    ids = [a["id"] for a in response.json() if a["role"] == "Owner" and a["scope"] == "workspace"]
    assert len(ids) == 1, response.json()
    return ids[0]


def _grant(http: httpx.Client, principal: str, role: str = "Owner", scope: str = "workspace") -> int:
    assert http.post("/principals", json={"id": principal}).status_code == 201
    response = http.post("/roleAssignments", json={"principal_id": principal, "role": role, "scope": scope})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _new_key(http: httpx.Client, principal: str) -> str:
    response = http.post(f"/principals/{principal}/keys", json={})
    assert response.status_code == 201, response.text
    return record_secret(response.json()["key"])


def _assert_last_owner_refused(response: httpx.Response, assignment_id: int, principal: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict"
    message = error["message"]
    assert f"role assignment {assignment_id}" in message and f"'{principal}'" in message
    assert "last Owner" in message and "nobody could manage" in message
    assert "batchpoint role assignment create --role Owner --assignee <principal> --scope workspace" in message
    assert "python -m batchpoint.server recover-owner" in message


def _assert_admin_works(http: httpx.Client) -> None:
    """Every administrative verb still answers as for an Owner."""
    assert http.get("/roleAssignments").status_code == 200
    assert http.get("/principals").status_code == 200
    assert http.get("/auditLog").status_code == 200
    pid = f"user:check-{uuid.uuid4().hex[:6]}"
    _grant(http, pid, "Reader")
    key = _new_key(http, pid)
    assert key.startswith("bpk_")
    key_id = http.get(f"/principals/{pid}/keys").json()[0]["key_id"]
    assert http.delete(f"/principals/{pid}/keys/{key_id}").status_code == 204


# -- REST ---------------------------------------------------------------------------------------

def test_deleting_the_only_owner_is_refused_and_access_stays(kept_inproc: InProc) -> None:
    with contextlib.nullcontext(kept_inproc.owner) as http:
        owner_id = _owner_assignment(http)
        _assert_last_owner_refused(http.delete(f"/roleAssignments/{owner_id}"), owner_id, OWNER)
        assert _owner_assignment(http) == owner_id  # still there
        _assert_admin_works(http)


def test_owner_can_hand_over_but_not_leave_nobody(tmp_path: Path) -> None:
    second = "user:second-owner"
    with workspace(tmp_path) as ws:
        first = ws.owner
        first_id = _owner_assignment(first)
        second_id = _grant(first, second)
        second_key = _new_key(first, second)
        assert first.delete(f"/roleAssignments/{first_id}").status_code == 204  # another Owner remains
        assert first.get("/roleAssignments").status_code == 403  # the first one handed over
        http = TestClient(ws.owner.app, raise_server_exceptions=False)
        http.headers["Authorization"] = f"Bearer {second_key}"
        owners = [a for a in http.get("/roleAssignments").json() if a["role"] == "Owner"]
        assert [(a["id"], a["principal_id"]) for a in owners] == [(second_id, second)]
        _assert_last_owner_refused(http.delete(f"/roleAssignments/{second_id}"), second_id, second)
        _assert_admin_works(http)


def test_a_scoped_owner_is_not_a_workspace_owner(kept_inproc: InProc) -> None:
    with contextlib.nullcontext(kept_inproc.owner) as http:
        owner_id = _owner_assignment(http)
        scoped_id = _grant(http, "user:endpoint-owner", "Owner", "endpoint:x")
        _assert_last_owner_refused(http.delete(f"/roleAssignments/{owner_id}"), owner_id, OWNER)
        assert http.delete(f"/roleAssignments/{scoped_id}").status_code == 204  # scoped Owners go freely
        _assert_admin_works(http)


def test_cli_delete_of_the_last_owner_is_one_error_line(kept_server: ServerHandle) -> None:
    with _http(kept_server, _owner_key(kept_server)) as http:
        owner_id = _owner_assignment(http)
    exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
    env = {**kept_server.env, "BATCHPOINT_SERVER_URL": kept_server.url, "BATCHPOINT_HOME": str(kept_server.home)}
    args = ["role", "assignment", "delete", "--id", str(owner_id)]
    proc = subprocess.CompletedProcess([exe, *args], *run_cli(env, *args))  # the CLI in this process
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
    assert "last Owner" in lines[0] and "batchpoint role assignment create --role Owner" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    with _http(kept_server, _owner_key(kept_server)) as http:
        assert _owner_assignment(http) == owner_id


# -- recovery from the host ------------------------------------------------------------------------

def _recover(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "batchpoint.server", "recover-owner", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"{proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    assert "Traceback" not in proc.stderr
    return proc


def test_recover_owner_while_the_server_runs(own_server: ServerHandle) -> None:
    home = own_server.home
    old_key = _owner_key(own_server)
    with _http(own_server, old_key) as http:
        keys = http.get(f"/principals/{OWNER}/keys").json()
        assert len(keys) == 1
        assert http.delete(f"/principals/{OWNER}/keys/{keys[0]['key_id']}").status_code == 204
        assert http.get("/roleAssignments").status_code == 401  # locked out: the only Owner key is revoked

    proc = _recover(home, own_server.env)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert f"'{OWNER}' has Owner on workspace" in lines[0] and str(home / "owner.key") in lines[0]

    new_key = record_secret(_owner_key(own_server))
    assert new_key != old_key and new_key not in proc.stdout + proc.stderr  # the key goes to the file only
    assert stat.S_IMODE((home / "owner.key").stat().st_mode) == 0o600
    with _http(own_server, new_key) as http:
        assert http.get("/roleAssignments").status_code == 200
        _assert_admin_works(http)
        audit = http.get("/auditLog", params={"limit": 1000}).json()
        assert any(a["action"] == "RECOVER_OWNER" and a["principal_id"] == OWNER for a in audit)
    with _http(own_server, old_key) as http:
        assert http.get("/roleAssignments").status_code == 401  # the revoked key stays revoked


def test_recover_owner_with_the_server_stopped_for_another_principal(tmp_path: Path) -> None:
    handle = start_server(tmp_path / "home")
    record_secret(_owner_key(handle))
    stop_server(handle)
    ops = "user:ops-recovery"
    proc = _recover(handle.home, handle.env, "--principal", ops)
    assert f"'{ops}' has Owner on workspace" in proc.stdout
    assert stat.S_IMODE((handle.home / "owner.key").stat().st_mode) == 0o600
    key = record_secret(_owner_key(handle))
    again = start_server(handle.home)  # a restart keeps the recovered key (it authenticates)
    try:
        assert _owner_key(again) == key
        with _http(again, key) as http:
            assert _owner_assignment(http, ops) > 0
            _assert_admin_works(http)
    finally:
        stop_server(again)


def test_recover_owner_refuses_a_folder_that_is_no_server_home(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "batchpoint.server", "recover-owner", "--home", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ERROR: ") and "server.key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "owner.key").exists()


# -- the store: check and delete in one transaction ------------------------------------------------

@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    # A database of its own: the shared test database may hold other tests' Owner assignments.
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"bp_last_owner_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_concurrent_deletes_of_the_last_two_owners(store_url: str) -> None:
    """Two threads delete the last two Owners at once. Each waits for the other just before its
    DELETE runs and again just after (before its commit), up to 2 s each time: with a lock the other
    one is still blocked and this one goes on alone. Without a check inside the transaction both
    deletes would succeed; here one succeeds, the other is refused, and one Owner remains."""
    store = SqlMetadataStore(store_url)
    store.migrate()
    try:
        for p in ("user:a", "user:b"):
            store.put_principal(p, "user", None)
        ids = [store.add_role_assignment(p, "Owner", "workspace").id for p in ("user:a", "user:b")]
        before, after = threading.Barrier(2, timeout=2), threading.Barrier(2, timeout=2)
        racing = threading.local()

        def rendezvous(barrier: threading.Barrier) -> None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the other one is blocked on a lock this one holds: go on alone

        def is_delete(statement: str) -> bool:
            sql = " ".join(statement.split())
            return getattr(racing, "on", False) and sql.startswith("DELETE FROM role_assignments")

        @event.listens_for(store.engine, "before_cursor_execute")
        def _before(conn, cursor, statement, params, context, executemany):  # noqa: ANN001, ANN202
            if is_delete(statement):
                rendezvous(before)

        @event.listens_for(store.engine, "after_cursor_execute")
        def _after(conn, cursor, statement, params, context, executemany):  # noqa: ANN001, ANN202
            if is_delete(statement):
                racing.on = False
                rendezvous(after)

        outcomes: dict[int, str] = {}

        def delete(assignment_id: int) -> None:
            racing.on = True
            try:
                store.delete_role_assignment(assignment_id)
                outcomes[assignment_id] = "deleted"
            except ConflictError as exc:
                outcomes[assignment_id] = "refused" if "last Owner" in exc.message else repr(exc)
            except Exception as exc:  # noqa: BLE001
                outcomes[assignment_id] = repr(exc)

        threads = [threading.Thread(target=delete, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcomes.values()) == ["deleted", "refused"], outcomes
        left = [(r.id, r.role, r.scope) for r in store.list_role_assignments()]
        assert len(left) == 1 and left[0][1:] == ("Owner", "workspace")
        assert left[0][0] == next(i for i, o in outcomes.items() if o == "refused")
    finally:
        store.close()
