"""Batchpoint against a hand-written multiprocessing baseline, on the heart classifier.

    .venv/bin/python bench/bench_heart.py [--files 200] [--rows 5000] [--repeat 1]

1. Data: ``--files`` CSV files of ``--rows`` rows each, sampled with replacement (seeded) from
   examples/heart/data, written once to bench/.data/heart-<files>x<rows>/ and reused.
2. Model: examples/heart/train.py (OneHotEncoder on ``thal`` + GradientBoostingClassifier),
   saved as an MLflow model in bench/.data/model.
3. Baseline (a separate process, so its memory is its own): ``ProcessPoolExecutor(os.cpu_count())``
   whose workers load the MLflow model once; each task reads ``--baseline-files-per-task`` files
   with pandas, predicts, and returns ``row,prediction,file`` rows; the parent writes them to one CSV.
   Timed from creating the pool to the CSV being written.
4. Batchpoint: a server of its own (``python -m batchpoint.server``, BATCHPOINT_HOME
   bench/.data/home); a local data store on the same data folder (files are read in place, as the
   baseline reads them); model, data asset, endpoint and deployment (instance_count 1,
   max_concurrency_per_instance = cpu count, mini_batch_size 10); one warm-up invoke on one file;
   then invoke on all the files and poll until Completed. Timed on the client from the invoke call
   to seeing Completed.

Prints both times, the throughput ratio (baseline time / Batchpoint time; the issue's target is
>= 0.9), the time from invoke to the first scored mini-batch (server record and client-observed;
target < 0.5 s), peak RSS (VmHWM) of the server process and its workers against the baseline's
parent and workers, and where Batchpoint's time went (from the job record and the worker logs).
Checks that both wrote the same rows. Results are also saved to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXAMPLE = ROOT / "examples" / "heart"
DATA_ROOT = BENCH / ".data"
RESULTS = BENCH / "results"
ENDPOINT = "heart-bench"
DEPLOYMENT = "heart-bench-gbm"


def say(text: str = "") -> None:
    print(text, flush=True)


# ---- /proc helpers (Linux) ---------------------------------------------------------------------


def vm_hwm_kb(pid: int) -> int | None:
    """Peak resident set size of a live process, in KiB (``VmHWM`` in /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class TreeSampler:
    """Samples VmHWM of a process's descendants while a job runs (workers exit when it ends)."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root, self.interval = root, interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        pids: set[int] = set()
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 1.0:
                pids, last_scan = descendants(self.root), now
            for pid in pids:
                peak = vm_hwm_kb(pid)
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
            self._stop.wait(self.interval)


# ---- data and model -----------------------------------------------------------------------------


def make_data(files: int, rows: int, seed: int = 0) -> Path:
    """``files`` CSVs of ``rows`` rows sampled (with replacement) from the example's unlabeled data."""
    folder = DATA_ROOT / f"heart-{files}x{rows}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder
    import numpy as np
    import pandas as pd

    source = pd.concat([pd.read_csv(p) for p in sorted((EXAMPLE / "data").glob("*.csv"))], ignore_index=True)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(files - 1)))
    for i in range(files):
        sample = source.iloc[rng.integers(0, len(source), size=rows)]
        sample.to_csv(folder / f"heart-{i:0{width}d}.csv", index=False)
    marker.write_text(json.dumps({"files": files, "rows": rows, "seed": seed}))
    return folder


def train_model() -> Path:
    sys.path.insert(0, str(EXAMPLE))
    import logging

    from train import train  # examples/heart/train.py

    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    out, _ = train(out=DATA_ROOT / "model")
    return out


# ---- the baseline ---------------------------------------------------------------------------------

_model = None


def _load(model_dir: str) -> None:
    global _model
    import mlflow.pyfunc

    _model = mlflow.pyfunc.load_model(model_dir)


def _score(paths: list[str]) -> tuple[str, float]:
    import pandas as pd

    started = time.perf_counter()
    frames = []
    for path in paths:
        data = pd.read_csv(path)
        frame = pd.DataFrame({"row": range(len(data)), "prediction": _model.predict(data)})
        frame["file"] = os.path.basename(path)
        frames.append(frame)
    text = pd.concat(frames, ignore_index=True).to_csv(header=False, index=False, lineterminator="\n")
    return text, time.perf_counter() - started


def baseline_main(argv: list[str]) -> None:
    """``bench_heart.py _baseline MODEL DATA OUT WORKERS FILES_PER_TASK``: prints one JSON line."""
    from concurrent.futures import ProcessPoolExecutor

    model_dir, data_dir, out, workers, per_task = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    import mlflow.pyfunc  # noqa: F401 - imported before timing, as a real script would at its top
    import pandas  # noqa: F401

    files = sorted(str(p) for p in data_dir.glob("*.csv"))
    tasks = [files[i:i + per_task] for i in range(0, len(files), per_task)]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_load, initargs=(model_dir,)) as pool:
        futures = [pool.submit(_score, task) for task in tasks]
        task_seconds = []
        with open(out, "w") as handle:
            for future in futures:
                text, seconds = future.result()
                handle.write(text)
                task_seconds.append(seconds)
        elapsed = time.perf_counter() - started
        worker_peaks = [vm_hwm_kb(pid) or 0 for pid in pool._processes]  # noqa: SLF001 - measurement only
    print(json.dumps({"seconds": elapsed, "task_seconds": task_seconds, "tasks": len(tasks),
                      "driver_hwm_kb": vm_hwm_kb(os.getpid()), "worker_hwm_kb": worker_peaks}))


def run_baseline(model: Path, data: Path, workers: int, per_task: int) -> dict:
    out = DATA_ROOT / "baseline-predictions.csv"
    proc = subprocess.run([sys.executable, __file__, "_baseline", str(model), str(data), str(out), str(workers),
                           str(per_task)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the baseline failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["output"] = str(out)
    return result


# ---- Batchpoint -------------------------------------------------------------------------------------


class Server:
    def __init__(self, home: Path) -> None:
        import httpx

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        info = home / "server.json"
        info.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "BATCHPOINT_SERVER_URL"}
        env["BATCHPOINT_HOME"] = str(home)
        self.log = open(home / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "batchpoint.server", "--home", str(home)],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {home / 'server.log'}")
            try:
                meta = json.loads(info.read_text())
                if httpx.get(f"{meta['url']}/health", timeout=2).status_code == 200:
                    self.url, self.pid = meta["url"], int(meta["pid"])
                    return
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the server did not start in 60 s; see {home / 'server.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def setup_workspace(ml_client, model: Path, data: Path, workers: int, mini_batch_size: int) -> tuple[str, str]:
    """Register everything; returns (input for the timed job, input for the warm-up job)."""
    from batchpoint import BatchDeployment, BatchEndpoint, Data, Datastore, Model

    ml_client.datastores.create_or_update(Datastore(name="benchdata", type="local", path=str(data.parent)))
    registered = ml_client.models.create_or_update(Model(name="heart-bench", type="mlflow_model", path=str(model)))
    ml_client.data.create_or_update(Data(name="heart-bench-data", type="uri_folder",
                                         path=f"azureml://datastores/benchdata/paths/{data.name}"))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name=DEPLOYMENT, endpoint_name=ENDPOINT, model=f"azureml:heart-bench:{registered.version}",
        instance_count=1, max_concurrency_per_instance=workers, mini_batch_size=mini_batch_size,
        output_action="append_row", output_file_name="predictions.csv",
        retry_settings={"max_retries": 3, "timeout": 300}), set_default=True).result()
    first = sorted(data.glob("*.csv"))[0].name
    return "azureml:heart-bench-data@latest", f"azureml://datastores/benchdata/paths/{data.name}/{first}"


def invoke_and_wait(ml_client, path: str, kind: str, poll: float = 0.02) -> dict:
    from batchpoint import Input

    started = time.perf_counter()
    job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=kind, path=path))
    invoked = time.perf_counter()
    first_seen = None
    while job.status not in ("Completed", "Failed", "Canceled"):
        time.sleep(poll)
        job = ml_client.jobs.get(job.name)
        if first_seen is None and job.progress.mini_batches_completed > 0:
            first_seen = time.perf_counter()
    ended = time.perf_counter()
    if job.status != "Completed":
        raise SystemExit(f"job {job.name} ended {job.status}: {job.status_message}")
    return {"job": job, "seconds": ended - started, "invoke_call_s": invoked - started,
            "first_seen_s": (first_seen or ended) - started}


_WORKER_LINE = re.compile(r"^(\S+ \S+) INFO batchpoint\.worker: (.*)$")


def worker_log_profile(logs_dir: Path) -> dict:
    """What the worker logs say: when workers were ready, and time spent scoring mini-batches."""
    ready, done, busy = [], [], []
    for log in sorted(logs_dir.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = _WORKER_LINE.match(line)
            if not match:
                continue
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            text = match.group(2)
            if " ready (init took " in text:
                ready.append(at)
            elif (m := re.search(r"scored: \d+ rows in ([0-9.]+)s", text)):
                done.append(at)
                busy.append(float(m.group(1)))
    return {"ready": sorted(ready), "done": sorted(done), "busy_s": sum(busy), "batches": len(busy),
            "mean_batch_s": statistics.mean(busy) if busy else 0.0}


def run_batchpoint(ml_client, home: Path, path: str) -> dict:
    run = invoke_and_wait(ml_client, path, "uri_folder")
    job = run["job"]
    created = job.created_at.timestamp()
    logs = worker_log_profile(home / "jobs" / job.name / "logs")
    profile = {
        "invoke_call_s": run["invoke_call_s"],
        "queued_s": job.start_time.timestamp() - created,
        "first_worker_ready_s": (logs["ready"][0] - created) if logs["ready"] else None,
        "all_workers_ready_s": (logs["ready"][-1] - created) if logs["ready"] else None,
        "first_mini_batch_s": job.first_mini_batch_at.timestamp() - created,
        "listing_done_s": job.listing_completed_at.timestamp() - created if job.listing_completed_at else None,
        "last_mini_batch_s": (logs["done"][-1] - created) if logs["done"] else None,
        "end_s": job.end_time.timestamp() - created,
        "worker_busy_s": logs["busy_s"],
        "mini_batches": logs["batches"],
        "mean_mini_batch_s": logs["mean_batch_s"],
    }
    output = home / "datastores" / "workspaceblobstore" / "azureml" / job.name / "score" / "predictions.csv"
    return {"job": job.name, "seconds": run["seconds"], "first_seen_s": run["first_seen_s"],
            "first_mini_batch_s": profile["first_mini_batch_s"], "rows": job.progress.rows,
            "files": job.progress.files_completed, "profile": profile, "output": str(output)}


def same_rows(a: str, b: str) -> bool:
    with open(a) as fa, open(b) as fb:
        return Counter(fa) == Counter(fb)


# ---- report -----------------------------------------------------------------------------------------


def mib(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f} MiB"


def report(args, workers: int, baselines: list[dict], points: list[dict], server_hwm: int | None,
           server_workers: dict[int, int], identical: bool) -> dict:
    b_times = [b["seconds"] for b in baselines]
    p_times = [p["seconds"] for p in points]
    b_med, p_med = statistics.median(b_times), statistics.median(p_times)
    rows = args.files * args.rows
    ratio = b_med / p_med
    first_server = statistics.median(p["first_mini_batch_s"] for p in points)
    first_client = statistics.median(p["first_seen_s"] for p in points)
    b_driver = max(b["driver_hwm_kb"] or 0 for b in baselines)
    b_workers = [max(b["worker_hwm_kb"]) for b in baselines if b["worker_hwm_kb"]]
    bp_workers = sorted(server_workers.values())
    say()
    say(f"== heart: {args.files} files x {args.rows} rows = {rows:,} rows; {os.cpu_count()} CPUs; "
        f"{workers} workers; {args.repeat} repeat(s), medians shown")
    say(f"baseline (ProcessPoolExecutor, {args.baseline_files_per_task} files/task): {b_med:6.2f} s  "
        f"{rows / b_med:10,.0f} rows/s   runs: {', '.join(f'{t:.2f}' for t in b_times)}")
    say(f"batchpoint (invoke -> Completed)      : {p_med:6.2f} s  {rows / p_med:10,.0f} rows/s   "
        f"runs: {', '.join(f'{t:.2f}' for t in p_times)}")
    say(f"throughput ratio (baseline time / batchpoint time): {ratio:.2f}   target >= 0.90: "
        f"{'met' if ratio >= 0.9 else 'NOT met'}")
    say(f"invoke -> first scored mini-batch: {first_server:.3f} s (job record: first_mini_batch_at - created_at), "
        f"{first_client:.3f} s (seen by the client)   target < 0.5 s: {'met' if first_server < 0.5 else 'NOT met'}")
    say(f"peak RSS: server process {mib(server_hwm)} vs baseline parent {mib(b_driver)}; "
        f"per worker: batchpoint max {mib(max(bp_workers) if bp_workers else None)} "
        f"(forkserver + {len(bp_workers) - 1 if bp_workers else 0} workers seen) vs baseline max "
        f"{mib(max(b_workers) if b_workers else None)}")
    say(f"outputs: {'the same rows' if identical else 'DIFFERENT rows'} "
        f"({points[-1]['rows']:,} rows from {points[-1]['files']} files)")
    last = points[-1]["profile"]
    say("where Batchpoint's time went (last run, seconds after created_at):")
    for key in ("invoke_call_s", "queued_s", "first_worker_ready_s", "all_workers_ready_s", "first_mini_batch_s",
                "listing_done_s", "last_mini_batch_s", "end_s"):
        value = last.get(key)
        say(f"  {key:<22} {'n/a' if value is None else f'{value:.3f}'}")
    b_busy = sum(baselines[-1]["task_seconds"])
    say(f"  scoring work: batchpoint workers {last['worker_busy_s']:.2f} s over {last['mini_batches']} mini-batches "
        f"({last['mean_mini_batch_s'] * 1000:.0f} ms each) vs baseline tasks {b_busy:.2f} s over "
        f"{baselines[-1]['tasks']} tasks ({b_busy / baselines[-1]['tasks'] * 1000:.0f} ms each)")
    return {"files": args.files, "rows_per_file": args.rows, "cpus": os.cpu_count(), "workers": workers,
            "baseline_files_per_task": args.baseline_files_per_task, "mini_batch_size": args.mini_batch_size,
            "baseline": baselines, "batchpoint": points, "ratio": ratio, "first_mini_batch_s": first_server,
            "first_mini_batch_client_s": first_client, "server_hwm_kb": server_hwm,
            "server_descendants_hwm_kb": bp_workers, "baseline_driver_hwm_kb": b_driver,
            "baseline_worker_hwm_kb": b_workers, "identical_rows": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="number of input files (default 200)")
    parser.add_argument("--rows", type=int, default=5000, help="rows per file (default 5000)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each side, alternating (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes on each side (default: cpu count)")
    parser.add_argument("--mini-batch-size", type=int, default=10, help="files per Batchpoint mini-batch (default 10)")
    parser.add_argument("--baseline-files-per-task", type=int, default=10, help="files per baseline task (default 10)")
    args = parser.parse_args()

    started = time.perf_counter()
    data = make_data(args.files, args.rows)
    say(f"data: {data} ({args.files} files x {args.rows} rows)")
    model = train_model()
    say(f"model: {model}")
    home = DATA_ROOT / "home"
    server = Server(home)
    say(f"server: {server.url} (pid {server.pid}, BATCHPOINT_HOME {home})")
    baselines, points, peaks = [], [], {}
    try:
        from batchpoint import MLClient

        with MLClient(endpoint=server.url, home=home) as ml_client:
            path, warm_path = setup_workspace(ml_client, model, data, args.workers, args.mini_batch_size)
            warm = invoke_and_wait(ml_client, warm_path, "uri_file")
            say(f"warm-up job on one file: {warm['seconds']:.2f} s")
            for i in range(args.repeat):
                baselines.append(run_baseline(model, data, args.workers, args.baseline_files_per_task))
                say(f"run {i + 1}: baseline {baselines[-1]['seconds']:.2f} s")
                with TreeSampler(server.pid) as sampler:
                    points.append(run_batchpoint(ml_client, home, path))
                for pid, peak in sampler.peaks.items():
                    peaks[pid] = max(peak, peaks.get(pid, 0))
                say(f"run {i + 1}: batchpoint {points[-1]['seconds']:.2f} s (job {points[-1]['job']})")
        server_hwm = vm_hwm_kb(server.pid)
    finally:
        server.stop()
    identical = same_rows(baselines[-1]["output"], points[-1]["output"])
    result = report(args, args.workers, baselines, points, server_hwm, peaks, identical)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"heart-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    say(f"results: {out} (whole bench {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        baseline_main(sys.argv[2:])
    else:
        main()
