"""Fixtures of the observability tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def cli_inproc(server: Any) -> Any:
    """``cli``'s twin: the same ``batchpoint`` command against the session server, run in this
    process (``fixtures/inproc_cli.py``) instead of a new Python process."""
    from fixtures.inproc_cli import cli_on

    return cli_on(server)
