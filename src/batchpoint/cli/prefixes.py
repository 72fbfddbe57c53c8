"""Unambiguous prefixes of long options, as ``az`` (argparse) takes them: ``--endpoint`` for
``--endpoint-name`` when no other option of the command starts with it.

Each command's arguments are read once before click parses them: an option that is not one of the
command's own but starts exactly one of its long options is replaced by that option; one that
starts several is a usage error listing them. Values of options (``--query --x``) and everything
after ``--`` are left alone; an option that starts none is left for click to refuse.
"""

from __future__ import annotations

from typing import Any

import click


def expand(command: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """``args`` with each unambiguous prefix of a long option of ``command`` written out."""
    takes: dict[str, int] = {}  # option name -> how many values follow it
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            count = 0 if (param.is_flag or param.count) else max(param.nargs, 1)
            for name in (*param.opts, *param.secondary_opts):
                takes[name] = 0 if name in param.secondary_opts else count
    longs = sorted(name for name in takes if name.startswith("--"))
    out: list[str] = []
    skip = 0
    for index, arg in enumerate(args):
        if skip:
            skip -= 1
            out.append(arg)
            continue
        if arg == "--":
            out.extend(args[index:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in takes:
                matches = [option for option in longs if option.startswith(name)]
                if len(matches) > 1:
                    raise click.UsageError(f"option '{name}' is ambiguous: it starts {', '.join(matches)}; "
                                           "give more of the name", ctx)
                if matches:
                    name = matches[0]
            out.append(f"{name}{eq}{value}")
            if not eq:
                skip = takes.get(name, 0)
            continue
        if arg.startswith("-") and len(arg) == 2:
            skip = takes.get(arg, 0)
        out.append(arg)
    return out


def install(group: click.Group) -> None:
    """Let every command under ``group`` take unambiguous prefixes of its long options."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            install(command)
        elif not getattr(command, "_takes_prefixes", False):
            _wrap(command)


def _wrap(command: click.Command) -> None:
    parse = command.parse_args

    def parse_args(ctx: click.Context, args: list[str]) -> Any:
        return parse(ctx, expand(command, ctx, list(args)))

    command.parse_args = parse_args  # type: ignore[method-assign]
    command._takes_prefixes = True  # type: ignore[attr-defined]
