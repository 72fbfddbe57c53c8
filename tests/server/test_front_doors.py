"""The front doors only parse, call a use case (``batchpoint.usecases``) and map (issue 20).

import-linter keeps ``server.routers``, ``server.ui`` and ``server.azure_api`` from importing
``store`` or ``storage`` (pyproject.toml); what no import shows is a handler reaching the store
through the app's context (``ctx.store.get_job(...)``, ``request.app.state.ctx.store``). This finds
every such use, and any ``auth.store`` (the auth service's store, ``workspace/principals.py``) in the
front doors and in their request checks (``server/security.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import batchpoint.server

SERVER = Path(batchpoint.server.__file__).parent
FRONT_DOORS = sorted([*SERVER.glob("routers/*.py"), *SERVER.glob("ui/*.py"), *SERVER.glob("azure_api/*.py"),
                      SERVER / "security.py"])


def store_uses(source: str) -> list[int]:
    """The lines where ``<…>ctx.store`` or ``<…>auth.store`` is read (an attribute ``store`` of
    something named ``ctx`` or ``auth``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "store":
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name in ("ctx", "auth"):
                lines.append(node.lineno)
    return lines


def test_the_check_finds_a_store_read():
    assert store_uses("def f(ctx):\n    return ctx.store.get_job('x')\n") == [2]
    assert store_uses("def f(request):\n    return request.app.state.ctx.store\n") == [2]
    assert store_uses("def f(ctx):\n    return ctx.workspace.datastore_entity(1)\n") == []
    assert store_uses("def f(auth, k):\n    return auth.store.find_api_key(k)\n") == [2]
    assert store_uses("def f(ctx, k):\n    return ctx.auth.store.find_api_key(k)\n") == [2]


def test_no_router_or_page_reads_the_store_itself():
    assert len(FRONT_DOORS) > 20, SERVER
    assert {"azure_api/blob.py", "azure_api/code_env.py", "ui/session.py", "security.py"} \
        <= {str(p.relative_to(SERVER)) for p in FRONT_DOORS}
    found = {f"{path.relative_to(SERVER)}:{line}" for path in FRONT_DOORS for line in store_uses(path.read_text())}
    assert not found, f"read through a use case (batchpoint.usecases) instead: {sorted(found)}"
