"""A warm-capable fenced Ray actor (``worker/ray_actor.py``) links a mini-batch's files of a local
store into its read-only ``in/`` at their paths in the store, once per job, as the local pool's warm
workers do (``engines/warm.py``; issue 24 §3): no folder made and removed per mini-batch. In
process, with no Ray cluster: the actor's class called directly (its worker process is not
started; ``_linked`` is what the actor sends it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from batchpoint.storage.base import StorageSpec
from batchpoint.worker import protocol
from batchpoint.worker.ray_actor import RayWorker


def _actor(tmp_path: Path, store: Path) -> RayWorker:
    actor = RayWorker()
    shutil.rmtree(actor.home)
    actor.home = str(tmp_path / "actor")
    (Path(actor.home) / "in").mkdir(parents=True)
    actor.warm_key, actor.isolation = "key", {"mode": "bwrap"}  # a warm-capable fenced actor: it links
    actor.sources = {"data": protocol.spec_to_dict(StorageSpec("local", {"path": str(store)}))}
    return actor


def _batch(key: str, *paths: str) -> dict:
    return {"type": "batch", "key": key, "files": [{"source": "data", "path": p} for p in paths], "sources": None}


def test_a_warm_actor_links_each_file_at_its_store_path_once_per_job(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "d0").mkdir(parents=True)
    for i in range(4):
        (store / "d0" / f"f{i}.csv").write_text(f"x\n{i}\n")
    (tmp_path / "outside.csv").write_text("secret\n")
    actor = _actor(tmp_path, store)
    first = actor._linked(_batch("k0", "d0/f0.csv", "d0/f1.csv"))
    second = actor._linked(_batch("k1", "d0/f2.csv", "d0/f3.csv", "../outside.csv"))
    again = actor._linked(_batch("k1", "d0/f2.csv"))  # a retry: its link is there already
    given = [f["path"] for m in (first, second, again) for f in m["files"]]
    assert given == ["d0/f0.csv", "d0/f1.csv", "d0/f2.csv", "d0/f3.csv", "../outside.csv", "d0/f2.csv"]
    inputs = Path(actor.home) / "in" / "data"
    assert sorted(p.name for p in inputs.iterdir()) == ["d0"], "a folder per mini-batch was made"
    assert all((inputs / "d0" / f"f{i}.csv").stat().st_ino == (store / "d0" / f"f{i}.csv").stat().st_ino
               for i in range(4))
    assert not (Path(actor.home) / "in" / "outside.csv").exists()  # a path out of the store: not linked
    assert not any(p.is_file() and p.read_text() == "secret\n" for p in (Path(actor.home) / "in").rglob("*"))
