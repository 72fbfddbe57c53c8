"""Warm workers (``engines/warm.py``) are freed when their deployment changes, and shown on the web
page's servers view — in process: the real app over SQLite (``fixtures/inproc.py``), with parked
workers that are real child processes (no sandbox needed to see them stopped).

* updating a deployment (PUT or PATCH), deleting it, and deleting its endpoint stop its parked
  workers at once (their folders go too); another deployment's are kept;
* a worker serving a job when its deployment is updated is not parked at that job's end;
* /ui/servers shows per deployment the parked workers, their resident memory and idle time left,
  and the Ray actors parked (``engines/ray_warm.py``), the cluster CPUs they hold and idle time left;
* a compute's ``min_instances`` keeps that many instances' worth (× max_concurrency_per_instance) of a
  deployment's parked workers past the idle timeout; storing the compute with fewer (a scale-down)
  stops the ones no longer kept at once.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from batchpoint.engines.planning import EngineJob, RetryPolicy
from batchpoint.engines.sandbox import _SandboxProcess
from batchpoint.engines.warm import POOL, WarmWorker
from batchpoint.worker import protocol
from fixtures.inproc import InProc, workspace

SLEEPER = "import time\nx = bytearray(24 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(120)\n"


@pytest.fixture
def pool() -> Iterator[None]:
    POOL.stop_all("the test ended")
    POOL.min_instances.clear()  # what computes other tests stored
    yield
    POOL.stop_all("the test ended")
    POOL.min_instances.clear()


def parked(tmp_path: Path, deployment: str, idle_s: float = 300.0) -> WarmWorker:
    """A parked worker of ``deployment``: a real process (24 MiB resident), an exchange folder."""
    wid = f"w{len(list(tmp_path.glob('w*')))}"
    worker = WarmWorker(wid, "key-" + deployment, deployment, tmp_path / wid, tmp_path / f"{wid}.log", idle_s)
    worker.exchange.mkdir()
    worker.proc = _SandboxProcess(subprocess.Popen([sys.executable, "-c", SLEEPER]))
    worker.parked_at = time.monotonic()
    with POOL.lock:
        POOL.parked.append(worker)
    return worker


def answering(worker: WarmWorker) -> Connection:
    """Give ``worker`` a connection whose other end answers ``park`` with ``parked``; that end."""
    ours, theirs = socket.socketpair()
    worker.conn, peer = Connection(ours.detach()), Connection(theirs.detach())
    threading.Thread(target=lambda: peer.poll(10) and peer.recv_bytes() and peer.send_bytes(
        protocol.encode(protocol.parked(0))), daemon=True).start()
    return peer


def gone(worker: WarmWorker) -> bool:
    return worker not in POOL.parked and not worker.alive() and not worker.exchange.exists()


@pytest.fixture
def inproc(tmp_path: Path, pool: None) -> Iterator[InProc]:
    with workspace(tmp_path) as w:
        w.deploy("epa")  # deployment "echo"
        w.deploy("other")
        yield w


def test_updating_a_deployment_stops_its_parked_workers_and_keeps_the_others(tmp_path: Path, inproc: InProc) -> None:
    one, two = parked(tmp_path, "epa/echo"), parked(tmp_path, "epa/echo")
    other = parked(tmp_path, "other/echo")
    response = inproc.owner.patch("/batchEndpoints/epa/deployments/echo", json={"settings": {"mini_batch_size": 3}})
    assert response.status_code == 200, response.text
    assert gone(one) and gone(two), "the updated deployment's parked workers were kept"
    assert other in POOL.parked and other.alive()
    body = inproc.owner.get("/batchEndpoints/other/deployments/echo").json()
    again = parked(tmp_path, "other/echo")
    response = inproc.owner.put("/batchEndpoints/other/deployments/echo",
                                json={k: body[k] for k in ("model", "code_configuration", "env_manager", "settings")})
    assert response.status_code == 200, response.text
    assert gone(other) and gone(again), "a PUT over the deployment kept its parked workers"


def test_deleting_a_deployment_or_its_endpoint_stops_its_parked_workers(tmp_path: Path, inproc: InProc) -> None:
    body = inproc.owner.get("/batchEndpoints/epa/deployments/echo").json()
    response = inproc.owner.put("/batchEndpoints/epa/deployments/second", params={"set_default": True},
                                json={k: body[k] for k in ("model", "code_configuration", "env_manager", "settings")})
    assert response.status_code == 200, response.text
    first, second = parked(tmp_path, "epa/echo"), parked(tmp_path, "epa/second")
    other = parked(tmp_path, "other/echo")
    assert inproc.owner.delete("/batchEndpoints/epa/deployments/echo").status_code in (200, 202, 204)
    assert gone(first) and second in POOL.parked and other in POOL.parked
    assert inproc.owner.delete("/batchEndpoints/epa").status_code in (200, 202, 204)
    assert gone(second), "the endpoint's delete kept its deployment's parked workers"
    assert other in POOL.parked and other.alive()


def test_a_worker_serving_a_job_when_its_deployment_changes_is_not_parked_after_it(tmp_path: Path, pool: None) -> None:
    serving = parked(tmp_path, "epa/echo")
    with POOL.lock:
        POOL.parked.remove(serving)  # taken by a job
    serving.since = time.monotonic()
    (serving.exchange / "parts").mkdir()
    time.sleep(0.01)
    POOL.release("epa", "echo", "the test updated it")
    job = EngineJob(name="j", workers=1, scorer={}, sources={}, policy=RetryPolicy(0, 60.0, -1),
                    parts_dir=str(tmp_path / "job" / "parts"), logs_dir=str(tmp_path / "job" / "logs"),
                    deployment="epa/echo")
    peer = answering(serving)
    assert POOL.park(serving, job) is False
    assert serving not in POOL.parked
    peer.close()
    assert gone(serving)
    later = parked(tmp_path, "epa/echo")  # a worker started after the change is kept as usual
    assert later in POOL.parked and not POOL._released_since(later)


def servers_page(inproc: InProc) -> str:
    """/ui/servers, signed in with the Owner's key through the sign-in form."""
    client = inproc.owner
    if "bp_session" not in client.cookies:
        form = client.get("/ui/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        key = (inproc.home / "owner.key").read_text().strip()
        response = client.post("/ui/sign-in", data={"csrf": csrf, "next": "/ui/servers", "api_key": key},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
    page = client.get("/ui/servers")
    assert page.status_code == 200 and "<h1>Servers</h1>" in page.text, page.text
    return page.text


def test_the_servers_page_shows_each_deployments_warm_workers(tmp_path: Path, inproc: InProc) -> None:
    text = servers_page(inproc)
    assert 'id="no-warm-workers"' in text and 'id="warm-workers"' not in text
    parked(tmp_path, "epa/echo", idle_s=300)
    parked(tmp_path, "epa/echo", idle_s=100)
    parked(tmp_path, "other/echo", idle_s=30)
    deadline = time.monotonic() + 20  # each child has touched its 24 MiB
    while time.monotonic() < deadline and not all(
            rss >= n * (24 << 20) for n, rss in POOL.snapshot().values()):
        time.sleep(0.1)
    text = servers_page(inproc)
    rows = re.findall(r'<tr class="warm"><td class="deployment">([^<]+)</td><td class="workers">(\d+)</td>\s*'
                      r'<td class="memory">(\d+) MiB</td><td class="idle-left">([^<]*)</td>', text)
    assert [(d, n) for d, n, _, _ in rows] == [("epa/echo", "2"), ("other/echo", "1")], text
    (_, _, ep_mib, ep_idle), (_, _, other_mib, other_idle) = rows
    assert int(ep_mib) >= 48 and int(other_mib) >= 24
    assert re.fullmatch(r"(1m 40s|1m [23]\ds) to (5m 00s|4m [45]\ds)", ep_idle), ep_idle  # the soonest to the latest
    assert re.fullmatch(r"[12]\ds|30s", other_idle), other_idle


def test_min_instances_keeps_parked_workers_past_the_idle_timeout_and_a_scale_down_frees_them(
        tmp_path: Path, inproc: InProc) -> None:
    response = inproc.owner.put("/computes/cpu-cluster", json={"min_instances": 1, "max_instances": 2})
    assert response.status_code == 200, response.text
    workers = [parked(tmp_path, "epa/echo", idle_s=0.2) for _ in range(3)]  # 2 workers an instance, parked in turn
    for i, w in enumerate(workers):
        w.compute, w.min_instances, w.per_instance, w.parked_at = "cpu-cluster", 1, 2, time.monotonic() - 10 + i
    other = parked(tmp_path, "other/echo", idle_s=0.2)
    other.parked_at -= 10
    POOL._expire()
    assert gone(workers[0]) and gone(other), "workers past their idle timeout beyond min_instances were kept"
    assert workers[1] in POOL.parked and workers[2] in POOL.parked, "min_instances × concurrency were not kept"
    assert "2 kept (compute min_instances)" in servers_page(inproc)
    POOL._expire()
    assert workers[1].alive() and workers[2].alive()
    response = inproc.owner.put("/computes/cpu-cluster", json={"min_instances": 0, "max_instances": 2})
    assert response.status_code == 200, response.text
    assert gone(workers[1]) and gone(workers[2]), "the scale-down to min_instances 0 kept them"


def test_a_jobs_compute_gives_its_warm_workers_min_instances_and_concurrency() -> None:
    from types import SimpleNamespace

    from batchpoint.jobs.plan import ComputePlan, EnginePlan, Limits
    from batchpoint.jobs.runner import warm_compute

    plan = SimpleNamespace(engine=EnginePlan("local", ComputePlan("cpu-cluster", {"min_instances": 2})),
                           limits=Limits(instance_count=3, workers=12))
    assert warm_compute(plan) == {"name": "cpu-cluster", "min_instances": 2, "per_instance": 4}
    assert warm_compute(SimpleNamespace(engine=EnginePlan("local", None), limits=Limits())) is None


def test_a_parked_worker_takes_its_jobs_compute_and_the_latest_min_instances(tmp_path: Path, pool: None) -> None:
    def job(compute: dict | None) -> EngineJob:
        return EngineJob(name="j", workers=2, scorer={}, sources={}, policy=RetryPolicy(0, 60.0, -1),
                         parts_dir=str(tmp_path / "job" / "parts"), logs_dir=str(tmp_path / "job" / "logs"),
                         deployment="epa/echo", warm_compute=compute)

    first, second = parked(tmp_path, "epa/echo"), parked(tmp_path, "epa/echo")
    POOL.stop_all("taken")  # as if a job had them; parked again below
    for w in (first, second):
        w.exchange.mkdir(exist_ok=True)
        (w.exchange / "parts").mkdir(exist_ok=True)
        w.proc = _SandboxProcess(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    peers = [answering(first)]
    assert POOL.park(first, job({"name": "cpu-cluster", "min_instances": 1, "per_instance": 2}))
    assert (first.compute, first.min_instances, first.per_instance) == ("cpu-cluster", 1, 2)
    POOL.rescale("cpu-cluster", 3)  # stored since the job was invoked: newer than its plan
    assert first.min_instances == 3
    peers.append(answering(second))
    assert POOL.park(second, job({"name": "cpu-cluster", "min_instances": 1, "per_instance": 2}))
    assert second.min_instances == 3
    for peer in peers:
        peer.close()


def test_the_servers_page_shows_the_ray_actors_parked_per_deployment(inproc: InProc) -> None:
    """Ray actors this server parked (``engines/ray_warm.py``) get their own table: how many, the
    cluster CPUs they hold, the idle time left; with none parked anywhere the page says so."""
    from batchpoint.engines.ray_warm import RAY_POOL, ParkedActor

    def actor(deployment: str, cpus: float, idle_s: float) -> ParkedActor:
        return ParkedActor(actor=None, key="key-" + deployment, deployment=deployment, address="127.0.0.1:6379",
                           num_cpus=cpus, idle_s=idle_s, parked_at=time.monotonic())

    assert 'id="warm-actors"' not in servers_page(inproc)
    shown = [actor("epa/echo", 0.5, 300), actor("epa/echo", 0.5, 90), actor("other/echo", 1.0, 20)]
    with RAY_POOL.lock:
        RAY_POOL.parked.extend(shown)
    try:
        text = servers_page(inproc)
    finally:
        with RAY_POOL.lock:
            for a in shown:
                RAY_POOL.parked.remove(a)
    rows = re.findall(r'<tr class="warm-actor"><td class="deployment">([^<]+)</td><td class="actors">(\d+)</td>\s*'
                      r'<td class="cpus">([^<]+)</td><td class="idle-left">([^<]*)</td>', text)
    assert [(d, n, c) for d, n, c, _ in rows] == [("epa/echo", "2", "1"), ("other/echo", "1", "1")], text
    assert re.fullmatch(r"1m [23]\ds to (5m 00s|4m [45]\ds)", rows[0][3]), rows[0][3]
    assert re.fullmatch(r"1\ds|20s", rows[1][3]), rows[1][3]
    assert 'id="no-warm-workers"' not in text and 'id="warm-workers"' not in text  # no local pool worker parked
    assert 'id="no-warm-workers"' in servers_page(inproc)


def test_min_instances_keeps_parked_ray_actors_past_the_idle_timeout_and_a_scale_down_frees_them(
        inproc: InProc, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's parked actors (``engines/ray_warm.py``) follow their compute's ``min_instances`` as the
    local pool's workers do: the most recently parked ``min_instances × per_instance`` of a deployment
    outlive the idle timeout (shown as kept), the rest are killed; storing the compute with
    ``min_instances: 0`` kills the kept ones at once. In process: actors that record their kill."""
    from batchpoint.engines.ray_warm import RAY_POOL, ParkedActor

    killed: list[str] = []
    monkeypatch.setattr(ParkedActor, "kill", lambda self: killed.append(self.actor))
    RAY_POOL.stop_all("the test starts")
    killed.clear()
    response = inproc.owner.put("/computes/ray-cluster", json={"min_instances": 1, "max_instances": 2})
    assert response.status_code == 200, response.text

    def actor(name: str, deployment: str, compute: str | None) -> ParkedActor:
        return ParkedActor(actor=name, key="key-" + deployment, deployment=deployment, address="127.0.0.1:6379",
                           num_cpus=0.5, idle_s=0.3, since=time.monotonic(), compute=compute,
                           min_instances=1 if compute else 0, per_instance=2)  # as the Ray engine parks them

    try:
        for name in ("a0", "a1", "a2"):  # parked in turn: a1 and a2 are the newest two (1 instance × 2)
            assert RAY_POOL.park(actor(name, "epa/echo", "ray-cluster"), most=3)
            time.sleep(0.01)
        assert RAY_POOL.park(actor("b0", "other/echo", None), most=3)  # no compute: only the idle timeout
        deadline = time.monotonic() + 10
        while sorted(killed) != ["a0", "b0"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # past the idle timeout again: the kept two stay
        assert sorted(killed) == ["a0", "b0"], killed
        assert sorted(a.actor for a in RAY_POOL.parked) == ["a1", "a2"]
        text = servers_page(inproc)
        assert re.search(r'<tr class="warm-actor"><td class="deployment">epa/echo</td><td class="actors">2</td>', text)
        assert "2 kept (compute min_instances)" in text, text
        response = inproc.owner.put("/computes/ray-cluster", json={"min_instances": 0, "max_instances": 2})
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 10
        while RAY_POOL.parked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(killed) == ["a0", "a1", "a2", "b0"], "the scale-down to min_instances 0 kept them"
    finally:
        RAY_POOL.stop_all("the test ended")
        RAY_POOL.min_instances.clear()
