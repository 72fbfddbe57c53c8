"""The commands docs/ray.md and docs/multi-server.md tell operators to type (issue 23 §5): every
``batchpoint`` (and ``python -m batchpoint.server``) line of their shell blocks names a command and
options that exist (its ``--help`` lists each option), and docs/ray.md's token steps, run as written (the token file put in a
temporary folder instead of /etc/ray), make a token — where the order it used to give fails."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.inproc_cli import run_cli

DOCS = Path(__file__).resolve().parents[2] / "docs"
BIN = Path(sys.executable).parent


def shell_lines(doc: str) -> list[str]:
    """The lines of a doc's ```bash blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", (DOCS / doc).read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]
    return lines


@pytest.mark.parametrize("doc", ["ray.md", "multi-server.md"])
def test_each_batchpoint_command_in_the_doc_exists_with_its_options(doc: str) -> None:
    commands = [line for line in shell_lines(doc) if line.startswith(("batchpoint ", "python -m batchpoint.server"))]
    assert commands, f"no batchpoint command in docs/{doc}"
    server_help = None
    for line in commands:
        words = shlex.split(line)
        if words[0] == "python":
            verb = []
            shown = server_help or subprocess.run([sys.executable, "-m", "batchpoint.server", "--help"],
                                                  capture_output=True, text=True, timeout=60)
            server_help = shown  # the same answer for each such line: asked once
        else:  # the batchpoint CLI's own --help, run in this process (fixtures/inproc_cli.py)
            verb = [w for w in words[1:3] if not w.startswith("-")]
            shown = subprocess.CompletedProcess(["batchpoint", *verb, "--help"],
                                                *run_cli(dict(os.environ), *verb, "--help"))
        assert shown.returncode == 0, f"docs/{doc}: `{line}`: {shown.stderr}"
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in shown.stdout, f"docs/{doc}: `{line}`: {option} is not an option of {' '.join(verb)}"


def test_the_ray_token_steps_work_as_written(tmp_path: Path) -> None:
    steps = [line for line in shell_lines("ray.md") if "auth" in line and not line.startswith("batchpoint")]
    generate = next(line for line in steps if "get-auth-token --generate" in line)
    install = next(line for line in steps if line.startswith("install "))
    home, target = tmp_path / "home", tmp_path / "etc-ray" / "auth_token"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "HOME": str(home),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    # as the doc used to say: RAY_AUTH_TOKEN_PATH exported first, then generate: Ray refuses
    wrong = subprocess.run(["bash", "-c", "ray get-auth-token --generate"], capture_output=True, text=True,
                           timeout=120, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(target)})
    assert "cannot be opened" in wrong.stderr + wrong.stdout and not target.exists()
    # as it says now (the same variables set in the shell do not matter: `env -u` drops the path)
    script = "\n".join([generate, install.replace("/etc/ray/auth_token", str(target))])
    done = subprocess.run(["bash", "-ec", script], capture_output=True, text=True, timeout=120,
                          env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(target)})
    assert done.returncode == 0, done.stderr
    token = target.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32,}", token), token
    assert target.stat().st_mode & 0o777 == 0o600
