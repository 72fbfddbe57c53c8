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
    return _table(data, skip=() if query else TABLE_SKIP)


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


#: columns ``-o table`` leaves out, as ``az`` (knack's table output) does: the long ARM ``id`` and such
TABLE_SKIP = ("id", "type", "etag")


def _table(data: Any, skip: tuple[str, ...] = ()) -> str:
    """``-o table``: one row per item, a column per scalar field (nested objects and lists left out,
    and ``skip``: :data:`TABLE_SKIP` without ``--query``, as ``az`` does; a query that selects them shows them)."""
    rows = data if isinstance(data, list) else [data]
    if not rows:
        return ""
    if not all(isinstance(r, dict) for r in rows):
        return "\n".join(_scalar(r) for r in rows)
    columns = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list)) and k not in skip]
    widths = {c: max(len(c), *(len(_scalar(r.get(c))) for r in rows)) for c in columns}
    header = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(_scalar(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([header, rule, *body])


def emit(result: Any, output: str, query: str | None) -> None:
    text = render(result, output, query)
    if text:
        click.echo(text)


# -- progress (rich on a terminal; plain lines, no control codes, when stdout is not one) -------------


def is_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


class RichJobView:
    """``job stream`` on a terminal: status and phase lines with their times above a progress bar
    of mini-batches (done/total, a total growing while the listing goes on), files scored / failed /
    total, rows/s and an ETA. Same calls as ``sdk.job_events.PlainView``."""

    rate_limited = False

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = Console(highlight=False)
        self.bar = Progress(TextColumn("{task.fields[status]:<10}"), BarColumn(),
                            TextColumn("{task.fields[batches]} mini-batches"), TextColumn("{task.fields[files]}"),
                            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
                            console=self.console, transient=False)
        self.task = self.bar.add_task("job", total=None, status="Queued", batches="0/?", files="", rate="", eta="")
        self.since: tuple[str, Any] | None = None
        self.failed_line: tuple[str, str] | None = None
        self.bar.start()

    def _print(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.bar.console.print(Text(text, style=style or ""))

    def status(self, event: Any, stats: Any) -> None:
        from batchpoint.sdk.job_events import status_line

        took = ""
        if self.since is not None:
            took = f"  ({self.since[0]} took {(event.at - self.since[1]).total_seconds():.1f} s)"
        self.since = (event.status, event.at)
        style = {"Completed": "green", "Failed": "bold red", "Canceled": "yellow"}.get(event.status, "bold")
        self.bar.update(self.task, status=event.status)
        if event.status == "Failed":  # printed with its root cause, in one piece (failure())
            self.failed_line = (status_line(event) + took, style)
            return
        self._print(status_line(event) + took, style)

    def phase(self, event: Any, stats: Any) -> None:
        from batchpoint.sdk.job_events import phase_line

        self._print("  " + phase_line(event), "cyan")

    def progress(self, stats: Any) -> None:
        from batchpoint.sdk.job_events import of_total

        complete = bool(stats.data.get("listing_complete"))
        rate, eta = stats.rows_per_s(), stats.eta_s()
        self.bar.update(
            self.task, completed=stats.done, total=stats.total if complete else None,
            batches=f"{stats.done}/{of_total(stats.total, complete)}",
            files=f"files {stats.get('files_completed')} scored, {stats.get('files_failed')} failed, "
                  f"of {of_total(stats.files_total, complete)}",
            rate=f"{rate:.1f} rows/s" if rate is not None else "", eta=f"ETA {eta:.0f}s" if eta is not None else "")

    def log(self, line: str) -> None:
        self._print(line, "dim")

    def failure(self, job: Any) -> None:
        from batchpoint.sdk.job_events import root_cause_lines

        from rich.text import Text

        lines = root_cause_lines(job)
        text = Text()
        if self.failed_line is not None:
            text.append(self.failed_line[0] + "\n", style=self.failed_line[1])
            self.failed_line = None
        text.append(lines[0], style="bold red")
        for line in lines[1:]:
            text.append("\n" + line)
        self.bar.console.print(text)  # one print: the bar is not redrawn between the failure and its cause

    def close(self) -> None:
        """Stop drawing (the follow ended early: Ctrl-C, a lost server); the cursor comes back."""
        self.bar.stop()

    def end(self, job: Any, stats: Any) -> None:
        from batchpoint.sdk.job_events import final_line, phases_line

        self.bar.stop()
        if self.failed_line is not None:
            self._print(*self.failed_line)
            self.failed_line = None
        phases = phases_line(job)
        if phases:
            self._print(phases)
        self._print(final_line(job), "bold")


def job_view() -> Any:
    """The view ``job stream`` draws with: rich on a terminal, plain lines otherwise."""
    import sys

    from batchpoint.sdk.job_events import PlainView

    return RichJobView() if is_terminal() else PlainView(sys.stdout)


class TransferBar:
    """Uploads of local folders and downloads of outputs, as a rich bar on stderr (a terminal only:
    piped, nothing is drawn; the commands print what they sent or saved anyway)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int, unit: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, \
            TransferSpeedColumn

        if self.bar is None:
            columns = [TextColumn("{task.description}"), BarColumn()]
            columns += [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
            self.bar = Progress(*columns, console=Console(stderr=True), transient=True)
            self.bar.start()
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=max(total, 1))
        self.bar.update(self.tasks[what], completed=done, total=max(total, 1))
        if done >= total:
            self.bar.remove_task(self.tasks.pop(what))
            if not self.tasks:
                self.bar.stop()
                self.bar = None


def install_transfer_progress() -> None:
    """Draw uploads and downloads (``sdk.upload.TRANSFER_PROGRESS``) when stderr is a terminal."""
    import sys

    from batchpoint.sdk.upload import TRANSFER_PROGRESS

    if sys.stderr.isatty():
        TRANSFER_PROGRESS.set(TransferBar())
