"""The CLI takes unambiguous prefixes of long options, as ``az`` does (argparse's abbreviations):
``--endpoint`` for ``--endpoint-name``; a prefix of several is a usage error listing them. Parsed
in-process (no server: each case fails or stops before the SDK is used)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from batchpoint.cli.main import cli
from batchpoint.cli.prefixes import expand


def _command(*path: str) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _expand(path: tuple[str, ...], args: list[str]) -> list[str]:
    command = _command(*path)
    return expand(command, click.Context(command), args)


@pytest.mark.parametrize(("path", "args", "expanded"), [
    (("job", "list"), ["--endpoint", "heart"], ["--endpoint-name", "heart"]),
    (("job", "list"), ["--par=j1"], ["--parent-job-name=j1"]),
    (("job", "download"), ["--na", "j1", "--download", "out", "--al"], ["--name", "j1", "--download-path", "out", "--all"]),
    # an option's value is never read as an option, whatever it looks like
    (("job", "list"), ["--que", "--endpoint", "-o", "--x"], ["--query", "--endpoint", "-o", "--x"]),
    # an exact name wins over longer names it starts
    (("batch-endpoint", "invoke"), ["--output", "json", "--input", "d"], ["--output", "json", "--input", "d"]),
    (("batch-endpoint", "invoke"), ["--output-p", "p"], ["--output-path", "p"]),
    # after --, nothing is touched; an option that starts none is left for click to refuse
    (("job", "list"), ["--", "--endpoint"], ["--", "--endpoint"]),
    (("job", "list"), ["--nothing"], ["--nothing"]),
])
def test_prefixes_are_written_out(path: tuple[str, ...], args: list[str], expanded: list[str]) -> None:
    assert _expand(path, args) == expanded


def test_an_ambiguous_prefix_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["batch-endpoint", "invoke", "-n", "heart", "--inp", "data/"])
    assert result.exit_code == 2
    assert "option '--inp' is ambiguous: it starts --input, --input-type; give more of the name" in result.output
    outp = CliRunner().invoke(cli, ["batch-endpoint", "invoke", "-n", "heart", "--outp", "x"])
    assert outp.exit_code == 2 and "--output, --output-path" in outp.output


def test_an_unknown_option_is_still_refused_by_click() -> None:
    result = CliRunner().invoke(cli, ["job", "list", "--nothing"])
    assert result.exit_code == 2 and "No such option '--nothing'" in result.output


def test_help_by_prefix() -> None:
    result = CliRunner().invoke(cli, ["job", "download", "--he"])
    assert result.exit_code == 0 and "Usage:" in result.output and "--download-path" in result.output
