"""A warm worker's input links (engines/warm.py): the check that a link's target lies inside the
exchange folder's ``in/`` resolves a mini-batch's folder once instead of every file's path twice
(issue 24, tiny files). It must answer exactly as resolving the whole target does, also for ``..``
in the path, a ``..`` name and a folder that is a link out of ``in/`` (only the engine writes in ``in/``:
the worker has it read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpoint.engines.warm import WarmWorker


def _worker(exchange: Path) -> WarmWorker:
    return WarmWorker(id="w", key="k", deployment="e/d", exchange=exchange, boot_log=exchange / "boot.log", idle_s=1)


def _whole(exchange: Path, target: Path) -> bool:
    return target.resolve().is_relative_to((exchange / "in").resolve())


@pytest.fixture
def exchange(tmp_path: Path) -> Path:
    root = tmp_path / "exchange"
    (root / "in" / "data" / "1" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "in" / "data" / "1" / "out").symlink_to(tmp_path / "elsewhere")  # a planted link out of in/
    return root


TARGETS = ["data/1/a.csv", "data/1/sub/b.csv", "data/1/../../../x.csv", "data/1/..", "data/1/.", "data/1/out/c.csv",
           "data/2/new/d.csv", "data/1/sub/../../../../../etc/passwd", "../in/data/1/e.csv"]


@pytest.mark.parametrize("rel", TARGETS)
def test_the_folder_at_a_time_check_answers_as_resolving_the_whole_target(exchange: Path, rel: str) -> None:
    worker = _worker(exchange)
    target = exchange / "in" / rel
    assert worker._inside_in(target) == _whole(exchange, target)
    for other in TARGETS:  # asked again after others, and its folder remembered: the same answer
        worker._inside_in(exchange / "in" / other)
    assert worker._inside_in(target) == _whole(exchange, target)
    assert worker._inside_in(target.parent / "sibling.csv") == _whole(exchange, target.parent / "sibling.csv")


def test_a_file_in_a_folder_linked_out_of_in_is_refused(exchange: Path) -> None:
    worker = _worker(exchange)
    assert worker._inside_in(exchange / "in" / "data" / "1" / "a.csv")
    assert not worker._inside_in(exchange / "in" / "data" / "1" / "out" / "c.csv")
    assert not worker._inside_in(exchange / "in" / "data" / "1" / ".." / ".." / ".." / "x.csv")
