"""Paging of list routes: ``?limit=`` (1–1000, default 100) and ``?skip=`` (0–10⁹ rows to pass over).

The SDK walks the pages (``ml_client.jobs.list()`` returns every job, not the first 100)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Query

MAX_PAGE = 1000
MAX_SKIP = 1_000_000_000  # far beyond any list, and well inside the databases' 64-bit integers


@dataclass(frozen=True)
class Page:
    limit: int
    skip: int


def page(limit: int = Query(100, ge=1, le=MAX_PAGE, description="rows per page (1-1000)"),
         skip: int = Query(0, ge=0, le=MAX_SKIP, description="rows to skip (the next page: skip + limit)")) -> Page:
    return Page(limit, skip)
