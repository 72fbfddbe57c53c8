"""Helpers of the scale tests: many small files fast (on disk, and as blobs in Azurite), a no-op
deployment, a server's memory and its metadata database's size, and a counting relay in front of
Azurite (which requests the server and its workers send it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Model

NOOP_SCORE = '''
import os


def init():
    pass


def run(mini_batch):
    return [os.path.basename(path) for path in mini_batch]
'''


@contextmanager
def scratch_folder(fallback: Path) -> Iterator[Path]:
    """A folder on tmpfs (/dev/shm) when there is one: creating 100,000 files on this VM's disk
    takes half a minute, on tmpfs 3 s. Removed afterwards."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback
    folder = Path(tempfile.mkdtemp(prefix="bp-scale-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_small_files(folder: Path, count: int, per_folder: int = 1000) -> list[str]:
    """``count`` one-row CSV files in sub-folders of ``per_folder``; their paths relative to ``folder``."""
    names = []
    for i in range(count):
        sub = f"d{i // per_folder:04d}"
        if i % per_folder == 0:
            (folder / sub).mkdir(parents=True, exist_ok=True)
        rel = f"{sub}/f{i:07d}.csv"
        fd = os.open(folder / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"x\n{i}\n".encode())
        os.close(fd)
        names.append(rel)
    return names


def upload_small_blobs(connection_string: str, container: str, count: int, prefix: str = "many",
                       concurrency: int = 16) -> None:
    """``count`` one-row blobs ``<prefix>/dNNNN/fNNNNNNN.csv`` in a new ``container``: real Put Blob
    requests (listed by List Blobs like any blob), over one keep-alive ``aiohttp`` session with a
    container SAS, ``concurrency`` at a time. Azurite is the limit (~4 ms of its CPU per blob, more
    the more blobs its account holds); the SDK's ``upload_blob`` spends ~5× this client CPU per blob
    (2.8 ms against 0.6 ms, measured), CPU that Azurite needs on 2 cores."""
    import aiohttp
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    BlobServiceClient.from_connection_string(connection_string).create_container(container)
    sas = generate_container_sas(parts["AccountName"], container, account_key=parts["AccountKey"],
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=2))
    base = f"{parts['BlobEndpoint'].rstrip('/')}/{container}/{prefix}"
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Content-Type": "text/csv"}

    async def run() -> None:
        numbers = iter(range(count))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def lane() -> None:
                for i in numbers:
                    async with session.put(f"{base}/d{i // 1000:04d}/f{i:07d}.csv?{sas}",
                                           data=f"x\n{i}\n".encode(), headers=headers) as response:
                        assert response.status == 201, (response.status, await response.text())

            await asyncio.gather(*(lane() for _ in range(concurrency)))

    asyncio.run(run())


class CountingRelay:
    """A TCP relay on 127.0.0.1 in front of a real server (Azurite): bytes pass through unchanged,
    and the head of each HTTP request on the way (request line, Content-Length or chunked body
    skipped over) is recorded, so a test counts the requests a Batchpoint server and its workers
    send to storage. ``url(path)`` is the relay's address for a URL path."""

    def __init__(self, target: str) -> None:
        split = urlsplit(target)
        self.target_host, self.target_port = split.hostname or "127.0.0.1", split.port or 80
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counting-relay", daemon=True)
        self.port = 0

    def __enter__(self) -> CountingRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @staticmethod
    def kinds_of(requests: list[tuple[str, str]]) -> Counter[str]:
        """Requests by kind: ``list`` (List Blobs), ``get`` (a blob read), ``head``, else ``METHOD comp``."""
        counts: Counter[str] = Counter()
        for method, target in requests:
            comp = parse_qs(urlsplit(target).query).get("comp", [""])[0]
            if comp == "list":
                counts["list"] += 1
            elif method == "GET" and not comp:
                counts["get"] += 1
            elif method == "HEAD":
                counts["head"] += 1
            else:
                counts[f"{method} {comp}".strip()] += 1
        return counts

    @staticmethod
    def list_page_sizes_of(requests: list[tuple[str, str]]) -> list[int]:
        """The ``maxresults`` of each List Blobs request, in order (0: none asked)."""
        sizes = []
        for _, target in requests:
            query = parse_qs(urlsplit(target).query)
            if query.get("comp", [""])[0] == "list":
                sizes.append(int(query.get("maxresults", ["0"])[0]))
        return sizes

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)

        async def responses() -> None:
            try:
                while chunk := await up_r.read(65536):
                    client_w.write(chunk)
                    await client_w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                client_w.close()

        back = asyncio.ensure_future(responses())
        try:
            while True:
                head = await client_r.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                with self._lock:
                    self.requests.append((method, target))
                up_w.write(head)
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size_line = await client_r.readuntil(b"\r\n")
                        size = int(size_line.split(b";")[0], 16)
                        up_w.write(size_line + await client_r.readexactly(size + 2))
                        if size == 0:
                            break
                elif (length := int(fields.get("content-length", "0") or 0)) > 0:
                    up_w.write(await client_r.readexactly(length))
                await up_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass  # the client closed, or the relay stops (a cancelled handler would be logged as an error)
        finally:
            up_w.close()
            back.cancel()
            await asyncio.gather(back, return_exceptions=True)


def deploy_noop(client: Any, tmp: Path, endpoint: str, mini_batch_size: int, workers: int = 2) -> None:
    """Endpoint ``endpoint`` with a deployment of a no-op script (one row per file, its name)."""
    model, code = tmp / "model", tmp / "code"
    for folder in (model, code):
        folder.mkdir(parents=True, exist_ok=True)
    (model / "weights.txt").write_text("none\n")
    (code / "score.py").write_text(NOOP_SCORE)
    client.models.create_or_update(Model(name="noop", type="custom_model", path=str(model)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="noop", endpoint_name=endpoint, model="azureml:noop@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        instance_count=1, max_concurrency_per_instance=workers, mini_batch_size=mini_batch_size,
        error_threshold=-1, retry_settings={"max_retries": 1, "timeout": 120},
        output_action="append_row", output_file_name="predictions.csv"), set_default=True).result()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def table_rows(db: Path) -> dict[str, int]:
    """Rows per table of a SQLite database (read while the server writes it: WAL)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


class JobSampler:
    """While a job runs: the server's peak RSS, and how far its lister ran ahead of the finished
    mini-batches (manifest lines written minus done-log lines) while the listing was going on."""

    def __init__(self, pid: int, job_dir: Path, interval: float = 0.1) -> None:
        self.pid, self.job_dir, self.interval = pid, job_dir, interval
        self.peak_rss_kb = 0
        self.max_lead = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> JobSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(self.pid))
            manifest = self.job_dir / "manifest.jsonl"
            listed = lines(manifest)
            done = lines(self.job_dir / "done.jsonl")
            if listed and b'"complete"' not in _tail(manifest):
                self.max_lead = max(self.max_lead, listed - done)
                self.samples += 1
            time.sleep(self.interval)


def _tail(path: Path, size: int = 200) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read()
    except FileNotFoundError:
        return b""
