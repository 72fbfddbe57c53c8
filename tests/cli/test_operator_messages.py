"""What the CLI says when asked something it cannot do, and the documented lines it prints (issue 23
§5), each through the ``batchpoint`` CLI (its ``main``, in this process) against the session server: ``-o table``
leaves out the long ``id`` (as az); a too-short deployment name gets the rule in words;
``--input-type mltable`` is not offered and is refused with why; the instance-count limit names a
command that exists (run here); ``job cancel`` exits 0 on a job already Canceled and 1 on one that
Completed; ``role`` names DataWriter, which ``role assignment create`` takes; usage errors exit 2 and a
declined confirmation 130 (docs/cli.md); a missing ``postgres`` extra is one line naming the install
(a server process of its own: the import of the missing module is the point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_UNLABELED, deploy_heart, wait_job
from batchpoint import BatchDeployment, CodeConfiguration, Model
from fixtures.inproc_cli import run_cli
from fixtures.flows import unique, write_script, write_yaml

CLI = str(Path(sys.executable).parent / "batchpoint")


SLOW_PY = """
import os
import time

def init():
    pass

def run(mini_batch):
    time.sleep(3)
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The heart deployment ``mlflow`` (default) and ``slow`` (3 s a mini-batch: a job to cancel)."""
    name = unique("msgs")
    deploy_heart(ml_client, name, heart_model_dir, mini_batch_size=2)
    code = write_script(tmp_path_factory.mktemp("slow-code"), SLOW_PY)
    ml_client.models.create_or_update(Model(name="msgs-slow", type="custom_model", path=str(code)))
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="slow", endpoint_name=name, model="azureml:msgs-slow@latest", mini_batch_size=1,
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"))).result()
    return name


def raw(server: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``batchpoint ARGS`` with its exit code, stdout and stderr: the CLI's ``main`` run in this
    process (``fixtures/inproc_cli.py``), as the console script calls it."""
    code, out, err = run_cli({**server.env, "BATCHPOINT_SERVER_URL": server.url}, *args, stdin=stdin or "")
    return subprocess.CompletedProcess([CLI, *args], code, out, err)


def test_table_output_leaves_out_the_long_id(cli_inproc: Any, endpoint: str) -> None:
    table = cli_inproc("batch-endpoint", "list", "-o", "table").out.splitlines()
    assert "name" in table[0].split() and "id" not in table[0].split(), table[0]
    assert all("/subscriptions/" not in line for line in table)
    chosen = cli_inproc("batch-endpoint", "show", "-n", endpoint, "--query", "{id: id, name: name}", "-o", "table").out
    assert chosen.splitlines()[0].split() == ["id", "name"] and "/subscriptions/" in chosen  # asked for: shown


def test_a_short_deployment_name_gets_the_rule_in_words(server: Any, endpoint: str, tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "d.yml", {"name": "ab", "endpoint_name": endpoint,
                                           "model": "azureml:heart-classifier@latest"})
    done = raw(server, "batch-deployment", "create", "-f", str(spec))
    assert done.returncode == 1, (done.stdout, done.stderr)
    said = done.stderr
    assert "deployment name 'ab' is not valid" in said and "3 to 32 characters: a letter first" in said, said
    assert "[A-Za-z]" not in said and "Traceback" not in said, said


def test_mltable_is_not_offered_and_is_refused_with_why(server: Any, endpoint: str) -> None:
    shown = raw(server, "batch-endpoint", "invoke", "--help").stdout
    assert "[uri_folder|uri_file]" in shown and "mltable" not in shown, shown
    done = raw(server, "batch-endpoint", "invoke", "-n", endpoint, "--input", str(HEART_UNLABELED),
               "--input-type", "mltable")
    assert done.returncode == 1 and "MLTable inputs are not supported" in done.stderr, done.stderr
    assert "uri_folder" in done.stderr


def test_the_instance_count_limit_names_a_command_that_works(server: Any, ml_client: Any, endpoint: str) -> None:
    refused = raw(server, "batch-endpoint", "invoke", "-n", endpoint, "--input", str(HEART_UNLABELED),
                  "--instance-count", "2")
    assert refused.returncode == 1 and "compute update" not in refused.stderr, refused.stderr
    assert "batchpoint batch-deployment update -n <deployment> -e <endpoint> --set resources.instance_count=N" \
        in refused.stderr, refused.stderr
    updated = raw(server, "batch-deployment", "update", "-n", "mlflow", "-e", endpoint, "--set",
                  "resources.instance_count=2")  # the command the message names
    assert updated.returncode == 0, updated.stderr
    job = raw(server, "batch-endpoint", "invoke", "-n", endpoint, "--input", str(HEART_UNLABELED),
              "--instance-count", "2", "--query", "name", "-o", "tsv")
    assert job.returncode == 0, job.stderr
    assert wait_job(ml_client, job.stdout.strip()).status == "Completed"


def test_job_cancel_exit_codes_are_as_its_help_says(server: Any, ml_client: Any, endpoint: str) -> None:
    helptext = raw(server, "job", "cancel", "--help").stdout
    assert "Exit code 0 when it is Canceled (now, or already before)" in helptext, helptext
    done = ml_client.batch_endpoints.invoke(endpoint_name=endpoint, input=str(HEART_UNLABELED)).name
    assert wait_job(ml_client, done).status == "Completed"
    ended = raw(server, "job", "cancel", "-n", done)
    assert ended.returncode == 1 and "had already ended (Completed)" in ended.stderr, ended.stderr
    canceled = ml_client.batch_endpoints.invoke(endpoint_name=endpoint, deployment_name="slow",
                                                input=str(HEART_UNLABELED)).name
    assert raw(server, "job", "cancel", "-n", canceled).returncode == 0
    assert wait_job(ml_client, canceled).status == "Canceled"
    again = raw(server, "job", "cancel", "-n", canceled)
    assert again.returncode == 0, again.stderr  # already Canceled: 0, as the help says


def test_role_help_names_datawriter_which_works(server: Any, ml_client: Any) -> None:
    assert "DataWriter" in raw(server, "role", "--help").stdout
    ml_client.principals.create("user:msg-writer")
    made = raw(server, "role", "assignment", "create", "--role", "DataWriter", "--assignee", "user:msg-writer")
    assert made.returncode == 0, made.stderr


def test_usage_errors_exit_2_and_a_declined_confirmation_130(server: Any, endpoint: str) -> None:
    intro = " ".join((Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text().split())
    assert "a usage error" in intro and "exits 2" in intro and "exits 130" in intro
    usage = raw(server, "job", "show")  # -n is required
    assert usage.returncode == 2 and "Usage:" in usage.stderr, usage.stderr
    declined = raw(server, "batch-endpoint", "delete", "-n", endpoint, stdin="n\n")
    assert declined.returncode == 130 and "Aborted." in declined.stderr, (declined.returncode, declined.stderr)
    assert raw(server, "batch-endpoint", "show", "-n", endpoint).returncode == 0  # still there


def test_a_missing_postgres_extra_is_one_line_naming_the_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['psycopg'] = None; sys.argv = ['batchpoint.server', '--home', sys.argv[1]]; "
            "from batchpoint.server.__main__ import main; main()")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHPOINT_")},
           "BATCHPOINT_DATABASE_URL": "postgresql+psycopg://bp:secret@127.0.0.1:9/bp"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'batchpoint[postgres]'" in lines[0] and "secret" not in lines[0], lines[0]
