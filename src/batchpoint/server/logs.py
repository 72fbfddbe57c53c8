"""The server's logging: one line format on stderr (``<home>/server.log`` for the embedded
server), and a :class:`~batchpoint._internal.redact.RedactingFilter` on every handler — the root
logger's (``batchpoint.*``, the storage SDKs) and uvicorn's own, which do not propagate.

The filter masks secret-looking text (``AccountKey=``, ``sig=``, ``Bearer …``, API keys, signed
tokens, ``password=``, …) and the exact values of the secrets this server holds: every data store
credential and compute identity secret, registered when the server starts and when one is saved
(:func:`remember_secrets`).
"""

from __future__ import annotations

import logging
from batchpoint._internal.redact import PROCESS_REDACTOR, RedactingFilter, install_redacting_filter, remember_secrets

__all__ = ["FORMAT", "REDACTOR", "configure_logging", "redact_handlers", "remember_secrets"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The values the server's log filter masks, shared by every handler.
REDACTOR = PROCESS_REDACTOR


def configure_logging(level: int = logging.INFO) -> None:
    """The root logger's handler (stderr) and format; call :func:`redact_handlers` once the other
    handlers (uvicorn's) exist too."""
    logging.basicConfig(level=level, format=FORMAT)


def redact_handlers() -> RedactingFilter:
    """Attach the redacting filter to every handler configured so far."""
    return install_redacting_filter(REDACTOR)

