"""``python -m batchpoint.worker``: a worker in this interpreter, for an engine in another one.

    python -m batchpoint.worker --fd N      serve the engine over inherited socket N (the launcher
                                            passes one end of a socketpair; see
                                            batchpoint.engines.launchers.SubprocessLauncher)
    python -m batchpoint.worker --selfcheck print what the worker side imports, as JSON; exit 1
                                            when it imports any of the server side

The interpreter needs Batchpoint (the same version as the server: the protocol is versioned),
pandas/pyarrow and what the scorer needs (MLflow for a model without a scoring script).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from multiprocessing.connection import Connection

from batchpoint.worker import server_side_modules
from batchpoint.worker.protocol import PROTOCOL_VERSION


def selfcheck() -> int:
    import batchpoint.scoring.scorers  # noqa: F401 - what a worker imports before init()
    import batchpoint.storage.local  # noqa: F401
    import batchpoint.storage.registry  # noqa: F401
    import batchpoint.worker.loop  # noqa: F401

    found = server_side_modules(list(sys.modules))
    print(json.dumps({"protocol_version": PROTOCOL_VERSION, "python": sys.executable,
                      "server_side_modules": found}))
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchpoint.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fd", type=int, help="an inherited, connected socket to the engine")
    group.add_argument("--selfcheck", action="store_true", help="report what the worker side imports")
    args = parser.parse_args(argv)
    if args.selfcheck:
        return selfcheck()
    gc.disable()  # the worker side's imports (pandas): no garbage to collect, see scoring/mlflow_load.py
    try:
        from batchpoint.worker.loop import serve
    finally:
        gc.enable()

    conn = Connection(args.fd)
    try:
        serve(conn)
    finally:
        conn.close()
    # done: leave at once, as a forked worker does (os._exit), without the interpreter's teardown of
    # pandas/MLflow/scikit-learn (seconds on a busy machine, which the engine would wait for)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
