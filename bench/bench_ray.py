"""Batchpoint on Ray against Ray Data, and against its own local pool: one run, one Ray cluster,
the same files and model.

    .venv/bin/python bench/bench_ray.py [--files 200] [--rows 5000] [--repeat 1] [--node-cpus 1]

Needs root (a network namespace) and Ray (``pip install -c constraints.txt -e '.[test]'``).

1. Data and model: those of ``bench/bench_heart.py`` (``--files`` CSVs of ``--rows`` rows in
   bench/.data, the heart GBM as an MLflow model).
2. A loopback-only network namespace (``unshare -n``; Ray binds the machine's external address
   otherwise), and in it a Ray head and a second Ray worker node (``ray start --block``, token
   auth, ``--node-cpus`` logical CPUs each: 1 by default, so the cluster has as many CPUs as a
   2-core machine; ``RAY_worker_niceness=0``, as the local pool's workers), a Batchpoint server, and this script as the Ray driver of the Ray Data run.
3. Batchpoint on Ray: a compute of ``type: ray`` on that cluster (0.5 CPU per worker actor), the
   heart MLflow deployment on it (instance_count 1, max_concurrency_per_instance 2,
   mini_batch_size 10), one warm-up job on one file (its actors start cold: the cold start's first
   mini-batch), then — once ``/metrics`` shows both actors parked (``engines/ray_warm.py``) — the
   timed job on every file, served by those warm actors: invoke to the job's ``end_time``, as
   bench_heart.py times it, and invoke to its first scored mini-batch. Then the bench frees the
   cluster's CPUs the parked actors hold (SIGKILL of their processes by PID, found with Ray's state
   API, as their idle timeout would), so Ray Data runs on the whole cluster; and a cold run: the
   same job with an environment variable set (``BENCH_COLD``: another key, fresh actors, as every
   job was before warm actors), freed again after it. The local pool's run comes right after the
   warm Ray run (the two compared for the 0.9 target, next to each other in time on a shared machine).
4. Batchpoint's local pool: the same deployment without the compute (2 worker processes).
5. Ray Data: ``read_csv`` (with the file path column) → ``map_batches`` with an actor pool of 2
   that loads the model once per actor and predicts → ``write_csv``; actors, read and write tasks
   0.5 CPU each (on 1-CPU nodes a whole-CPU read task never fits beside an actor and the job
   hangs); timed from the start of the pipeline to the end of the write (the driver connected).
   Batchpoint and Ray Data runs alternate (``--repeat``).

Prints the times (median) and issue 24 §4's targets against their baselines of the same run: the
warm Ray job's first mini-batch (<= 1 s; the cold one's beside it), Batchpoint on Ray (warm) /
Batchpoint local pool (>= 0.9) and / Ray Data (>= 3; the cold run's ratios beside them) — and
checks that every run wrote every row (Batchpoint's Ray and local runs: the same rows); and what
the parked actors hold after the warm job (each actor process's RSS and peak, and the RSS of the
processes below it: a fenced actor's sandbox and scoring process). Saves the results to bench/results/ray-<time>.json. Every
process it started is stopped by PID, the namespace's holder last. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bench_heart as bh  # noqa: E402 - the data, the model, the server and the job timing

RESULTS = BENCH / "results"
RAY_PORT = 6379


def say(text: str = "") -> None:
    print(text, flush=True)


# ---- outside: the namespace -------------------------------------------------------------------


def outer(argv: list[str]) -> int:
    holder = subprocess.Popen(["unshare", "-n", "sleep", "86400"], stdin=subprocess.DEVNULL)
    try:
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == ours:
            if holder.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("unshare -n failed: bench_ray.py needs root (a network namespace of its own)")
            time.sleep(0.05)
        enter = ["nsenter", "-t", str(holder.pid), "-n"]
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True)
        addrs = subprocess.run([*enter, "ip", "-br", "addr"], check=True, capture_output=True, text=True).stdout
        if sorted({line.split()[0] for line in addrs.splitlines() if line.strip()}) != ["lo"]:
            raise SystemExit(f"the namespace holds more than lo:\n{addrs}")
        return subprocess.run([*enter, sys.executable, __file__, "_inner", *argv]).returncode
    finally:
        sweep_namespace(holder.pid)
        holder.kill()
        holder.wait()


def sweep_namespace(holder: int) -> None:
    """End whatever is left in the holder's network namespace (all of it started by this bench)."""
    try:
        ns = os.readlink(f"/proc/{holder}/ns/net")
    except OSError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != holder:
                try:
                    if os.readlink(entry / "ns" / "net") == ns:
                        left.append(int(entry.name))
                except OSError:
                    pass
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not left:
            return
        time.sleep(2)


# ---- inside: the cluster, the server, the runs --------------------------------------------------


class Cluster:
    """A Ray head and a worker node, each a ``ray start --block`` process stopped by its PID."""

    def __init__(self, work: Path, cpus: int) -> None:
        self.work = work
        self.token = work / "ray-token"
        self.token.write_text(os.urandom(32).hex())
        # RAY_worker_niceness=0: Ray starts its workers at niceness 15 by default, which on a machine
        # doing anything else starves them; the local pool's workers run at 0
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token), RAY_worker_niceness="0")
        self.address = f"127.0.0.1:{RAY_PORT}"
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--object-store-memory=400000000",
                  "--disable-usage-stats"]
        self.log = open(work / "ray.log", "ab")
        self.procs = [subprocess.Popen([ray, "start", "--head", f"--port={RAY_PORT}", "--include-dashboard=false",
                                        f"--temp-dir={work / 'ray'}", *common], stdout=self.log, stderr=self.log,
                                       stdin=subprocess.DEVNULL)]
        self._wait_port()
        self.procs.append(subprocess.Popen([ray, "start", f"--address={self.address}", *common], stdout=self.log,
                                           stderr=self.log, stdin=subprocess.DEVNULL))
        import ray as ray_module

        ray_module.init(address=self.address, log_to_driver=False)
        deadline = time.monotonic() + 90
        while sum(1 for n in ray_module.nodes() if n["Alive"]) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"the Ray worker node did not join; see {work / 'ray.log'}")
            time.sleep(0.2)

    def _wait_port(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", RAY_PORT), timeout=1).close()
                return
            except OSError:
                if self.procs[0].poll() is not None:
                    break
                time.sleep(0.1)
        raise SystemExit(f"the Ray head did not start; see {self.work / 'ray.log'}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


class Predictor:
    """Ray Data's actor: the model loaded once, ``row,prediction,file`` per input row."""

    def __init__(self, model_dir: str) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(model_dir)

    def __call__(self, batch):  # a pandas DataFrame with the file path column "path"
        import pandas as pd

        paths = batch.pop("path")
        out = pd.DataFrame({"row": batch.groupby(paths.values).cumcount().values,
                            "prediction": self.model.predict(batch)})
        out["file"] = [os.path.basename(p) for p in paths]
        return out


def run_ray_data(model: Path, data: Path, out: Path) -> dict:
    import ray

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    half = {"num_cpus": 0.5}  # read and write tasks too: a whole-CPU task never fits beside an actor on a 1-CPU node
    ds = ray.data.read_csv(str(data), include_paths=True, ray_remote_args=half)
    ds = ds.map_batches(Predictor, fn_constructor_args=(str(model),), batch_format="pandas",
                        compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.5, batch_size=5000)
    ds.write_csv(str(out), ray_remote_args=half)
    seconds = time.perf_counter() - started
    rows = 0
    for part in out.glob("*.csv"):
        with open(part) as f:
            rows += sum(1 for _ in f) - 1  # each part has a header
    return {"seconds": seconds, "rows": rows}


def setup(ml_client, model: Path, data: Path, cluster: Cluster, mini_batch_size: int) -> tuple[str, str]:
    from batchpoint import AmlCompute, BatchDeployment

    path, warm = bh.setup_workspace(ml_client, model, data, 2, mini_batch_size)  # deployment heart-bench-gbm
    ml_client.compute.begin_create_or_update(AmlCompute(
        name="ray-bench", type="ray", address=cluster.address, auth_token=cluster.token.read_text(),
        num_cpus_per_worker=0.5, max_instances=2)).result()
    local = ml_client.batch_deployments.get(bh.DEPLOYMENT, bh.ENDPOINT)
    spec = local.model_dump(exclude={"id", "created_at", "updated_at", "provisioning_state"}, exclude_none=True)
    spec.update(name="heart-bench-ray", compute="azureml:ray-bench")
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(**spec)).result()
    return path, warm


def timed(ml_client, path: str, deployment: str, env: dict[str, str] | None = None) -> dict:
    """bench_heart's invoke_and_wait with the deployment chosen (the default is the local one) and
    the invoke's environment variables (another key for warm actors: fresh ones)."""
    endpoints = ml_client.batch_endpoints
    original = endpoints.invoke

    def invoke(**kwargs):
        return original(deployment_name=deployment, environment_variables=env or {}, **kwargs)

    endpoints.invoke = invoke
    try:
        run = bh.invoke_and_wait(ml_client, path, "uri_folder" if not path.endswith(".csv") else "uri_file")
    finally:
        endpoints.invoke = original
    job = run["job"]
    return {"job": job.name, "seconds": run["seconds"], "rows": job.progress.rows,
            "first_mini_batch_s": job.first_mini_batch_at.timestamp() - job.created_at.timestamp()}


def parked_actors(server_url: str, deployment: str) -> int:
    """The server's parked Ray actors of ``deployment`` as ``/metrics`` shows them."""
    import httpx

    text = httpx.get(f"{server_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("batchpoint_ray_warm_actors{") and f'deployment="{bh.ENDPOINT}/{deployment}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def wait_parked(server_url: str, deployment: str, count: int, timeout: float = 180.0) -> float:
    """Wait until ``count`` actors of ``deployment`` are parked (an actor still in init() at the
    warm-up's end is parked once init() returns); the seconds waited."""
    started = time.monotonic()
    while parked_actors(server_url, deployment) < count:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{count} parked actors of {deployment} not shown in /metrics within {timeout:g} s")
        time.sleep(0.2)
    return time.monotonic() - started


def wait_dropped(server_url: str, deployment: str, timeout: float = 60.0) -> None:
    """Wait until the server has dropped the parked actors of ``deployment`` the bench killed
    (its reaper looks them up in Ray's actor table every 2 s)."""
    deadline = time.monotonic() + timeout
    while parked_actors(server_url, deployment) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server still shows parked actors of {deployment} {timeout:g} s after they were killed")
        time.sleep(0.2)


def free_cluster(cpus: float, timeout: float = 60.0) -> int:
    """SIGKILL every live Batchpoint worker actor on the cluster by PID (all on this machine: the
    bench's own nodes; the actor table read from the GCS, the bench's head has no dashboard) and wait
    until Ray shows ``cpus`` CPUs free; how many were killed."""
    import ray
    from ray._private.state import actors

    alive = [a for a in actors().values()
             if a.get("ActorClassName") == "RayWorker" and a.get("State") == "ALIVE" and a.get("Pid")]
    for actor in alive:
        try:
            os.kill(int(actor["Pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while float(ray.available_resources().get("CPU", 0.0)) < cpus - 1e-9:
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster's {cpus:g} CPUs were not free {timeout:g} s after killing the actors")
        time.sleep(0.2)
    return len(alive)


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def parked_memory() -> list[dict]:
    """What each live Batchpoint worker actor holds while parked: its process's RSS and peak (VmRSS,
    VmHWM) and the RSS of the processes below it (the fenced scoring process), in KiB; all on this
    machine (the bench's own nodes)."""
    from ray._private.state import actors

    found = []
    for a in actors().values():
        if a.get("ActorClassName") == "RayWorker" and a.get("State") == "ALIVE" and a.get("Pid"):
            pid = int(a["Pid"])
            below = list(bh.descendants(pid))  # its sandbox and scoring process
            found.append({"pid": pid, "rss_kib": _status_kib(pid, "VmRSS"), "hwm_kib": _status_kib(pid, "VmHWM"),
                          "below_rss_kib": sum(_status_kib(p, "VmRSS") for p in below), "below": len(below)})
    return found


def inner(args: argparse.Namespace) -> None:
    from batchpoint import MLClient

    started = time.perf_counter()
    data = bh.make_data(args.files, args.rows)
    model = bh.train_model()
    work = bh.DATA_ROOT / "ray-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say(f"data: {data} ({args.files} files x {args.rows} rows); model: {model}")
    cluster = Cluster(work, args.node_cpus)
    say(f"Ray: head and worker node at {cluster.address}, {args.node_cpus} CPU(s) each")
    os.environ["BATCHPOINT_SERVER__METRICS_PUBLIC"] = "true"  # the bench reads the parked actors there
    server = bh.Server(work / "home")
    say(f"server: {server.url} (pid {server.pid})")
    runs: dict[str, list[dict]] = {"batchpoint_ray": [], "batchpoint_ray_cold": [], "batchpoint_local": [],
                                   "ray_data": [], "ray_warm_up": []}
    memory: list[list[dict]] = []  # per run: each parked actor's memory after the warm job (parked_memory)
    cluster_cpus = 2.0 * args.node_cpus
    workers = 2  # the deployment's instance_count x max_concurrency_per_instance
    try:
        with MLClient(endpoint=server.url, home=work / "home") as ml_client:
            path, warm = setup(ml_client, model, data, cluster, args.mini_batch_size)
            say(f"warm-up {bh.DEPLOYMENT}: {timed(ml_client, warm, bh.DEPLOYMENT)['seconds']:.2f} s")
            for i in range(args.repeat):
                up = timed(ml_client, warm, "heart-bench-ray")  # cold actors, parked after it
                runs["ray_warm_up"].append(up)
                waited = wait_parked(server.url, "heart-bench-ray", workers)
                say(f"run {i + 1}: Ray warm-up (cold actors) {up['seconds']:.2f} s, first mini-batch "
                    f"{up['first_mini_batch_s']:.2f} s; both actors parked {waited:.1f} s later")
                runs["batchpoint_ray"].append(timed(ml_client, path, "heart-bench-ray"))
                say(f"run {i + 1}: Batchpoint on Ray, warm {runs['batchpoint_ray'][-1]['seconds']:.2f} s, first "
                    f"mini-batch {runs['batchpoint_ray'][-1]['first_mini_batch_s']:.2f} s")
                runs["batchpoint_local"].append(timed(ml_client, path, bh.DEPLOYMENT))
                say(f"run {i + 1}: Batchpoint local pool {runs['batchpoint_local'][-1]['seconds']:.2f} s, first "
                    f"mini-batch {runs['batchpoint_local'][-1]['first_mini_batch_s']:.2f} s")
                held = parked_memory()
                memory.append(held)
                say("  parked Ray actors hold: " + ", ".join(
                    f"{m['rss_kib'] / 1024:.0f} MiB (peak {m['hwm_kib'] / 1024:.0f}) + {m['below_rss_kib'] / 1024:.0f} MiB "
                    f"in {m['below']} process(es) below it" for m in held))
                say(f"  freed the cluster: {free_cluster(cluster_cpus)} parked actor(s) killed")
                wait_dropped(server.url, "heart-bench-ray")
                runs["ray_data"].append(run_ray_data(model, data, work / "ray-data-out"))
                say(f"run {i + 1}: Ray Data {runs['ray_data'][-1]['seconds']:.2f} s")
                runs["batchpoint_ray_cold"].append(timed(ml_client, path, "heart-bench-ray", {"BENCH_COLD": str(i)}))
                say(f"run {i + 1}: Batchpoint on Ray, cold {runs['batchpoint_ray_cold'][-1]['seconds']:.2f} s, first "
                    f"mini-batch {runs['batchpoint_ray_cold'][-1]['first_mini_batch_s']:.2f} s")
                say(f"  freed the cluster: {free_cluster(cluster_cpus)} parked actor(s) killed")
                wait_dropped(server.url, "heart-bench-ray")
            outputs = {}
            for key in ("batchpoint_ray", "batchpoint_local"):
                [saved] = ml_client.jobs.download(runs[key][-1]["job"], download_path=work / "downloads" / key)
                outputs[key] = str(saved)
    finally:
        server.stop()
        import ray

        ray.shutdown()  # before the cluster goes: Ray's exit hooks would wait for it
        cluster.stop()
    expected = args.files * args.rows
    timed_runs = {k: v for k, v in runs.items() if k != "ray_warm_up"}
    ok = {k: all(r["rows"] == expected for r in v) for k, v in timed_runs.items()}
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in timed_runs.items()}
    first = {k: statistics.median(r["first_mini_batch_s"] for r in v) for k, v in runs.items() if k != "ray_data"}
    result = {
        "when": datetime.now().isoformat(timespec="seconds"), "commit": commit(), "machine": machine(),
        "files": args.files, "rows_per_file": args.rows, "node_cpus": args.node_cpus, "repeat": args.repeat,
        "mini_batch_size": args.mini_batch_size, "runs": runs, "median_s": median, "first_mini_batch_s": first,
        "ratio_vs_ray_data": median["ray_data"] / median["batchpoint_ray"],
        "ratio_vs_local_pool": median["batchpoint_local"] / median["batchpoint_ray"],
        "cold_ratio_vs_ray_data": median["ray_data"] / median["batchpoint_ray_cold"],
        "cold_ratio_vs_local_pool": median["batchpoint_local"] / median["batchpoint_ray_cold"],
        "parked_actor_memory_kib": memory,
        "every_row_written": ok, "same_rows_ray_and_local": bh.same_rows(outputs["batchpoint_ray"],
                                                                          outputs["batchpoint_local"]),
    }
    say("")
    say("| run | median s | rows/s | invoke -> first mini-batch |")
    say("|---|---|---|---|")
    for key, label in (("batchpoint_ray", "Batchpoint on Ray, warm actors"),
                       ("batchpoint_ray_cold", "Batchpoint on Ray, cold actors (as before)"), ("ray_data", "Ray Data"),
                       ("batchpoint_local", "Batchpoint local pool")):
        shown = f"{first[key]:.2f} s" if key in first else "-"
        say(f"| {label} | {median[key]:.2f} | {expected / median[key]:,.0f} | {shown} |")
    say(f"Ray warm-up job (1 file, cold actors): first mini-batch {first['ray_warm_up']:.2f} s")

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    say(f"first mini-batch of a deployment's second job on Ray: {first['batchpoint_ray']:.2f} s (target <= 1 s: "
        f"{verdict(first['batchpoint_ray'] <= 1.0)}; cold {first['batchpoint_ray_cold']:.2f} s)")
    say(f"throughput Batchpoint on Ray / Batchpoint local pool: {result['ratio_vs_local_pool']:.2f} warm (target "
        f">= 0.9: {verdict(result['ratio_vs_local_pool'] >= 0.9)}), {result['cold_ratio_vs_local_pool']:.2f} cold")
    say(f"throughput Batchpoint on Ray / Ray Data: {result['ratio_vs_ray_data']:.2f} warm (target >= 3: "
        f"{verdict(result['ratio_vs_ray_data'] >= 3)}), {result['cold_ratio_vs_ray_data']:.2f} cold")
    say(f"every row written: {ok}; Ray and local pool wrote the same rows: {result['same_rows_ray_and_local']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ray-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    say(f"results: {out} (whole bench {time.perf_counter() - started:.0f} s)")


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores ({model}), load {os.getloadavg()[0]:.1f}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="number of input files (default 200)")
    parser.add_argument("--rows", type=int, default=5000, help="rows per file (default 5000)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each, alternating (default 1)")
    parser.add_argument("--node-cpus", type=int, default=1, help="logical CPUs of each Ray node (default 1)")
    parser.add_argument("--mini-batch-size", type=int, default=10, help="files per mini-batch (default 10)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_inner":
        inner(parse(sys.argv[2:]))
    else:
        parse(sys.argv[1:])  # --help and bad arguments answered before the namespace is made
        sys.exit(outer(sys.argv[1:]))
