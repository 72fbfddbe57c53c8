"""Batchpoint against a hand-written multiprocessing baseline, on the heart classifier.

    .venv/bin/python bench/bench_heart.py [--files 200] [--rows 5000] [--repeat 1]

1. Data: ``--files`` CSV files of ``--rows`` rows each, sampled with replacement (seeded) from
   examples/heart/data, written once to bench/.data/heart-<files>x<rows>/ and reused.
2. Model: examples/heart/train.py (OneHotEncoder on ``thal`` + GradientBoostingClassifier),
   saved as an MLflow model in bench/.data/model.
3. Baseline (a separate process, so its memory is its own): the parent loads the MLflow model
   (not timed), then ``ProcessPoolExecutor(os.cpu_count())`` forks workers that inherit it; each task
   reads ``--baseline-files-per-task`` files with pandas, predicts, and returns
   ``row,prediction,file`` rows; the parent writes them to one CSV. Timed from creating the pool to
   the CSV being written.
4. Batchpoint: a server of its own (``python -m batchpoint.server``, BATCHPOINT_HOME
   bench/.data/home); a local data store on the same data folder (files are read in place, as the
   baseline reads them); model, data asset, endpoint and deployment (instance_count 1,
   max_concurrency_per_instance = cpu count, mini_batch_size 10); one warm-up invoke on one file;
   then invoke on all the files and poll until Completed. The timed job is the deployment's second
   (or later) job: fenced workers kept warm from the job before (``workers.warm_idle_s``,
   engines/warm.py) serve it without init(); the report counts them ("warm workers"); run with
   ``BATCHPOINT_WORKERS__WARM_IDLE_S=0`` for every job's workers cold. Timed from the client's invoke call to
   the job's ``end_time`` (same machine, same clock); the time the polling client saw is kept too.
   Baseline and Batchpoint runs alternate (``--repeat``).

Prints both times (median and best), the throughput ratio (baseline time / Batchpoint time; the
issue's target is >= 0.9), the time from invoke to the first scored mini-batch (job record and
client-observed; target < 0.5 s), peak RSS (VmHWM) of the server process and its workers against
the baseline's parent and workers, CPU seconds of both, and where Batchpoint's time went (job
record and worker logs). Checks that both wrote the same rows and that no file failed. Results
are also saved to bench/results/. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process itself, CPU seconds of its children it has waited for)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def forkserver_of(server_pid: int) -> int | None:
    for pid, parent in descendants(server_pid).items():
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if parent == server_pid and b"forkserver" in cmdline:
            return pid
    return None


def descendants(root: int) -> dict[int, int]:
    """Every process below ``root``: {pid: parent pid}."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            if child not in found:
                found[child] = parent
                todo.append(child)
    return found


class TreeSampler:
    """Samples VmHWM of a server's descendants while a job runs (its workers exit when it ends).

    The server's direct children are the engine's forkserver (and multiprocessing's resource
    tracker); the workers are the forkserver's children."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root, self.interval = root, interval
        self.peaks: dict[int, int] = {}
        self.parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.2:
                self.parents.update(descendants(self.root))
                last_scan = now
            for pid in list(self.parents):
                peak = vm_hwm_kb(pid)
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
            self._stop.wait(self.interval)

    def workers(self) -> list[int]:
        """Peaks of the processes two levels below the server (the forkserver's children)."""
        return sorted(peak for pid, peak in self.peaks.items() if self.parents.get(pid) not in (self.root, None))

    def helpers(self) -> list[int]:
        return sorted(peak for pid, peak in self.peaks.items() if self.parents.get(pid) == self.root)


# ---- data and model -----------------------------------------------------------------------------


def make_data(files: int, rows: int, seed: int = 0) -> Path:
    """``files`` CSVs of ``rows`` rows sampled (with replacement) from the example's unlabeled data."""
    folder = DATA_ROOT / f"heart-{files}x{rows}"
    marker = DATA_ROOT / f"heart-{files}x{rows}.json"  # beside the folder: every file in it is an input
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


def _score(paths: list[str]) -> tuple[str, float, float]:
    import pandas as pd

    started = time.time()
    frames = []
    for path in paths:
        data = pd.read_csv(path)
        frame = pd.DataFrame({"row": range(len(data)), "prediction": _model.predict(data)})
        frame["file"] = os.path.basename(path)
        frames.append(frame)
    text = pd.concat(frames, ignore_index=True).to_csv(header=False, index=False, lineterminator="\n")
    return text, started, time.time()


def baseline_main(argv: list[str]) -> None:
    """``bench_heart.py _baseline MODEL DATA OUT WORKERS FILES_PER_TASK``: prints one JSON line."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    model_dir, data_dir, out, workers, per_task = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    # Not timed, like Batchpoint's warm-up job: the libraries are imported and the model loaded here,
    # once; the forked workers inherit both, so the timed part is only forking and scoring.
    _load(model_dir)
    files = sorted(str(p) for p in data_dir.glob("*.csv"))
    tasks = [files[i:i + per_task] for i in range(0, len(files), per_task)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    started = time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_score, task) for task in tasks]
        spans = []
        with open(out, "w") as handle:
            for future in futures:
                text, task_start, task_end = future.result()
                handle.write(text)
                spans.append((task_start - started, task_end - started))
        elapsed = time.time() - started
        worker_peaks = [vm_hwm_kb(pid) or 0 for pid in pool._processes]  # noqa: SLF001 - measurement only
        cpu_before_shutdown = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": elapsed, "task_seconds": [end - start for start, end in spans], "tasks": len(tasks),
                      "first_task_start_s": min(s for s, _ in spans), "first_task_end_s": min(e for _, e in spans),
                      "last_task_end_s": max(e for _, e in spans),
                      "driver_hwm_kb": vm_hwm_kb(os.getpid()), "worker_hwm_kb": worker_peaks,
                      "driver_cpu_s": cpu_before_shutdown.ru_utime + cpu_before_shutdown.ru_stime - cpu0,
                      "workers_cpu_s": children.ru_utime + children.ru_stime}))


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


def invoke_and_wait(ml_client, path: str, kind: str, fast: float = 0.02, slow: float = 0.2) -> dict:
    """Invoke and poll until the job ends: every 20 ms until the first mini-batch is seen (to time
    it from the client), then every 200 ms, the SDK's ``jobs.wait`` default. Each poll costs the
    server a few ms of CPU that the workers would otherwise have (it matters on 2 cores), so the
    end is taken from the job's own ``end_time`` (same machine, same clock) rather than from a
    faster poll; the client-observed end is kept too."""
    from batchpoint import Input

    wall_started, started = time.time(), time.perf_counter()
    job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=kind, path=path))
    invoked = time.perf_counter()
    first_seen = None
    while job.status not in ("Completed", "Failed", "Canceled"):
        time.sleep(slow if first_seen else fast)
        job = ml_client.jobs.get(job.name)
        if first_seen is None and job.progress.mini_batches_completed > 0:
            first_seen = time.perf_counter()
    ended = time.perf_counter()
    if job.status != "Completed" or job.progress.files_failed:
        raise SystemExit(f"job {job.name} ended {job.status} with {job.progress.files_failed} failed file(s): "
                         f"{job.status_message}")
    return {"job": job, "seconds": job.end_time.timestamp() - wall_started, "client_seconds": ended - started,
            "invoke_call_s": invoked - started, "first_seen_s": (first_seen or ended) - started}


_WORKER_LINE = re.compile(r"^(\S+ \S+) INFO batchpoint\.worker: (.*)$")


def worker_log_profile(logs_dir: Path) -> dict:
    """What the worker logs say: when workers were ready, and time spent scoring mini-batches."""
    ready, done, busy, warm = [], [], [], 0
    for log in sorted(logs_dir.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = _WORKER_LINE.match(line)
            if not match:
                continue
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            text = match.group(2)
            if " ready (init took " in text:
                ready.append(at)
            elif " ready: warm, " in text:  # a warm worker kept from the job before (engines/warm.py)
                ready.append(at)
                warm += 1
            elif (m := re.search(r"scored: \d+ rows in ([0-9.]+)s", text)):
                done.append(at)
                busy.append(float(m.group(1)))
    return {"ready": sorted(ready), "done": sorted(done), "busy_s": sum(busy), "batches": len(busy),
            "mean_batch_s": statistics.mean(busy) if busy else 0.0, "warm": warm}


def run_batchpoint(ml_client, home: Path, path: str, server_pid: int) -> dict:
    forkserver = forkserver_of(server_pid)
    server_cpu0, fork_cpu0 = cpu_seconds(server_pid)[0], cpu_seconds(forkserver)[1] if forkserver else 0.0
    run = invoke_and_wait(ml_client, path, "uri_folder")
    time.sleep(0.2)  # let the forkserver reap the job's workers, so their CPU time is counted
    server_cpu = cpu_seconds(server_pid)[0] - server_cpu0
    workers_cpu = (cpu_seconds(forkserver)[1] - fork_cpu0) if forkserver else None
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
        "server_cpu_s": server_cpu,
        "workers_cpu_s": workers_cpu,
        "warm_workers": logs["warm"],  # workers kept warm from the deployment's job before (engines/warm.py)
    }
    return {"job": job.name, "seconds": run["seconds"], "client_seconds": run["client_seconds"],
            "first_seen_s": run["first_seen_s"],
            "first_mini_batch_s": profile["first_mini_batch_s"], "rows": job.progress.rows,
            "files": job.progress.files_completed, "profile": profile}


def same_rows(a: str, b: str) -> bool:
    with open(a) as fa, open(b) as fb:
        return Counter(fa) == Counter(fb)


# ---- report -----------------------------------------------------------------------------------------


def mib(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f} MiB"


def report(args, baselines: list[dict], points: list[dict], server_hwm: int | None, worker_peaks: list[int],
           helper_peaks: list[int], identical: bool, load: tuple[float, float]) -> dict:
    b_times = [b["seconds"] for b in baselines]
    p_times = [p["seconds"] for p in points]
    b_med, p_med = statistics.median(b_times), statistics.median(p_times)
    rows = args.files * args.rows
    ratio = b_med / p_med
    first_server = statistics.median(p["first_mini_batch_s"] for p in points)
    first_client = statistics.median(p["first_seen_s"] for p in points)
    b_driver = max(b["driver_hwm_kb"] or 0 for b in baselines)
    b_workers = [peak for b in baselines for peak in b["worker_hwm_kb"]]
    say()
    say(f"== heart: {args.files} files x {args.rows} rows = {rows:,} rows; {os.cpu_count()} CPUs; "
        f"{args.workers} worker processes each side; {args.repeat} run(s) each, alternating")
    busy = load[0] > 0.25 * (os.cpu_count() or 1)
    say(f"load average (1 min) before the bench: {load[0]:.2f}, after: {load[1]:.2f} (the bench's own load)"
        + ("   -- other work was running: figures are noisy" if busy else ""))
    b_best, p_best = min(b_times), min(p_times)
    say(f"baseline (ProcessPoolExecutor, {args.baseline_files_per_task} files/task): median {b_med:5.2f} s, best "
        f"{b_best:5.2f} s ({rows / b_best:,.0f} rows/s)   runs: {', '.join(f'{t:.2f}' for t in b_times)}")
    say(f"batchpoint (invoke -> job end_time, mini_batch_size {args.mini_batch_size}): median {p_med:5.2f} s, best "
        f"{p_best:5.2f} s ({rows / p_best:,.0f} rows/s)   runs: {', '.join(f'{t:.2f}' for t in p_times)}")
    c_times = [p["client_seconds"] for p in points]
    say(f"  as the client saw it (polling every 0.2 s, as jobs.wait does): median {statistics.median(c_times):.2f} s, "
        f"best {min(c_times):.2f} s; ratio {b_med / statistics.median(c_times):.2f}")
    say(f"throughput ratio (baseline time / batchpoint time): median {ratio:.2f}, best-of-runs {b_best / p_best:.2f}"
        f"   target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'}")
    say(f"invoke -> first scored mini-batch: {first_server:.3f} s (job record: first_mini_batch_at - created_at), "
        f"{first_client:.3f} s (seen by the client, polling every 20 ms)   target < 0.5 s: "
        f"{'met' if first_server < 0.5 else 'NOT met'}")
    say(f"peak RSS (VmHWM): batchpoint server process {mib(server_hwm)} vs baseline parent {mib(b_driver)}")
    say(f"                  per worker: batchpoint max {mib(max(worker_peaks) if worker_peaks else None)} vs "
        f"baseline max {mib(max(b_workers) if b_workers else None)}; batchpoint forkserver/helpers: "
        f"{', '.join(mib(h) for h in helper_peaks[-2:]) or 'n/a'}")
    say(f"outputs: {'the same rows' if identical else 'DIFFERENT rows'} "
        f"({points[-1]['rows']:,} rows from {points[-1]['files']} files)")
    last, base = points[-1]["profile"], baselines[-1]
    say("where the time went (last run; seconds from the job's created_at / from creating the pool):")
    say(f"  batchpoint: invoke call {last['invoke_call_s']:.3f}, claimed {last['queued_s']:.3f}, "
        f"first worker ready {_f(last['first_worker_ready_s'])}, all ready {_f(last['all_workers_ready_s'])}, "
        f"first mini-batch done {last['first_mini_batch_s']:.3f}, listing done {_f(last['listing_done_s'])}, "
        f"last mini-batch done {_f(last['last_mini_batch_s'])}, Completed {last['end_s']:.3f}; "
        f"warm workers (kept from the deployment's job before, init() skipped): {last.get('warm_workers', 0)}")
    say(f"  baseline:   first task started {base['first_task_start_s']:.3f}, first task done "
        f"{base['first_task_end_s']:.3f}, last task done {base['last_task_end_s']:.3f}, "
        f"CSV written {base['seconds']:.3f}")
    b_busy = sum(base["task_seconds"])
    say(f"  scoring work: batchpoint {last['worker_busy_s']:.2f} s in {last['mini_batches']} mini-batches "
        f"({last['mean_mini_batch_s'] * 1000:.0f} ms each) vs baseline {b_busy:.2f} s in {base['tasks']} tasks "
        f"({b_busy / base['tasks'] * 1000:.0f} ms each)")
    say(f"  CPU: batchpoint workers {_f(last['workers_cpu_s'])} s + server process {last['server_cpu_s']:.3f} s vs "
        f"baseline workers {base['workers_cpu_s']:.3f} s + parent {base['driver_cpu_s']:.3f} s")
    bp_cpu = [p["profile"]["workers_cpu_s"] + p["profile"]["server_cpu_s"] for p in points
              if p["profile"]["workers_cpu_s"] is not None]
    b_cpu = [b["workers_cpu_s"] + b["driver_cpu_s"] for b in baselines]
    cpu_ratio = statistics.median(b_cpu) / statistics.median(bp_cpu) if bp_cpu else None
    if cpu_ratio:
        say(f"  CPU ratio (baseline CPU s / batchpoint CPU s, medians): {cpu_ratio:.2f} -- what the time ratio tends "
            "to when the machine is saturated")
    return {"files": args.files, "rows_per_file": args.rows, "cpus": os.cpu_count(), "workers": args.workers,
            "baseline_files_per_task": args.baseline_files_per_task, "mini_batch_size": args.mini_batch_size,
            "load_average": load, "baseline": baselines, "batchpoint": points, "ratio": ratio,
            "ratio_best": b_best / p_best, "cpu_ratio": cpu_ratio,
            "first_mini_batch_s": first_server, "first_mini_batch_client_s": first_client,
            "server_hwm_kb": server_hwm, "worker_hwm_kb": worker_peaks, "helper_hwm_kb": helper_peaks,
            "baseline_driver_hwm_kb": b_driver, "baseline_worker_hwm_kb": b_workers, "identical_rows": identical}


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
    load_before = os.getloadavg()[0]
    data = make_data(args.files, args.rows)
    say(f"data: {data} ({args.files} files x {args.rows} rows)")
    model = train_model()
    say(f"model: {model}")
    home = DATA_ROOT / "home"
    for old in (home, DATA_ROOT / "downloads"):  # every job writes ~2x the data: start clean each time
        shutil.rmtree(old, ignore_errors=True)
    server = Server(home)
    say(f"server: {server.url} (pid {server.pid}, BATCHPOINT_HOME {home})")
    baselines, points, worker_peaks, helper_peaks = [], [], [], []
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
                    points.append(run_batchpoint(ml_client, home, path, server.pid))
                worker_peaks.extend(sampler.workers())
                helper_peaks.extend(sampler.helpers())
                say(f"run {i + 1}: batchpoint {points[-1]['seconds']:.2f} s (job {points[-1]['job']})")
            server_hwm = vm_hwm_kb(server.pid)
            folder = DATA_ROOT / "downloads" / points[-1]["job"]
            saved = ml_client.jobs.download(points[-1]["job"], download_path=folder)
            points[-1]["output"] = str(saved[0])
    finally:
        server.stop()
    identical = same_rows(baselines[-1]["output"], points[-1]["output"])
    load = (load_before, os.getloadavg()[0])
    result = report(args, baselines, points, server_hwm, worker_peaks, helper_peaks, identical, load)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"heart-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    say(f"results: {out} (whole bench {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        baseline_main(sys.argv[2:])
    else:
        main()
