"""Issue 18 §2: an invoke cannot set the environment variables that steer the workers' own traffic,
trust, credentials or interpreter (``jobs/submit.py`` ``RESERVED_VARIABLES``), whoever invokes.

Before the fix ``{"HTTP_PROXY": "http://127.0.0.1:18999", "NO_PROXY": ""}`` at invoke was accepted
and the workers sent their blob GETs, with the container SAS, to that listener. The deployment's
own variables may still set them, and an invoke's variables add to the deployment's, never drop them.
"""

from __future__ import annotations

import pytest

from fixtures.inproc import invoke_body, workspace

ENDPOINT = "envvars"
DATA = "azureml://datastores/workspaceblobstore/paths/envvars-data"

#: (variable as the caller spells it) — each must be refused for every role
REFUSED = ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "NO_PROXY", "no_proxy", "FTP_PROXY", "REQUESTS_CA_BUNDLE",
           "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "SSLKEYLOGFILE", "AZURE_CLIENT_SECRET",
           "AZURE_STORAGE_CONNECTION_STRING", "AWS_ACCESS_KEY_ID", "AWS_CA_BUNDLE", "AZUREML_BI_OUTPUT_PATH",
           "MSI_ENDPOINT", "IDENTITY_ENDPOINT", "BATCHPOINT_HOME", "RAY_ADDRESS", "PYTHONPATH", "PYTHONHOME",
           "PYTHONSTARTUP", "LD_PRELOAD", "LD_LIBRARY_PATH", "OPENSSL_CONF", "PATH"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with workspace(tmp_path_factory.mktemp("envvars")) as inproc:
        inproc.deploy(ENDPOINT, environment_variables={"HTTPS_PROXY": "http://proxy.example.com:3128",
                                                       "KEEP_ME": "deployment"})
        inproc.put_file("envvars-data/a.csv", b"x\n1\n")
        inproc.clients_by_role = {role: (inproc.owner if role == "Owner" else inproc.as_role(f"env-{role.lower()}", role, scope))
                                  for role, scope in (("Owner", "workspace"), ("Contributor", "workspace"),
                                                      ("Invoker", f"endpoint:{ENDPOINT}"))}
        yield inproc


@pytest.mark.parametrize("role", ["Owner", "Contributor", "Invoker"])
@pytest.mark.parametrize("variable", REFUSED)
def test_reserved_variable_refused_at_invoke(ws, role, variable):
    client = ws.clients_by_role[role]
    before = len(ws.owner.get("/jobs").json())
    body = invoke_body(DATA, Settings={"environment_variables": {variable: "http://127.0.0.1:18999", "OTHER": "1"}})
    response = client.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert f"environment variable {variable} cannot be set at invoke" in error["message"]
    assert "deployment's own settings.environment_variables" in error["message"]
    assert len(ws.owner.get("/jobs").json()) == before  # no job left behind


def test_report_proxy_pair_refused(ws):
    """The report's exact body, as the endpoint-scoped Invoker."""
    body = invoke_body(DATA, Settings={"environment_variables": {"HTTP_PROXY": "http://127.0.0.1:18999", "NO_PROXY": ""}})
    response = ws.clients_by_role["Invoker"].post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400 and "HTTP_PROXY" in response.json()["error"]["message"]
    assert "proxy" in response.json()["error"]["message"]


@pytest.mark.parametrize("variables", [{"BAD=NAME": "1"}, {"": "1"}, {"OK": "a\u0000b"}, {"OK": 5}])
def test_malformed_variables_refused(ws, variables):
    body = invoke_body(DATA, Settings={"environment_variables": variables})
    response = ws.clients_by_role["Invoker"].post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
    assert "environment variable" in response.json()["error"]["message"]


def test_ordinary_variables_accepted_and_added_to_the_deployments(ws):
    body = invoke_body(DATA, Settings={"environment_variables": {"LOG_LEVEL": "debug", "KEEP_ME": "invoke"}})
    response = ws.clients_by_role["Invoker"].post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 202, response.text
    job = ws.ctx.store.get_job(response.json()["name"])
    # the deployment's proxy stays; the invoke adds and changes only ordinary variables
    assert job.settings["environment_variables"] == {"HTTPS_PROXY": "http://proxy.example.com:3128",
                                                     "KEEP_ME": "invoke", "LOG_LEVEL": "debug"}


def test_deployment_may_set_reserved_variables(ws):
    """Whoever may change the deployment may set them (deployments/write): accepted there."""
    dep = ws.owner.get(f"/batchEndpoints/{ENDPOINT}/deployments/echo").json()
    assert dep["settings"]["environment_variables"]["HTTPS_PROXY"] == "http://proxy.example.com:3128"
