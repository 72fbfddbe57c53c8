"""``--query`` (JMESPath, as ``az`` does) and ``-o json|tsv|table|yaml`` for every command."""

from __future__ import annotations

import json
from typing import Any

import click
import jmespath
import yaml
from jmespath.exceptions import JMESPathError

FORMATS = ["json", "tsv", "table", "yaml", "none"]


def output_options(fn: Any) -> Any:
    fn = click.option("--query", default=None, help="JMESPath query applied to the result, e.g. name or [].name.")(fn)
    fn = click.option("-o", "--output", "output", type=click.Choice(FORMATS), default="json", show_default=True,
                      help="Output format.")(fn)
    return fn


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def render(result: Any, output: str = "json", query: str | None = None) -> str:
    data = _plain(result)
    if query:
        try:
            data = jmespath.search(query, data)
        except JMESPathError as exc:
            raise click.UsageError(f"--query '{query}' is not valid JMESPath: {exc}") from exc
    if output == "none":
        return ""
    if output == "json":
        return json.dumps(data, indent=2, default=str)
    if output == "yaml":
        return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip()
    if output == "tsv":
        return _tsv(data, ordered=bool(query))
    return _table(data)


def _tsv(data: Any, ordered: bool) -> str:
    """``-o tsv`` as ``az`` (knack) writes it: the result (a list, or one value taken as a list of one) is
    one line per item. An object's values are tab-separated, in the query's order with ``--query``,
    else sorted by key; a list's items are tab-separated too. A value that is itself a list is
    written as its length, an object as an empty field, null as ``None``; a lone boolean item as
    ``true``/``false``. A null result prints nothing."""
    if data is None:
        return ""
    lines = []
    for row in data if isinstance(data, list) else [data]:
        if isinstance(row, dict):
            values = list(row.values()) if ordered else [v for _, v in sorted(row.items())]
            lines.append("\t".join(_tsv_field(v) for v in values))
        elif isinstance(row, list):
            lines.append("\t".join(_tsv_field(v) for v in row))
        elif isinstance(row, bool):
            lines.append(str(row).lower())
        else:
            lines.append(_tsv_field(row))
    return "\n".join(lines)


def _tsv_field(value: Any) -> str:
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return ""
    return str(value)


def _table(data: Any) -> str:
    rows = data if isinstance(data, list) else [data]
    if not rows:
        return ""
    if not all(isinstance(r, dict) for r in rows):
        return "\n".join(_scalar(r) for r in rows)
    columns = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    widths = {c: max(len(c), *(len(_scalar(r.get(c))) for r in rows)) for c in columns}
    header = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(_scalar(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([header, rule, *body])


def emit(result: Any, output: str, query: str | None) -> None:
    text = render(result, output, query)
    if text:
        click.echo(text)
