"""The engine conformance suite (``tests/engines/conformance.py``) on Ray: a head and a worker
node, every worker a Ray actor."""

from __future__ import annotations

import pytest

from engines.conformance import EngineConformance, make_setup

pytestmark = pytest.mark.timeout(180)


class TestRayConformance(EngineConformance):
    @pytest.fixture
    def engine(self, ray_address: str, ray_token: str):
        from batchpoint.engines.ray_engine import RayEngine

        return RayEngine(ray_address, ray_token, num_cpus=0.5)


def test_an_environment_missing_on_the_node_fails_the_job_naming_it(ray_address: str, ray_token: str,
                                                                    tmp_path) -> None:
    import threading

    from batchpoint.engines.planning import plan_minibatches
    from batchpoint.engines.ray_engine import RayEngine
    from batchpoint.exceptions import PlatformError

    setup = make_setup(tmp_path)  # the suite's folders and script
    files = setup.files("a.csv")
    job = setup.job(workers=1, python_exe=str(tmp_path / "no-such-env" / "bin" / "python"))
    with pytest.raises(PlatformError, match=r"no-such-env/bin/python is not on Ray node .*shared environment cache"):
        RayEngine(ray_address, ray_token, num_cpus=0.5).run(job, plan_minibatches(iter(files), 1), lambda o: None,
                                                             threading.Event())


def test_the_clusters_token_is_not_left_in_the_servers_environment(ray_driver: str) -> None:
    """The driver connected with the compute's token; processes it starts later (a deployment
    environment's workers on the local pool) must not inherit it."""
    import os

    import ray

    assert ray.is_initialized() and "RAY_AUTH_TOKEN" not in os.environ
    assert ray.cluster_resources().get("CPU", 0) > 0  # still talking to the cluster without it
