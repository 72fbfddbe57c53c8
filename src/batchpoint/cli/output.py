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
        return _tsv(data)
    return _table(data)


def _tsv(data: Any) -> str:
    rows = data if isinstance(data, list) else [data]
    lines = []
    for row in rows:
        if isinstance(row, dict):
            lines.append("\t".join(_scalar(v) for v in row.values() if not isinstance(v, (dict, list))))
        else:
            lines.append(_scalar(row))
    return "\n".join(lines)


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
