"""The engine conformance suite (``tests/engines/conformance.py``) on Ray: a head and a worker
node, every worker a Ray actor."""

from __future__ import annotations

import pytest

from engines.conformance import EngineConformance

pytestmark = pytest.mark.timeout(180)


class TestRayConformance(EngineConformance):
    @pytest.fixture
    def engine(self, ray_address: str, ray_token: str):
        from batchpoint.engines.ray_engine import RayEngine

        return RayEngine(ray_address, ray_token, num_cpus=0.5)
