"""What a finished job's output is made with is read from its plan (``jobs/plan.py``), not from its
``settings`` column: the plan is what the job was pinned to run with (issue 20)."""

from __future__ import annotations

from types import SimpleNamespace

from batchpoint.jobs.assembly import job_writer
from batchpoint.jobs.plan import JobPlan, OutputPlan, ScorerPlan


def _row(plan: dict | None, settings: dict) -> SimpleNamespace:
    return SimpleNamespace(name="j1", plan=plan, settings=settings, inputs={},
                           outputs={"score": {"path": "azureml://datastores/s/paths/o", "file_name": "p.csv"}},
                           output_datastore="s", output_folder="o", created_by="user:a")


def _plan(action: str) -> dict:
    return JobPlan(inputs=(), scorer=ScorerPlan(model=None, azureml_model_dir="m", model_dir="m"),
                   output=OutputPlan("azureml://datastores/s/paths/o", "s", "o", "p.csv", action)).to_json()


def test_the_output_writer_is_the_plans_even_when_the_settings_say_otherwise() -> None:
    assert job_writer(_row(_plan("summary_only"), {"output_action": "append_row"})).action == "summary_only"
    assert job_writer(_row(_plan("append_row"), {"output_action": "summary_only"})).action == "append_row"


def test_a_job_stored_before_plans_gets_the_writer_of_its_settings() -> None:
    assert job_writer(_row(None, {"output_action": "summary_only"})).action == "summary_only"
    assert job_writer(_row({"workers": 1}, {})).action == "append_row"
