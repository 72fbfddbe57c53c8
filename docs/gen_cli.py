"""Write docs/cli.md from the CLI itself: every group, every verb, its ``--help``.

    .venv/bin/python docs/gen_cli.py          # rewrites docs/cli.md
    .venv/bin/python docs/gen_cli.py --check  # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

OUT = Path(__file__).resolve().parent / "cli.md"

INTRO = """\
# CLI reference

`batchpoint <group> <verb> [options]` — the verbs and options of `az ml`, for batch endpoints.
Generated from the commands' own `--help` by `docs/gen_cli.py`; do not edit by hand.

Every command that prints a resource takes `-o/--output json|tsv|table|yaml|none` (default
`json`) and `--query <JMESPath>` (as `az` does), e.g.
`batchpoint batch-endpoint invoke ... --query name -o tsv` prints only the job name.

With no `BATCHPOINT_SERVER_URL` set, commands use the local server under `BATCHPOINT_HOME`
(default `~/.batchpoint`), starting it on first use. Errors print one `ERROR:` line and exit 1; a
usage error (an unknown option, a missing required one) exits 2 with click's `Usage:` message, and a
declined confirmation (or Ctrl-C) prints `Aborted.` and exits 130.
"""


def _help(command: click.Command, path: list[str]) -> str:
    with click.Context(command, info_name=" ".join(path), max_content_width=100, terminal_width=100,
                       help_option_names=["-h", "--help"]) as ctx:
        return command.get_help(ctx)


def render() -> str:
    from batchpoint.cli.main import cli

    parts = [INTRO, "## Groups\n"]
    groups = sorted(cli.commands.items())
    for name, group in groups:
        short = group.get_short_help_str(limit=90)
        parts.append(f"- [`{name}`](#{name}) — {short}")
    parts.append("")
    parts.append("```text\n" + _help(cli, ["batchpoint"]) + "\n```\n")
    for name, group in groups:
        _section(parts, group, [name])
    return "\n".join(parts).rstrip() + "\n"


def _section(parts: list[str], command: click.Command, path: list[str]) -> None:
    """One heading per command; groups nested in groups (``role assignment``) are followed down."""
    level = "#" * min(len(path) + 1, 4)
    parts.append(f"{level} {' '.join(path)}\n")
    parts.append("```text\n" + _help(command, ["batchpoint", *path]) + "\n```\n")
    if isinstance(command, click.Group):
        for verb, sub in sorted(command.commands.items()):
            _section(parts, sub, [*path, verb])


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run .venv/bin/python docs/gen_cli.py", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
