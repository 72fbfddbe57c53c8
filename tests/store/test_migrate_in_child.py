"""The server migrates its database in a forked child (``store/migrate.py`` ``upgrade_in_child``):
Alembic and Mako never enter the server's memory (~10 MiB of its resident set; issue 24 §5), the
database still reaches the newest schema, and a database that cannot be prepared still stops the
start with the same clear error. Each check runs in a fresh interpreter (this test process has
imported Alembic already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from pathlib import Path
from sqlalchemy import text
from batchpoint.server.app import build_context
from batchpoint.settings import Settings
home, url = Path(sys.argv[1]), sys.argv[2]
out = {}
try:
    ctx = build_context(Settings(home=home, database_url=url))
    with ctx.store.engine.connect() as connection:
        out["revision"] = connection.execute(text("select version_num from alembic_version")).scalar_one()
except Exception as exc:
    out["error"] = f"{exc.__class__.__name__}: {exc}"
out["loaded"] = sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako"})
print(json.dumps(out))
"""


def _start(home: Path, url: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(home), url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _head() -> str:
    from alembic.script import ScriptDirectory

    from batchpoint.store.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_server_migrates_to_the_newest_schema_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    first = _start(tmp_path / "home", url)
    assert first == {"revision": _head(), "loaded": []}, first
    assert _start(tmp_path / "home", url) == first  # started again on the same database: nothing to do


def test_a_database_that_cannot_be_prepared_stops_the_start_naming_why(tmp_path: Path) -> None:
    result = _start(tmp_path / "home", f"sqlite:///{tmp_path / 'no-such-folder' / 'metadata.db'}")
    assert result["error"].startswith("BatchpointError: cannot prepare the metadata database: OperationalError: "), result
    assert "unable to open database file" in result["error"], result
