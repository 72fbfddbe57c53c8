"""Where a heart-bench mini-batch's time goes on the worker, in process, against the baseline's task.

    .venv/bin/python bench/profile_mini_batch.py [--rounds 30] [--files 10] [--parts DIR]

Needs bench/.data (made by ``bench/bench_heart.py``: heart-200x5000 and the MLflow model). In one
process, alternating round by round on the same 10 files (the first mini-batch of the bench):

* **baseline**: ``bench_heart._score`` (the hand-written ``ProcessPoolExecutor``'s task: read,
  predict, build the frame, ``to_csv`` to a string), timed whole;
* **batchpoint step**: the worker's real step, ``worker/loop.py _score``, fed a decoded ``batch``
  message (the local store's Fetcher, the MLflow scorer, the job's append_row writer into a parts
  folder, the log line to a file), its ``done`` frame encoded — timed whole, and
* **its split**, the same calls one by one: the batch frame decoded, fetch (the local store's
  checks), read CSVs, predict, build the frame (DataFrame per file, ``row``/``file`` columns,
  concat), write the part (open, rows formatted and written, close, rename: the worker does not
  fsync; the server's group commit does, timed separately as ``fsync`` here for reference), the log
  line, the done frame encoded.

Prints medians (and the spread) in milliseconds; ``--json`` writes them to a file. CPU clock by
default (``--clock wall`` for wall time): deterministic enough to compare versions of the code.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_heart  # noqa: E402 - the baseline's own task function

DATA = BENCH / ".data" / "heart-200x5000"
MODEL = BENCH / ".data" / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--parts", default=None, help="the parts folder's parent (default: a temporary folder "
                                                          "under bench/.data, the file system the bench writes to)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not (DATA.is_dir() and MODEL.is_dir()):
        raise SystemExit("bench/.data/heart-200x5000 and bench/.data/model are missing: run bench/bench_heart.py once")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    import pandas as pd

    from batchpoint.outputs import writer_for
    from batchpoint.scoring.readers import read_input
    from batchpoint.scoring.scorers import MlflowScorer
    from batchpoint.worker import loop, protocol
    from batchpoint.worker.files import Fetcher

    names = sorted(p.name for p in DATA.glob("*.csv"))[:args.files]
    bench_heart._load(str(MODEL))  # the baseline's model, loaded as its parent loads it
    scorer = MlflowScorer(str(MODEL))
    scorer.init()  # the worker's (batchpoint.scoring.mlflow_load)

    root = tempfile.mkdtemp(prefix="profile-mini-batch-", dir=args.parts or str(BENCH / ".data"))
    parts = os.path.join(root, "parts")
    logs = os.path.join(root, "worker.log")
    handler = logging.FileHandler(logs)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("batchpoint.worker")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    loop._redact_logs({})  # the worker's redacting filter, as serve() installs it
    source = {"kind": "local", "config": {"path": str(DATA)}, "credential": None}
    job = {"name": "profile", "worker_id": 0, "scorer": {"model_dir": str(MODEL)}, "sources": {"data": source},
           "parts_dir": parts, "output_action": "append_row"}
    fetcher = Fetcher(job["sources"], os.path.join(root, "tmp"))
    writer = writer_for("append_row")
    files = [{"source": "data", "path": name} for name in names]
    paths = [str(DATA / name) for name in names]

    times: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds * 1000)

    baseline_text = bench_heart._score(paths)[0]
    try:
        for i in range(args.rounds + 1):  # round 0: first calls, not counted
            warm = i > 0
            gc.collect()
            # the baseline's task
            t0 = clock()
            text, _, _ = bench_heart._score(paths)
            t1 = clock()
            if warm:
                note("baseline task", t1 - t0)

            # the worker's real step
            key = f"{i:08d}-0000"
            frame = protocol.encode(protocol.batch(key, i, 0, 1, 1, files))
            t0 = clock()
            message = protocol.decode(frame, peer="engine")
            reply = protocol.encode(loop._score(message, scorer, fetcher, job, log))
            t1 = clock()
            assert b'"error":null' in reply, reply
            if warm:
                note("batchpoint step", t1 - t0)
            part = os.path.join(parts, writer.part_name(key))
            if i == 1:
                with open(part) as f:
                    assert f.read() == baseline_text, "the part differs from the baseline's rows"
            os.unlink(part)

            # the step's pieces, one by one
            key = f"{i:08d}-0001"
            c = [clock()]
            message = protocol.decode(frame, peer="engine")
            c.append(clock())
            local = fetcher.fetch(message["files"], key)
            c.append(clock())
            datas = [read_input(p) for p in local]
            c.append(clock())
            predictions = [scorer.model.predict(d) for d in datas]
            c.append(clock())
            result = _frame(scorer, local, predictions, pd)
            c.append(clock())
            rows = writer.write_part(Path(parts), key, result)
            c.append(clock())
            log.info("mini-batch %s (%d files) scored: %d rows in %.3fs", key, len(local), rows, 0.2)
            c.append(clock())
            protocol.encode(protocol.done(key, rows, None))
            c.append(clock())
            fd = os.open(os.path.join(parts, writer.part_name(key)), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            c.append(clock())
            os.unlink(os.path.join(parts, writer.part_name(key)))
            if warm:
                for name, a, b in zip(("decode batch frame", "fetch (local checks)", "read CSVs", "predict",
                                       "build frame", "write part", "log line", "encode done frame", "(fsync, server)"),
                                      c, c[1:]):
                    note(name, b - a)
        # the part's write split: format rows to a string vs. write through the part's file
        for i in range(args.rounds):
            t0 = clock()
            result.to_csv(None, header=False, index=False, lineterminator="\n")
            t1 = clock()
            note("(to_csv to a str)", t1 - t0)
    finally:
        fetcher.close()
        shutil.rmtree(root, ignore_errors=True)

    report = {name: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)} for name, v in times.items()}
    split = sum(report[n]["median_ms"] for n in ("decode batch frame", "fetch (local checks)", "read CSVs", "predict",
                                                 "build frame", "write part", "log line", "encode done frame"))
    print(f"{args.files} files x 5,000 rows, {args.rounds} rounds, {args.clock} clock, ms (median, min-max):")
    for name, r in report.items():
        print(f"  {name:24s} {r['median_ms']:8.2f}  ({r['min_ms']:.2f}-{r['max_ms']:.2f})")
    print(f"  {'sum of the split':24s} {split:8.2f}")
    print(f"  step / baseline: {report['batchpoint step']['median_ms'] / report['baseline task']['median_ms']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def _frame(scorer, paths, predictions, pd):
    """The MLflow scorer's frame from predictions already made: ``scorers.file_rows`` per file, or
    (the code before it, for a worktree on PYTHONPATH) what ``MlflowScorer.run`` did then."""
    from batchpoint.scoring import scorers
    from batchpoint.scoring.output import mark_mlflow_rows

    if hasattr(scorers, "file_rows"):
        return mark_mlflow_rows(pd.concat([scorers.file_rows(path, p) for path, p in zip(paths, predictions)],
                                          ignore_index=True))
    _as_column = scorers._as_column
    frames = []
    for path, p in zip(paths, predictions):
        frame = pd.DataFrame({"prediction": _as_column(p)})
        frame.insert(0, "row", range(len(frame)))
        frame["file"] = os.path.basename(path)
        frames.append(frame)
    return mark_mlflow_rows(pd.concat(frames, ignore_index=True))


if __name__ == "__main__":
    main()
