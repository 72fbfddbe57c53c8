"""The Ray engine and its actors name a job's parts as its output writer does (``outputs/``
``part_name``), as the local pool's workers do: one spelling, so a writer with another part suffix
is written, stored, staged and assembled under one name on every engine (issue 20).

In process, with no Ray cluster: a ``RayWorker`` (the actor's class, called directly) scoring one
mini-batch of a local input, and the engine's ``_ActorTransport`` storing what an actor returned.
The writer's naming is changed (its ``part_suffix``) for each test, as a new format would.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.engines.ray_engine import _ActorTransport
from batchpoint.outputs import writer_for
from batchpoint.outputs.append_row import AppendRowWriter
from batchpoint.storage.base import StorageSpec
from batchpoint.worker import protocol
from batchpoint.worker.files import Fetcher
from batchpoint.worker.ray_actor import RayWorker

KEY = "00000003-0000"


@pytest.fixture(autouse=True)
def txt_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppendRowWriter, "part_suffix", ".txt")  # the writer names parts <key>.txt now
    assert writer_for("append_row").part_name(KEY) == f"{KEY}.txt"


class Names:
    """A scoring script's ``run()``: each file's name."""

    def run(self, files: list[str]) -> list[str]:
        return [Path(f).name for f in files]


def _actor(tmp_path: Path, **job: object) -> RayWorker:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("a")
    (inputs / "b.txt").write_text("b")
    actor = RayWorker()
    shutil.rmtree(actor.home)  # its folder in the test's instead of the machine's temporary folder
    actor.home = str(tmp_path / "actor")
    actor.log_path = tmp_path / "actor" / "worker.log"
    actor.job = {"name": "j", "worker_id": 0, "parts_dir": str(Path(actor.home) / "parts"), "output_action": "append_row",
                 "scorer": {}, **job}
    actor.sources = {"in": protocol.spec_to_dict(StorageSpec("local", {"path": str(inputs)}))}
    actor.fetcher = Fetcher(actor.sources)
    actor.scorer = Names()
    actor.log = logging.getLogger("test.ray_part_names")
    return actor


def _batch() -> dict:
    return protocol.batch(KEY, 3, 0, 1, 1, [{"source": "in", "path": "a.txt"}, {"source": "in", "path": "b.txt"}])


def test_an_actor_sends_back_the_part_its_writer_named(tmp_path: Path) -> None:
    actor = _actor(tmp_path)
    reply = actor.run(_batch())
    assert reply["error"] is None and reply["rows"] == 2
    assert reply["part"] == b"a.txt\nb.txt\n"
    assert list((Path(actor.home) / "parts").iterdir()) == []  # sent back, not left on the node


def test_an_actor_stages_the_part_on_a_remote_store_under_its_writers_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    actor = _actor(tmp_path, parts_store={"source": "out", "prefix": "azureml/j/parts"})
    actor.sources["out"] = protocol.spec_to_dict(StorageSpec("local", {"path": str(out)}))
    reply = actor.run(_batch())
    assert reply["error"] is None and reply["stored"] == f"azureml/j/parts/{KEY}.txt"
    assert (out / "azureml" / "j" / "parts" / f"{KEY}.txt").read_bytes() == b"a.txt\nb.txt\n"


def _transport(tmp_path: Path) -> _ActorTransport:
    job = EngineJob(name="j", workers=1, scorer={}, sources={}, policy=RetryPolicy(),
                    parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"))
    return _ActorTransport(SimpleNamespace(num_cpus=1.0, address="127.0.0.1:1"), job)  # type: ignore[arg-type]


def test_the_engine_stores_a_returned_part_under_its_writers_name(tmp_path: Path) -> None:
    transport = _transport(tmp_path)
    batch = MiniBatch(3, (FileRef("in", "a.txt"),))
    assert batch.key == KEY
    reply = {"type": "done", "key": KEY, "rows": 1, "error": None, "part": b"a.txt\n", "stored": None}
    assert transport.outcome(None, batch, reply) == (1, None, 0)  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [f"{KEY}.txt"]
    assert (tmp_path / "parts" / f"{KEY}.txt").read_bytes() == b"a.txt\n"


def test_a_part_staged_remotely_replaces_the_job_folders_part_of_its_writers_name(tmp_path: Path) -> None:
    transport = _transport(tmp_path)
    transport.job.parts_store = {"source": "out", "prefix": "azureml/j/parts"}
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / f"{KEY}.txt").write_text("from an earlier run on the local pool")  # assembly prefers this one
    reply = {"type": "done", "key": KEY, "rows": 1, "error": None, "part": None,
             "stored": f"azureml/j/parts/{KEY}.txt"}
    assert transport.outcome(None, MiniBatch(3, (FileRef("in", "a.txt"),)), reply) == (1, None, 0)  # type: ignore[arg-type]
    assert not (parts / f"{KEY}.txt").exists()
