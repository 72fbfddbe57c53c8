"""100,000-file planning: time to the first scored mini-batch, the listing, and the server's memory.

    .venv/bin/python bench/bench_scale.py [--files 100000] [--mini-batch-size 100]
        [--azurite-connection-string CS --azurite-blobs 100000 [--azurite-seconds 60]]

Local store: ``--files`` one-row CSV files (bench/.data/onerow-<files>/, in folders of 1,000,
written once), a server of its own (BATCHPOINT_HOME bench/.data/home-scale), a no-op scoring script
(one row per file, the file not read), 2 workers, ``--mini-batch-size`` files per mini-batch; a
warm-up job, then the timed job. Reported from the job record: first mini-batch, listing done and
Completed after ``created_at``; the server's RSS growth over the job (VmRSS from /proc, sampled
every 0.1 s, against its RSS just before the invoke); rows added to the metadata database.

Azurite (with ``--azurite-connection-string``; ``scripts/components.sh env`` prints one): puts
``--azurite-blobs`` one-row blobs in container ``scalebench`` (those already there are kept; see
``upload`` for how, and why 100,000 take hours), then in the same run, all through
one counting relay on loopback (tests/fixtures/scale.py): the plain SDK's listing of them
(``ContainerClient.list_blobs``), Batchpoint's listing of them (the backend's paged ``iter_files``,
with its requests and RSS growth, and the job's lister with its manifest, drained as fast as it
plans), and a job over them: time to the first scored mini-batch, the server's RSS growth and the
metadata rows added over ``--azurite-seconds`` (after a warm-up job on one blob), the requests the
server (List Blobs, HEAD) and its workers (one GET per blob) sent, then the job is canceled
(``--azurite-seconds 0``: it runs to the end). Azurite's cost per request grows with the blobs its
account holds, so at 100,000 it reads ~15 blobs a second and a whole job takes hours; the listing
and the start are what this bench measures there. Results are saved to bench/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench_heart import DATA_ROOT, RESULTS, Server, say
from bench_overhead import NOOP_SCORE, make_data

ENDPOINT = "scale-bench"
CONTAINER = "scalebench"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            self._stop.wait(0.1)


def db_rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)


def deploy(ml_client, home: Path, mini_batch_size: int) -> None:
    from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Model

    code, model = home.parent / "scale-code", home.parent / "scale-model"
    for folder in (code, model):
        folder.mkdir(parents=True, exist_ok=True)
    (code / "score.py").write_text(NOOP_SCORE)
    (model / "weights.txt").write_text("none\n")
    ml_client.models.create_or_update(Model(name="noop", type="custom_model", path=str(model)))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="noop", endpoint_name=ENDPOINT, model="azureml:noop@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        instance_count=1, max_concurrency_per_instance=2, mini_batch_size=mini_batch_size, error_threshold=-1,
        retry_settings={"max_retries": 1, "timeout": 300}, output_action="append_row"), set_default=True).result()


def wait(ml_client, name: str, until: float | None = None):
    while True:
        job = ml_client.jobs.get(name)
        if job.status in ("Completed", "Failed", "Canceled") or (until is not None and time.monotonic() > until):
            return job
        time.sleep(0.2)


def local_run(args, server: Server, ml_client, home: Path) -> dict:
    from batchpoint import Datastore, Input

    data = make_data(args.files)
    ml_client.datastores.create_or_update(Datastore(name="scaledata", type="local", path=str(data.parent)))
    first = sorted((data / "d0000").glob("*.csv"))[0].name
    warm = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
        type="uri_file", path=f"azureml://datastores/scaledata/paths/{data.name}/d0000/{first}"))
    wait(ml_client, warm.name)
    rows0, rss0 = db_rows(home / "metadata.db"), rss_kb(server.pid)
    with PeakRss(server.pid) as peak:
        job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
            type="uri_folder", path=f"azureml://datastores/scaledata/paths/{data.name}"))
        shown = []
        while (got := ml_client.jobs.get(job.name)).status not in ("Completed", "Failed", "Canceled"):
            started = time.perf_counter()
            ml_client.jobs.get(job.name)
            shown.append(time.perf_counter() - started)
            time.sleep(0.2)
    if got.status != "Completed":
        raise SystemExit(f"job {got.name} ended {got.status}: {got.status_message}")
    created = got.created_at.timestamp()
    return {"files": args.files, "mini_batch_size": args.mini_batch_size, "job": got.name,
            "first_mini_batch_s": got.first_mini_batch_at.timestamp() - created,
            "listing_done_s": got.listing_completed_at.timestamp() - created,
            "completed_s": got.end_time.timestamp() - created,
            "rss_before_mib": rss0 / 1024, "rss_growth_mib": (peak.peak - rss0) / 1024,
            "db_rows_added": db_rows(home / "metadata.db") - rows0,
            "job_show_s_median": sorted(shown)[len(shown) // 2] if shown else None,
            "job_show_s_max": max(shown) if shown else None}


# ---- Azurite ---------------------------------------------------------------------------------------


def upload(cs: str, blobs: int, concurrency: int = 16, container: str = CONTAINER, prefix: str = "many",
           report_every: int = 5000) -> dict:
    """``blobs`` one-row blobs ``<prefix>/dNNNN/fNNNNNNN.csv`` in ``container`` (created if missing),
    those already there skipped. Each is one real Put Blob request (listed by List Blobs like any
    other), sent over one keep-alive ``aiohttp`` session with a container SAS made by the SDK:
    ``concurrency`` requests in flight. The SDK's ``upload_blob`` does the same request with ~5× the
    client CPU per blob (2.8 ms against 0.6 ms, measured), CPU that Azurite needs on 2 shared cores.
    (There is no batch upload: Blob Batch carries only Delete Blob and Set Blob Tier.) Azurite, not
    the client, is the limit: ~4 ms of its CPU per blob in an empty account, ~70 ms with 30,000
    blobs in it (its LokiJS store looks a blob up by scanning the account's blobs), so 30,000 take
    about 25 minutes and 100,000 hours. ``report_every`` blobs at a time; the rate of each is
    returned and printed."""
    import aiohttp
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    parts = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
    service = BlobServiceClient.from_connection_string(cs)
    try:
        service.create_container(container)
    except ResourceExistsError:
        pass
    have = {b.name for b in service.get_container_client(container).list_blobs(name_starts_with=f"{prefix}/")}
    sas = generate_container_sas(parts["AccountName"], container, account_key=parts["AccountKey"],
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=6))
    base = f"{parts['BlobEndpoint'].rstrip('/')}/{container}"
    todo = [i for i in range(blobs) if f"{prefix}/d{i // 1000:04d}/f{i:07d}.csv" not in have]
    rates: list[dict] = []

    async def run() -> None:
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Content-Type": "text/csv"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def put(i: int) -> None:
                for attempt in range(5):
                    try:
                        async with session.put(f"{base}/{prefix}/d{i // 1000:04d}/f{i:07d}.csv?{sas}",
                                               data=f"x\n{i}\n".encode(), headers=headers) as response:
                            if response.status == 201:
                                return
                            detail = f"{response.status} {(await response.text())[:300]}"
                    except aiohttp.ClientError as exc:
                        detail = repr(exc)
                    await asyncio.sleep(0.5 * (attempt + 1))
                raise RuntimeError(f"Put Blob {i} failed: {detail}")

            async def lane(numbers: Iterator[int]) -> None:
                for i in numbers:
                    await put(i)

            for start in range(0, len(todo), report_every):
                chunk = todo[start:start + report_every]
                started = time.perf_counter()
                numbers = iter(chunk)
                await asyncio.gather(*(lane(numbers) for _ in range(concurrency)))
                took = time.perf_counter() - started
                rates.append({"blobs_before": len(have) + start, "blobs": len(chunk),
                              "blobs_per_s": len(chunk) / took, "load": os.getloadavg()[0]})
                say(f"azurite upload: {len(have) + start + len(chunk):,} blobs, last {len(chunk):,} at "
                    f"{len(chunk) / took:.0f}/s (load {os.getloadavg()[0]:.1f})")

    started = time.perf_counter()
    asyncio.run(run())
    return {"blobs": blobs, "already_there": len(have), "uploaded": len(todo), "concurrency": concurrency,
            "upload_s": time.perf_counter() - started, "rates": rates}


def _relay(blob_url: str):
    """The counting relay of the scale tests (tests/fixtures/scale.py): a TCP relay on loopback in front
    of Azurite that records each request's line, bytes unchanged."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures.scale import CountingRelay

    return CountingRelay(blob_url)


def _via(relay, blob_url: str) -> str:
    return relay.url("/" + blob_url.rstrip("/").rsplit("/", 1)[-1])


def azurite_listing(cs: str, blob_url: str) -> dict:
    """In this run, through the same counting relay: the plain SDK's listing (``list_blobs``, names
    and properties, no metadata), Batchpoint's backend listing (``iter_files``: metadata included, to
    skip ADLS folder markers) with its requests and in-process RSS growth, and the job's lister with
    its manifest, drained as fast as it plans."""
    from azure.storage.blob import ContainerClient

    from batchpoint.jobs.folder import JobFolder
    from batchpoint.jobs.listing import Lister
    from batchpoint.storage.base import StorageSpec
    from batchpoint.storage.registry import open_backend
    from batchpoint.uri.resolve import ResolvedInput

    account_key = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)["AccountKey"]
    with _relay(blob_url) as relay:
        url = _via(relay, blob_url)
        sdk_client = ContainerClient(url, CONTAINER, credential={"account_name": "devstoreaccount1", "account_key": account_key})
        started = time.perf_counter()
        sdk = sum(1 for _ in sdk_client.list_blobs(name_starts_with="many/"))
        sdk_s = time.perf_counter() - started
        sdk_requests = len(relay.snapshot())
        spec = StorageSpec("azure_blob", {"account_name": "devstoreaccount1", "container_name": CONTAINER,
                                          "blob_endpoint_url": url, "allow_private_network": True},
                           {"kind": "account_key", "account_key": account_key})
        backend_store = open_backend(spec)
        backend_store.is_dir("")  # the client and its imports, before RSS is taken
        rss0, mark = rss_kb(os.getpid()), len(relay.snapshot())
        with PeakRss(os.getpid()) as peak:
            started = time.perf_counter()
            first_s, backend = None, 0
            for _ in backend_store.iter_files("many"):
                backend += 1
                first_s = first_s if first_s is not None else time.perf_counter() - started
            backend_s = time.perf_counter() - started
        backend_requests = relay.snapshot()[mark:]
        folder = Path(tempfile.mkdtemp(prefix="bp-scale-lister-"))
        try:
            resolved = ResolvedInput(uri="azureml://datastores/scaleblob/paths/many", type="uri_folder", spec=spec, path="many")
            lister = Lister(_NoStore(), "bench", [("input_data", resolved)], 100, JobFolder.local(folder, "bench").manifest())
            started = time.perf_counter()
            lister.start()
            planned = sum(len(b.files) for b in lister.batches())
            lister_s = time.perf_counter() - started
            lister.raise_if_failed()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"blobs": sdk, "sdk_list_s": sdk_s, "sdk_list_requests": sdk_requests,
            "backend_list_s": backend_s, "backend_first_file_s": first_s, "backend_listed": backend,
            "backend_list_requests": len(backend_requests),
            "backend_list_page_sizes": relay.list_page_sizes_of(backend_requests),
            "backend_list_rss_growth_mib": (peak.peak - rss0) / 1024,
            "backend_over_sdk": backend_s / sdk_s if sdk_s else None,
            "lister_s": lister_s, "lister_planned": planned}


class _NoStore:
    """The lister records the end of its listing on the job; here there is no job."""

    def update_job(self, *args, **kwargs) -> bool:
        return True


def azurite_job(args, server: Server, ml_client, home: Path, blob_url: str, account_key: str) -> dict:
    """A job over the container's blobs, its requests to Azurite counted by the relay: the server's
    (List Blobs, HEAD) and its workers' (one GET per blob scored)."""
    from batchpoint import Datastore, Input

    with _relay(blob_url) as relay:
        ml_client.datastores.create_or_update(Datastore(
            name="scaleblob", type="azure_blob", account_name="devstoreaccount1", container_name=CONTAINER,
            blob_endpoint_url=_via(relay, blob_url), allow_private_network=True,
            credentials={"account_key": account_key}))
        warm = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(  # the server's Azure imports
            type="uri_file", path="azureml://datastores/scaleblob/paths/many/d0000/f0000000.csv"))
        wait(ml_client, warm.name)
        rows0, rss0, mark = db_rows(home / "metadata.db"), rss_kb(server.pid), len(relay.snapshot())
        with PeakRss(server.pid) as peak:
            job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(
                type="uri_folder", path="azureml://datastores/scaleblob/paths/many"))
            until = time.monotonic() + args.azurite_seconds if args.azurite_seconds > 0 else None
            got = wait(ml_client, job.name, until=until)
            requests = relay.snapshot()[mark:]
            if got.status not in ("Completed", "Failed", "Canceled"):
                ml_client.jobs.cancel(job.name)
                wait(ml_client, job.name, until=time.monotonic() + 30)  # its workers stopped before the relay goes
        kinds = relay.kinds_of(requests)
    created = got.created_at.timestamp()

    def since(at):
        return at.timestamp() - created if at else None

    server_requests = sum(n for kind, n in kinds.items() if kind != "get")
    return {"job": got.name, "status_at_end_of_window": got.status,
            "first_mini_batch_s": since(got.first_mini_batch_at),
            "listing_done_s": since(got.listing_completed_at),
            "completed_s": since(got.end_time) if got.status == "Completed" else None,
            "files_listed": got.progress.files_total, "files_scored": got.progress.files_completed,
            "window_s": args.azurite_seconds, "rss_growth_mib": (peak.peak - rss0) / 1024,
            "db_rows_added": db_rows(home / "metadata.db") - rows0,
            "requests": dict(kinds), "list_page_sizes": relay.list_page_sizes_of(requests),
            "server_requests_per_file_listed": server_requests / max(1, got.progress.files_total),
            "worker_gets_per_file_scored": kinds.get("get", 0) / max(1, got.progress.files_completed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--mini-batch-size", type=int, default=100)
    parser.add_argument("--azurite-connection-string", default=os.environ.get("BATCHPOINT_TEST_AZURITE_CONNECTION_STRING"))
    parser.add_argument("--azurite-blob-url", default=os.environ.get("BATCHPOINT_TEST_AZURITE_BLOB_URL"))
    parser.add_argument("--azurite-blobs", type=int, default=100_000)
    parser.add_argument("--azurite-seconds", type=float, default=60.0,
                        help="how long the Azurite job runs before it is canceled (0: until it ends)")
    parser.add_argument("--azurite-concurrency", type=int, default=16, help="Put Blob requests in flight")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    result: dict = {"args": {k: v for k, v in vars(args).items() if k != "azurite_connection_string"},
                    "load_before": os.getloadavg()[0]}
    if args.azurite_connection_string:
        started = time.perf_counter()
        result["azurite_upload"] = upload(args.azurite_connection_string, args.azurite_blobs, args.azurite_concurrency)
        say(f"azurite: {args.azurite_blobs} blobs in place ({time.perf_counter() - started:.0f} s)")
        result["azurite_listing"] = azurite_listing(args.azurite_connection_string, args.azurite_blob_url)
        say(f"azurite listing: {result['azurite_listing']}")
    home = DATA_ROOT / "home-scale"
    shutil.rmtree(home, ignore_errors=True)
    server = Server(home)
    try:
        from batchpoint import MLClient

        with MLClient(endpoint=server.url, home=home) as ml_client:
            deploy(ml_client, home, args.mini_batch_size)
            if not args.skip_local:
                result["local"] = local_run(args, server, ml_client, home)
                say(f"local: {json.dumps(result['local'])}")
            if args.azurite_connection_string:
                key = dict(p.split("=", 1) for p in args.azurite_connection_string.split(";") if "=" in p)["AccountKey"]
                result["azurite_job"] = azurite_job(args, server, ml_client, home, args.azurite_blob_url, key)
                say(f"azurite job: {json.dumps(result['azurite_job'])}")
    finally:
        server.stop()
    result["load_after"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    say(f"results: {out}")


if __name__ == "__main__":
    sys.exit(main())
