"""A job's output action travels to its workers by name, and the workers pick the writer from the
``outputs/`` registry (issue 20, "the action as an output-writer strategy"): a new output format is
a writer and its registry line — no flag through the runner, the engines and the worker protocol.

In process, with no Ray cluster and no worker process (a writer registered by a test exists only
in this process): the worker's scoring step (``worker/loop.py _score``), a Ray actor's
(``RayWorker``, called directly) and the Ray engine's store of what an actor returned, each given
only the job's ``output_action``. The conformance suite (``tests/engines/conformance.py``) runs
the built-in ``summary_only`` through every engine's real workers.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest

from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.engines.ray_engine import _ActorTransport
from batchpoint.outputs import PartFileWriter, register, registry
from batchpoint.storage.base import StorageSpec
from batchpoint.worker import loop, protocol
from batchpoint.worker.files import Fetcher
from batchpoint.worker.ray_actor import RayWorker

KEY = "00000002-0000"
ACTION = "json_lines_test"


class JsonLinesWriter(PartFileWriter):
    """A format no flag knows: each row a JSON line, parts ``<key>.jsonl``."""

    action = ACTION
    part_suffix = ".jsonl"

    def write_rows(self, result: Any, out: IO[bytes]) -> int:
        for item in result:
            out.write(json.dumps({"row": item}).encode() + b"\n")
        return len(result)

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        for src in parts:
            out.write(src.read())


@pytest.fixture(autouse=True)
def json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "WRITERS", dict(registry.WRITERS))  # registered for this test only
    register(JsonLinesWriter())


class Names:
    """A scoring script's ``run()``: each file's name."""

    def run(self, files: list[str]) -> list[str]:
        return [Path(f).name for f in files]


def _inputs(tmp_path: Path) -> dict[str, Any]:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.txt", "b.txt"):
        (inputs / name).write_text(name)
    return {"in": protocol.spec_to_dict(StorageSpec("local", {"path": str(inputs)}))}


def _config(parts: Path, sources: dict[str, Any], action: str = ACTION) -> dict[str, Any]:
    return protocol.job_config(name="j", worker_id=0, scorer={}, sources=sources, parts_dir=str(parts),
                               logs_dir=str(parts.parent / "logs"), output_action=action, logging_level="info",
                               environment={})


def _batch() -> dict[str, Any]:
    return protocol.batch(KEY, 2, 0, 1, 1, [{"source": "in", "path": "a.txt"}, {"source": "in", "path": "b.txt"}])


ROWS = b'{"row": "a.txt"}\n{"row": "b.txt"}\n'


def test_the_start_message_names_the_action_and_no_flag() -> None:
    config = _config(Path("/j/parts"), {})
    assert config["output_action"] == ACTION and "write_rows" not in config
    assert protocol.decode(protocol.encode(protocol.start(config)))["job"]["output_action"] == ACTION


def test_a_worker_writes_the_part_with_the_writer_its_action_names(tmp_path: Path) -> None:
    sources = _inputs(tmp_path)
    job = _config(tmp_path / "job" / "parts", sources)
    fetcher = Fetcher(sources, str(tmp_path / "scratch"))
    try:
        reply = loop._score(_batch(), Names(), fetcher, job, logging.getLogger("test.output_action"))
    finally:
        fetcher.close()
    assert reply["error"] is None and reply["rows"] == 2
    assert sorted(p.name for p in (tmp_path / "job" / "parts").iterdir()) == [f"{KEY}.jsonl"]
    assert (tmp_path / "job" / "parts" / f"{KEY}.jsonl").read_bytes() == ROWS


def test_a_ray_actor_writes_and_returns_the_part_of_its_jobs_action(tmp_path: Path) -> None:
    actor = RayWorker()
    shutil.rmtree(actor.home)  # its folder in the test's instead of the machine's temporary folder
    actor.home, actor.log_path = str(tmp_path / "actor"), tmp_path / "actor" / "worker.log"
    actor.sources = _inputs(tmp_path)
    actor.job = _config(tmp_path / "actor" / "parts", actor.sources)
    actor.fetcher, actor.scorer = Fetcher(actor.sources), Names()
    actor.log = logging.getLogger("test.output_action")
    reply = actor.run(_batch())
    assert reply["error"] is None and reply["rows"] == 2 and reply["part"] == ROWS
    # the next job of a warm actor: another action, by name
    actor.job.update(output_action="summary_only")
    reply = actor.run(_batch())
    assert reply["error"] is None and reply["rows"] == 2 and reply["part"] is None


def test_the_ray_engine_stores_an_actors_part_for_the_jobs_action(tmp_path: Path) -> None:
    job = EngineJob(name="j", workers=1, scorer={}, sources={}, policy=RetryPolicy(),
                    parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"), output_action=ACTION)
    assert isinstance(job.writer(), JsonLinesWriter)
    transport = _ActorTransport(SimpleNamespace(num_cpus=1.0, address="127.0.0.1:1"), job)  # type: ignore[arg-type]
    reply = {"type": "done", "key": KEY, "rows": 2, "error": None, "part": ROWS, "stored": None}
    assert transport.outcome(None, MiniBatch(2, (FileRef("in", "a.txt"),)), reply) == (2, None, 0)  # type: ignore[arg-type]
    assert (tmp_path / "parts" / f"{KEY}.jsonl").read_bytes() == ROWS
