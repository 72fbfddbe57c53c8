"""The README's SDK and REST snippets as written (issue 23 §4, §5.10): the owner key is read from
``$BATCHPOINT_HOME`` (not always ``~/.batchpoint``); a key whose only role is Invoker of one endpoint
lists that endpoint (not a 403, not the others), is refused ``data.get`` naming what it needs, as
the README says, and invokes with the asset's reference instead — the README's way for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import HEART_UNLABELED, deploy_heart, record_secret
from batchpoint import AssetTypes, BatchEndpoint, Data
from fixtures.flows import unique

SNIPPET = """
import json, sys
from batchpoint import AssetTypes, Input, MLClient

ml_client = MLClient()
seen = {"endpoints": [e.name for e in ml_client.batch_endpoints.list()]}
try:
    ml_client.data.get(name="heart-dataset-unlabeled", label="latest")
except Exception as exc:
    seen["data_get"] = str(exc)
job = ml_client.batch_endpoints.invoke(
    endpoint_name=sys.argv[1],
    input=Input(type=AssetTypes.URI_FOLDER, path="azureml:heart-dataset-unlabeled@latest"),
)
seen["status"] = ml_client.jobs.stream(job.name, out=None).status
print(json.dumps(seen))
"""


def test_an_endpoint_invoker_follows_the_readme(server: Any, ml_client: Any, heart_model_dir: Path) -> None:
    endpoint, other = unique("readme"), unique("readme-other")
    deploy_heart(ml_client, endpoint, heart_model_dir, mini_batch_size=2)
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=other)).result()
    ml_client.data.create_or_update(Data(name="heart-dataset-unlabeled", type=AssetTypes.URI_FOLDER,
                                         path=str(HEART_UNLABELED)))
    who = f"user:{unique('invoker')}"
    ml_client.principals.create(who)
    ml_client.role_assignments.create(who, "Invoker", f"endpoint:{endpoint}")
    key = record_secret(ml_client.principals.create_key(who)["key"])
    env = {**server.env, "BATCHPOINT_SERVER_URL": server.url, "BATCHPOINT_API_KEY": key}
    done = subprocess.run([sys.executable, "-c", SNIPPET, endpoint], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["endpoints"] == [endpoint], seen
    assert "assets/read" in seen["data_get"], seen  # what the README says they need
    assert seen["status"] == "Completed", seen
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert 'path="azureml:heart-dataset-unlabeled@latest")` (invoke resolves it)' in " ".join(readme.split())


def test_the_readme_reads_the_owner_key_from_batchpoint_home(server: Any) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(row for row in readme.splitlines() if row.startswith("KEY=$(cat "))
    shown = subprocess.run(["bash", "-c", line + '; printf %s "$KEY"'], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "BATCHPOINT_HOME": str(server.home)},
                           timeout=30)
    assert shown.returncode == 0 and shown.stdout == (server.home / "owner.key").read_text().strip(), shown.stderr
