"""An in-process workspace for refusal tests: the real app (``create_app``) over a real SQLite
database in a temporary home, driven through FastAPI's ``TestClient`` — no server process.

``workspace(tmp_path)`` yields an :class:`InProc` with the Owner's client, ``as_role`` to make a
principal with one role assignment and get its client, and ``deploy`` for a custom-model
deployment whose ``score.py`` echoes each file's name (enough for invokes to be accepted).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # starlette asks for httpx2, which it works without
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from batchpoint.server.app import create_app
from batchpoint.settings import Settings

SCORE_PY = '''
import os

def init():
    pass

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
'''


@dataclass
class InProc:
    home: Path
    owner: TestClient
    ctx: Any
    clients: list[TestClient] = field(default_factory=list)

    def as_role(self, who: str, role: str, scope: str = "workspace") -> TestClient:
        """A client for principal ``user:<who>`` holding ``role`` on ``scope`` (made on first use)."""
        principal = f"user:{who}"
        if principal not in {p["id"] for p in self.owner.get("/principals").json()}:
            assert self.owner.post("/principals", json={"id": principal}).status_code == 201
        response = self.owner.post("/roleAssignments", json={"principal_id": principal, "role": role, "scope": scope})
        assert response.status_code == 201, response.text
        key = self.owner.post(f"/principals/{principal}/keys", json={}).json()["key"]
        client = TestClient(self.owner.app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {key}"
        self.clients.append(client)
        return client

    def put_file(self, rel: str, data: bytes) -> Path:
        """A file in the default (local) data store, written straight to its folder."""
        root = Path(self.owner.get("/datastores/workspaceblobstore").json()["path"])
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def deploy(self, endpoint: str, deployment: str = "echo", **settings: Any) -> None:
        """An endpoint with a custom-model deployment (score.py in a code folder on the store)."""
        self.put_file(f"setup/{endpoint}/model/model.txt", b"model\n")
        self.put_file(f"setup/{endpoint}/code/score.py", SCORE_PY.encode())
        store = "azureml://datastores/workspaceblobstore/paths"
        response = self.owner.post(f"/models/{endpoint}-model/versions",
                                   json={"version": "1", "path": f"{store}/setup/{endpoint}/model"})
        assert response.status_code == 201, response.text
        assert self.owner.put(f"/batchEndpoints/{endpoint}", json={}).status_code == 200
        body = {"model": f"azureml:{endpoint}-model:1", "env_manager": "local",
                "code_configuration": {"code": f"{store}/setup/{endpoint}/code", "scoring_script": "score.py"},
                "settings": settings}
        response = self.owner.put(f"/batchEndpoints/{endpoint}/deployments/{deployment}", params={"set_default": True},
                                  json=body)
        assert response.status_code == 200, response.text


def invoke_body(uri: str, **properties: Any) -> dict[str, Any]:
    return {"properties": {"InputData": {"data": {"JobInputType": "UriFolder", "Uri": uri}}, **properties}}


@contextlib.contextmanager
def workspace(tmp_path: Path, **settings: Any) -> Iterator[InProc]:
    home = tmp_path / "home"
    app = create_app(Settings(home=home, **settings))
    with TestClient(app, raise_server_exceptions=False) as owner:
        owner.headers["Authorization"] = f"Bearer {(home / 'owner.key').read_text().strip()}"
        yield InProc(home=home, owner=owner, ctx=app.state.ctx)
