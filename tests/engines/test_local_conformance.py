"""The engine conformance suite (``tests/engines/conformance.py``) on the local pool."""

from __future__ import annotations

import pytest

from batchpoint.engines.local_pool import LocalPoolEngine
from engines.conformance import EngineConformance

pytestmark = pytest.mark.timeout(120)


class TestLocalPoolConformance(EngineConformance):
    @pytest.fixture
    def engine(self) -> LocalPoolEngine:
        return LocalPoolEngine()
