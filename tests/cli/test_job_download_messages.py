"""``job download`` and ``job cancel`` say what happened (issue: what a new user hits, items 9, 12).

Reproduces: ``job download`` on a failed, canceled or ``summary_only`` job printed a blank line and
exited 0; ``job cancel`` on a finished job returned 0 with no word. The CLI runs in this process
(``cli_inproc``, ``fixtures/inproc_cli.py``); the jobs on the session server.
"""

from __future__ import annotations

import pytest

from batchpoint import BatchDeployment, CodeConfiguration, Data, Input
from conftest import HEART_UNLABELED, deploy_heart, wait_job
from fixtures.flows import write_script

ENDPOINT = "download-msg"
SLOW = '''
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    return [os.path.basename(f) for f in mini_batch]
'''


@pytest.fixture(scope="module")
def setup(ml_client, heart_model_dir, tmp_path_factory):
    deploy_heart(ml_client, ENDPOINT, heart_model_dir, mini_batch_size=4)
    code = write_script(tmp_path_factory.mktemp("slow-code"), SLOW)
    # 'slow' holds its only mini-batch long past the cancel: a canceled job of it never has a partial output
    for name, settings, variables in (("slow", {"output_action": "append_row"}, {"SLEEP_S": "120"}),
                                      ("summary", {"output_action": "summary_only"}, {})):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest",
            code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
            environment_variables=variables, settings={"mini_batch_size": 4, **settings})).result()
    strict = tmp_path_factory.mktemp("strict") / "data"
    strict.mkdir()
    (strict / "notes.txt").write_text("not a table\n")
    good = ml_client.data.create_or_update(Data(name="download-msg", path=str(HEART_UNLABELED), type="uri_folder"))
    bad = ml_client.data.create_or_update(Data(name="download-msg-bad", path=str(strict), type="uri_folder"))
    return good, bad


def _run(cli_inproc, *args):
    return cli_inproc(*args, check=False)


def test_download_of_a_completed_job_names_what_came(cli_inproc, ml_client, setup, tmp_path):
    good, _ = setup
    job = wait_job(ml_client, ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=good.id)).name)
    result = _run(cli_inproc, "job", "download", "-n", job.name, "--download-path", str(tmp_path))
    assert result.code == 0 and result.out.strip().endswith("predictions.csv")
    assert "downloaded 1 file(s)" in result.err


@pytest.mark.parametrize("case", ["failed", "canceled", "summary_only"])
def test_download_says_why_there_is_nothing(cli_inproc, ml_client, setup, tmp_path, case):
    good, bad = setup
    if case == "failed":
        name = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=bad.id),
                                                error_threshold=0).name
        says = "failed ("
    elif case == "canceled":
        name = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="slow", input=Input(path=good.id)).name
        cli_inproc("job", "cancel", "-n", name)
        says = "was canceled"
    else:
        name = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="summary",
                                                input=Input(path=good.id)).name
        says = "summary_only"
    wait_job(ml_client, name)
    result = _run(cli_inproc, "job", "download", "-n", name, "--download-path", str(tmp_path))
    assert result.code == 1, (result.out, result.err)
    if case == "failed":  # its files failed: the errors file naming them comes, the predictions do not
        assert result.out.strip().endswith("errors.jsonl") and "only the job's errors file came" in result.err
        assert says in result.err, result.err
    else:
        assert result.out.strip() == "" and "nothing downloaded" in result.err and says in result.err, result.err
    assert "Traceback" not in result.err


def test_cancel_of_a_finished_job_says_so(cli_inproc, ml_client, setup):
    good, _ = setup
    job = wait_job(ml_client, ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=good.id)).name)
    result = _run(cli_inproc, "job", "cancel", "-n", job.name, "--query", "status", "-o", "tsv")
    assert result.code == 1 and result.out.strip() == "Completed"
    assert "had already ended (Completed): nothing was canceled" in result.err
