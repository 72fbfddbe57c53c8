"""What a worker reports about a failure: the exception (framework frames trimmed) and its kind.

The kind (see ``batchpoint.engines.policy`` for what the engine does with it):

* :class:`StepFailure` — a step of the worker itself failed: fetching a file (``input`` when the
  file was not found, ``platform`` for any other storage or disk fault) or writing a part
  (``platform``: a full disk, a read-only folder).
* an exception with a ``failure_kind`` attribute — e.g. ``scoring.readers.FileReadError``
  (``input``: the file could not be read or parsed).
* anything else the scorer's ``run()`` raised — ``user``.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

FRAMEWORK_DIRS = (str(Path(__file__).resolve().parents[1]),)
KINDS = ("user", "input", "platform", "timeout")


class StepFailure(Exception):
    """A failure of the worker's own step, with its kind and the original exception as ``cause``."""

    def __init__(self, kind: str, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.failure_kind = kind
        self.cause = cause


def failure_kind(exc: BaseException) -> str:
    kind = getattr(exc, "failure_kind", None)
    return kind if kind in KINDS else "user"


def error_info(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    """The exception as a protocol error dict: ``type``, ``message``, ``where`` (the innermost frame
    of the user's code), ``traceback`` (the user's frames), ``kind``."""
    shown_exc = exc.cause if isinstance(exc, StepFailure) else exc
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not f.filename.startswith(FRAMEWORK_DIRS) and "site-packages" not in f.filename]
    where = None
    if user:
        last = user[-1]
        where = f"{Path(last.filename).name}, line {last.lineno}, in {last.name}"
    return {
        "type": type(shown_exc).__name__,
        "message": str(exc)[:2000],
        "where": where,
        "traceback": _user_frames(user)[-6000:],  # only the user's code, named by file: no server paths
        "kind": kind or failure_kind(exc),
    }


def _user_frames(frames: list[traceback.FrameSummary]) -> str:
    """The user's own frames as a traceback, each file by its name (the code folder's place on the
    server is not the user's business); empty when the failure was not in the user's code."""
    out = []
    for f in frames:
        out.append(f'  File "{Path(f.filename).name}", line {f.lineno}, in {f.name}\n')
        if f.line:
            out.append(f"    {f.line}\n")
    return "".join(out)
