"""The output writers (``batchpoint.outputs``): each action's rows → part → assembled output, the
registry, and a writer registered by a test used end to end by the job's assembly."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pytest

from batchpoint.exceptions import ValidationError
from batchpoint.jobs import lifecycle
from batchpoint.jobs.assembly import finished_parts, keep_partial_output, write_output, write_partial_output
from batchpoint.jobs.folder import JobFolder
from batchpoint.outputs import PartFileWriter, register, registry, worker_writer, writer_for
from batchpoint.outputs.rows import mark_mlflow_rows
from batchpoint.worker.errors import StepFailure
from batchpoint.worker.files import write_part
from batchpoint.workspace import WorkspaceService
from tests.outputs.conftest import make_job, output_file, score

SRC = Path(__file__).resolve().parents[2] / "src" / "batchpoint"


def _parts_dir(ws: WorkspaceService, name: str) -> Path:
    return Path(JobFolder.local(ws.settings.jobs_dir, name).parts_dir)


def test_append_row_rows_become_a_part_and_parts_the_predictions_file(ws: WorkspaceService) -> None:
    make_job(ws, "j", "append_row")
    frame = pd.DataFrame({"id": [1, 2], "label": ["a b", "c"]})
    rows = score(ws, "j", "append_row", {
        1: frame,  # a script's DataFrame: space-separated, quoted where it holds a space
        0: ["x", b"y", 3],  # list items as their text, one line each
        2: mark_mlflow_rows(pd.DataFrame({"row": [0], "prediction": [1], "file": ["f.csv"]})),
    })
    assert rows == 6
    parts = _parts_dir(ws, "j")
    assert (parts / "00000000-0000.csv").read_bytes() == b"x\ny\n3\n"
    assert (parts / "00000001-0000.csv").read_bytes() == b'1 "a b"\n2 c\n'
    assert sorted(p.name for p in parts.iterdir()) == ["00000000-0000.csv", "00000001-0000.csv",
                                                       "00000002-0000.csv"]  # no temporary left
    write_output(ws, ws.store.get_job("j"), parts)
    assert output_file(ws, "j").read_bytes() == b'x\ny\n3\n1 "a b"\n2 c\n0,1,f.csv\n'  # mini-batch order


def test_append_row_assembles_only_the_parts_the_done_log_names(ws: WorkspaceService) -> None:
    make_job(ws, "j", "append_row")
    score(ws, "j", "append_row", {0: ["kept"]})
    writer_for("append_row").write_part(_parts_dir(ws, "j"), "00000001-0000", ["superseded attempt"])
    write_output(ws, ws.store.get_job("j"), _parts_dir(ws, "j"))
    assert output_file(ws, "j").read_bytes() == b"kept\n"


def test_summary_only_counts_rows_and_writes_no_part_and_no_output(ws: WorkspaceService) -> None:
    make_job(ws, "s", "summary_only", file_name=None)
    writer = writer_for("summary_only")
    assert writer.writes_parts is False
    assert score(ws, "s", "summary_only", {0: pd.DataFrame({"a": [1, 2, 3]}), 1: ["p", "q"], 2: None}) == 5
    parts = _parts_dir(ws, "s")
    assert not parts.exists() or not any(parts.iterdir())
    job = ws.store.get_job("s")
    write_output(ws, job, parts)
    out = output_file(ws, "s").parent
    assert not out.exists() or not any(out.iterdir())
    assert finished_parts(JobFolder.local(ws.settings.jobs_dir, "s"), writer=writer) == []
    # canceled: a summary_only job keeps no partial output either (it has no rows)
    assert lifecycle.transition(ws.store, "s", lifecycle.JobStatus.CANCELED, "canceled")
    assert write_partial_output(ws, "s") is False


def test_a_registry_miss_names_the_valid_actions() -> None:
    with pytest.raises(ValidationError) as caught:
        writer_for("parquet")
    message = str(caught.value)
    assert "unknown output action 'parquet'" in message
    assert "valid actions: append_row, summary_only" in message


def test_workers_pick_the_writer_from_their_start_message() -> None:
    assert worker_writer({"output_action": "summary_only"}).action == "summary_only"
    assert worker_writer({"output_action": "append_row"}).action == "append_row"
    assert worker_writer({}).action == "append_row"  # the default action
    # the action is the writer's name, never a flag: the old write_rows flag chooses nothing
    assert worker_writer({"write_rows": False}).action == "append_row"
    with pytest.raises(ValidationError, match="unknown output action 'parquet'; valid actions: append_row, summary_only"):
        worker_writer({"output_action": "parquet"})


def test_a_part_write_that_fails_on_disk_is_a_platform_failure_naming_the_part(tmp_path: Path) -> None:
    blocker = tmp_path / "job"
    blocker.write_text("a file where the job folder should be")
    with pytest.raises(StepFailure) as caught:
        write_part(blocker / "parts", "00000004-0000", ["x"])
    assert caught.value.failure_kind == "platform"
    assert "could not write the rows of mini-batch 00000004-0000" in str(caught.value)
    assert "00000004-0000.csv" in str(caught.value)


def test_a_part_is_written_whole_into_a_folder_made_for_it_or_not_at_all(tmp_path: Path) -> None:
    parts = tmp_path / "job" / "parts"  # not made yet: the first part of a job makes it
    assert write_part(parts, "00000000-0000", ["a", "b"]) == 2
    assert (parts / "00000000-0000.csv").read_bytes() == b"a\nb\n"

    class Unwritable:
        def __iter__(self):
            yield "half"
            raise ValueError("not a row")

    with pytest.raises(ValueError, match="not a row"):  # the result's own error (the user's), as it was
        write_part(parts, "00000001-0000", Unwritable())
    assert sorted(p.name for p in parts.iterdir()) == ["00000000-0000.csv"]  # no part, no temporary left


class JsonArrayWriter(PartFileWriter):
    """A format a later issue might add: each part JSON lines, the output one JSON array."""

    action = "json_array_test"
    part_suffix = ".jsonl"

    def write_rows(self, result: Any, out: IO[bytes]) -> int:
        for item in result:
            out.write(json.dumps(item).encode() + b"\n")
        return len(result)

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        rows = [json.loads(line) for src in parts for line in src.read().splitlines()]
        out.write(json.dumps(rows).encode())


@pytest.fixture
def json_writer(monkeypatch: pytest.MonkeyPatch) -> JsonArrayWriter:
    monkeypatch.setattr(registry, "WRITERS", dict(registry.WRITERS))  # registered for this test only
    writer = JsonArrayWriter()
    assert register(writer) is writer
    return writer


def test_a_registered_writer_is_used_end_to_end_by_assembly(ws: WorkspaceService, json_writer: JsonArrayWriter) -> None:
    assert writer_for("json_array_test") is json_writer
    assert "json_array_test" in str(pytest.raises(ValidationError, writer_for, "nope").value)
    make_job(ws, "k", "json_array_test", file_name="rows.json")
    worker_side = worker_writer({"output_action": "json_array_test"})
    assert write_part(_parts_dir(ws, "k"), "00000009-0000", [{"never": "named"}], worker_side) == 1
    score(ws, "k", "json_array_test", {1: [{"v": 3}], 0: [{"v": 1}, {"v": 2}]})
    assert (_parts_dir(ws, "k") / "00000000-0000.jsonl").read_bytes() == b'{"v": 1}\n{"v": 2}\n'
    write_output(ws, ws.store.get_job("k"), _parts_dir(ws, "k"))
    assert output_file(ws, "k", "rows.json").read_bytes() == b'[{"v": 1}, {"v": 2}, {"v": 3}]'


def test_a_registered_writer_gives_a_failed_job_its_partial_output(ws: WorkspaceService,
                                                                   json_writer: JsonArrayWriter) -> None:
    make_job(ws, "f", "json_array_test", file_name="rows.json")
    score(ws, "f", "json_array_test", {0: [{"v": 1}]})
    lifecycle.fail(ws.store, "f", "error_threshold passed", {"code": "UserError"})
    assert keep_partial_output(ws, "f") is True
    assert output_file(ws, "f", "rows.json").read_bytes() == b'[{"v": 1}]'
    marker = json.loads(output_file(ws, "f", "_PARTIAL.json").read_text())
    assert (marker["partial"], marker["status"], marker["mini_batches_completed"]) == (True, "Failed", 1)
    assert ws.store.get_job("f").outputs["score"]["partial"] is True


@pytest.mark.parametrize("module", ["jobs/assembly.py", "jobs/output.py", "jobs/output_target.py",
                                    "jobs/bi_output.py", "jobs/progress.py", "jobs/folder.py",
                                    "outputs/base.py", "outputs/parts.py", "outputs/registry.py",
                                    "outputs/rows.py", "outputs/append_row.py", "outputs/summary_only.py"])
def test_the_output_pipeline_imports_at_module_level_only(module: str) -> None:
    """No import inside a function: the circle assembly ↔ output once hid behind two of them
    (import-linter checks only module-level direction between packages, not within ``jobs``)."""
    tree = ast.parse((SRC / module).read_text())
    nested = [f"line {node.lineno}" for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert nested == [], f"{module} imports inside functions at {nested}"
