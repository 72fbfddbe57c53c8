"""The local pool hands renewed credentials to running workers with their next mini-batch."""

from __future__ import annotations

import threading

from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.storage.base import StorageSpec
from fixtures.parts import outcome_text

SCRIPT = '''
def init():
    pass

def run(mini_batch):
    return [open(path).read().strip() for path in mini_batch]
'''


def test_workers_switch_to_renewed_sources(tmp_path):
    # two "generations" of the same source: files with the same names, different content
    for gen in ("v1", "v2"):
        (tmp_path / gen).mkdir()
        for i in range(6):
            (tmp_path / gen / f"f{i}.txt").write_text(gen)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCRIPT)
    calls = []

    def credentials():
        calls.append(1)
        version = 1 if len(calls) <= 3 else 2  # 2 spawns + first mini-batch see v1, later ones v2
        return version, {"in": StorageSpec("local", {"path": str(tmp_path / f"v{version}")})}

    job = EngineJob(name="renew", workers=2, scorer={"code_dir": str(tmp_path / "code"), "scoring_script": "score.py"},
                    sources={"in": StorageSpec("local", {"path": "/nonexistent"})}, policy=RetryPolicy(0, 30, -1),
                    parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"),
                    # a fenced worker sees the local folders bound when it started; here the renewed
                    # spec points at another folder, which is not what renewal does in practice
                    isolation={"mode": "none"})
    batches = iter([MiniBatch(i, (FileRef("in", f"f{i}.txt"),)) for i in range(6)])
    outcomes = []
    LocalPoolEngine().run(job, batches, outcomes.append, threading.Event(), credentials=credentials)
    assert all(o.ok for o in outcomes) and len(outcomes) == 6
    by_index = {o.batch.index: outcome_text(tmp_path / "parts", o) for o in outcomes}
    assert "v1" in by_index[0] and all("v2" in by_index[i] for i in range(1, 6))


LOGGING_SCRIPT = '''
import logging

def init():
    pass

def run(mini_batch):
    logging.getLogger("user").warning("held %s; sig=%s", "opaque-held-secret-0123456789", "c2lnbmF0dXJlLXNpZ25hdHVyZQ%3D")
    return ["ok" for _ in mini_batch]
'''


def test_worker_logs_mask_the_credentials_it_holds(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(LOGGING_SCRIPT)
    held = StorageSpec("local", {"path": str(tmp_path / "data")},
                       {"kind": "access_token", "token": "opaque-held-secret-0123456789"})
    job = EngineJob(name="redact", workers=1, scorer={"code_dir": str(tmp_path / "code"), "scoring_script": "score.py"},
                    sources={"in": held}, policy=RetryPolicy(0, 30, -1),
                    parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"))
    outcomes = []
    LocalPoolEngine().run(job, iter([MiniBatch(0, (FileRef("in", "a.txt"),))]), outcomes.append, threading.Event())
    assert outcomes and outcomes[0].ok, outcomes
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "held ***" in log and "opaque-held-secret" not in log
    assert "c2lnbmF0dXJl" not in log
