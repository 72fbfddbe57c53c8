"""Lazily imported plug-ins (storage backends, engines): ``"module:Class"`` plus the pip extra
that installs what the module needs, so a missing optional dependency is an install hint."""

from __future__ import annotations

import importlib
from typing import Any

from batchpoint.exceptions import BackendNotInstalledError


def load(target: str, extra: str | None, what: str) -> Any:
    """The attribute ``target`` names; :class:`BackendNotInstalledError` with the install command
    when its module (or one it imports) is missing. ``what`` names the plug-in in that message."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'batchpoint[{extra}]'" if extra else "reinstall batchpoint"
        raise BackendNotInstalledError(
            f"{what} needs a package that is not installed ({exc.name}); run: {hint}"
        ) from exc
    return getattr(module, attribute)
