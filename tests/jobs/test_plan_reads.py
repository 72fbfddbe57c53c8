"""What a finished job's output is made with, and a rerun's chain (whose parts its output merges), are
read from its plan (``jobs/plan.py``), not from its ``settings`` column: the plan is what the job
was pinned to run with (issue 20)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

from batchpoint.jobs.assembly import job_writer, merge_chain
from batchpoint.jobs.plan import PLAN_VERSION, JobPlan, OutputPlan, RerunPlan, ScorerPlan


def _row(plan: dict | None, settings: dict, name: str = "j1") -> SimpleNamespace:
    return SimpleNamespace(name=name, plan=plan, settings=settings, inputs={},
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


# -- the rerun chain (plan version 2) ----------------------------------------------------------
def _rerun_plan(rerun: RerunPlan | None) -> dict:
    return dataclasses.replace(JobPlan.from_json(_plan("append_row")), rerun=rerun).to_json()


def test_a_rerun_chain_round_trips_in_the_plan_at_version_2() -> None:
    stored = json.loads(json.dumps(_rerun_plan(RerunPlan("first", True, 3, "first", finishes=False))))
    assert stored["version"] == PLAN_VERSION == 2
    assert stored["rerun"] == {"of": "first", "failed_only": True, "files": 3, "merge_with": "first",
                               "finishes": False}
    assert JobPlan.from_json(stored).rerun == RerunPlan("first", True, 3, "first", False)
    assert JobPlan.from_json(_rerun_plan(None)).rerun is None


def test_a_version_1_plan_gets_its_rerun_chain_from_the_settings_where_version_1_kept_it() -> None:
    v1 = {k: v for k, v in _plan("append_row").items() if k != "rerun"} | {"version": 1}
    settings = {"rerun": {"of": "a", "failed_only": False, "files": 2, "merge_with": None, "finishes": True}}
    plan = JobPlan.from_row(_row(v1, settings))
    assert plan.version == PLAN_VERSION and plan.rerun == RerunPlan("a", False, 2, None, True)
    assert plan.to_json()["rerun"]["finishes"] is True  # written back as version 2
    assert JobPlan.from_row(_row(v1, {})).rerun is None  # an invoked job
    legacy = JobPlan.from_row(_row({"workers": 1}, {"rerun": {"of": "b", "merge_with": "b", "failed_only": True}}))
    assert legacy.rerun == RerunPlan("b", True, 0, "b", False)


def test_the_merge_chain_follows_the_plans_rerun_not_the_settings() -> None:
    rows = {
        "first": _row(_rerun_plan(None), {}, "first"),
        "decoy": _row(_rerun_plan(None), {}, "decoy"),
        # the plan says it merges "first"; its settings (what clients are shown) say "decoy"
        "second": _row(_rerun_plan(RerunPlan("first", True, 1, "first")),
                       {"rerun": {"of": "decoy", "merge_with": "decoy"}}, "second"),
        "third": _row(_rerun_plan(RerunPlan("second", True, 1, "second")), {}, "third"),
    }
    ws = SimpleNamespace(store=SimpleNamespace(get_job=rows.__getitem__))
    assert [r.name for r in merge_chain(ws, rows["third"])] == ["first", "second", "third"]
    assert [r.name for r in merge_chain(ws, rows["first"])] == ["first"]
