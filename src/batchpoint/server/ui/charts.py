"""The job page's pictures, drawn on the server as plain inline SVG (no script, no library, nothing
fetched: the page's ``Content-Security-Policy`` allows only itself).

* :func:`progress_series` / :func:`progress_charts`: mini-batches done and rows/s over time, from
  the job's ``progress`` events (the counters after each finished mini-batch; at most
  ``MAX_POINTS`` points, evenly thinned).
* :func:`worker_spans` / :func:`worker_timeline`: one lane per worker log (``worker-<n>.log``), a
  bar per mini-batch from its start to its end — scored, failed and retried, or failed for good —
  and the worker's ``init()``. Read from the lines every worker writes (``worker/loop.py``):
  ``worker N ready (init took Xs)``, ``mini-batch K (n files) scored: R rows in Ss``,
  ``mini-batch K failed (attempt A, kind ...)``, and the engine's ``... platform failure, retried``
  notes. A straggler (a long bar) or a slow ``init()`` shows at a glance.

Every text placed in the SVG is escaped here (the template inserts the SVG as it is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

MAX_POINTS = 240
MAX_SPANS = 5000
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 150, 56, 12, 10, 24

_STAMP = r"(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
_READY = re.compile(_STAMP + r" \S+ \S+ worker \S+ ready \(init took (?P<secs>[\d.]+)s\)")
_SCORED = re.compile(_STAMP + r" \S+ \S+ mini-batch (?P<key>\S+) \((?P<files>\d+) files\) scored: (?P<rows>\d+) rows "
                     r"in (?P<secs>[\d.]+)s")
_FAILED = re.compile(_STAMP + r" \S+ \S+ mini-batch (?P<key>\S+) failed \(attempt (?P<attempt>\d+), kind (?P<kind>\w+)\)")
_RETRIED = re.compile(_STAMP + r" \S+ \S+ mini-batch (?P<key>\S+) \(attempt (?P<attempt>\d+)\): .*retried")


def _seconds(at: datetime | None, origin: datetime) -> float:
    return (at - origin).total_seconds() if at is not None else 0.0


def _local(text: str) -> datetime:
    """A worker log's time (``asctime``: the worker's local time) as an aware UTC time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").astimezone().astimezone(timezone.utc)


# -- mini-batches done and rows/s over time --------------------------------------------------------


def progress_series(events: list[Any], origin: datetime | None) -> list[dict[str, float]]:
    """(seconds since ``origin``, mini-batches done, rows, rows/s) after each progress event."""
    points: list[dict[str, float]] = []
    for ev in events:
        data = ev.data or {}
        if ev.at is None or "rows" not in data:
            continue
        at = ev.at if ev.at.tzinfo else ev.at.replace(tzinfo=timezone.utc)
        origin = origin or at
        done = int(data.get("mini_batches_completed") or 0) + int(data.get("mini_batches_failed") or 0)
        points.append({"t": max(0.0, _seconds(at, origin)), "done": done, "rows": int(data.get("rows") or 0)})
    if len(points) > MAX_POINTS:
        step = len(points) / MAX_POINTS
        points = [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]
    for i, p in enumerate(points):
        before = points[i - 1] if i else {"t": 0.0, "rows": 0}
        span = p["t"] - before["t"]
        p["rate"] = (p["rows"] - before["rows"]) / span if span > 0 else 0.0
    return points


def _axis(width_s: float, top: float, unit: str) -> str:
    x0, y0, x1, y1 = LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, TOP
    return (f'<line class="axis" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/>'
            f'<line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>'
            f'<text class="tick" x="{x0 - 4}" y="{y1 + 8}" text-anchor="end">{escape(_num(top))}</text>'
            f'<text class="tick" x="{x0 - 4}" y="{y0}" text-anchor="end">0</text>'
            f'<text class="tick" x="{x1}" y="{HEIGHT - 6}" text-anchor="end">{escape(_num(width_s))} s</text>'
            f'<text class="unit" x="{x0 + 4}" y="{y1 + 8}">{escape(unit)}</text>')


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _line(svg_id: str, title: str, points: list[tuple[float, float]], unit: str) -> str:
    width_s = max((t for t, _ in points), default=0.0) or 1.0
    top = max((v for _, v in points), default=0.0) or 1.0
    sx = (WIDTH - LEFT - RIGHT) / width_s
    sy = (HEIGHT - TOP - BOTTOM) / top
    coords = " ".join(f"{LEFT + t * sx:.1f},{HEIGHT - BOTTOM - v * sy:.1f}" for t, v in points)
    dots = "".join(f'<circle class="point" cx="{LEFT + t * sx:.1f}" cy="{HEIGHT - BOTTOM - v * sy:.1f}" r="2">'
                   f'<title>{escape(_num(v))} {escape(unit)} at {t:.1f} s</title></circle>' for t, v in points)
    return (f'<svg id="{svg_id}" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}"><title>{escape(title)}</title>{_axis(width_s, top, unit)}'
            f'<polyline class="series" points="{coords}"/>{dots}</svg>')


def progress_charts(points: list[dict[str, float]]) -> dict[str, str] | None:
    """Two SVG line charts (mini-batches done; rows/s), or None before the first mini-batch."""
    if not points:
        return None
    start = [(0.0, 0.0)]
    return {"done": _line("done-chart", "mini-batches done over time", start + [(p["t"], p["done"]) for p in points],
                          "mini-batches"),
            "rate": _line("rate-chart", "rows per second over time", start + [(p["t"], p["rate"]) for p in points],
                          "rows/s")}


# -- a lane per worker -------------------------------------------------------------------------------


@dataclass
class Span:
    worker: str
    kind: str  # init | ok | retried | failed
    key: str
    start: datetime
    end: datetime
    text: str


def worker_spans(logs: dict[str, str], final_failures: dict[int, int] | None = None) -> tuple[list[Span], bool]:
    """The spans in the worker logs (``{log name: text}``), and whether some were left out;
    ``final_failures``: failed files per mini-batch index, as the job recorded them."""
    spans: list[Span] = []
    for name, text in sorted(logs.items()):
        worker = name.removesuffix(".log")
        failed: dict[str, Span] = {}
        last_end: datetime | None = None
        for line in text.splitlines():
            if len(spans) >= MAX_SPANS:
                _settle_failures(spans, final_failures)
                return spans, True
            if (m := _READY.match(line)) is not None:
                end = _local(m["at"])
                start = datetime.fromtimestamp(end.timestamp() - float(m["secs"]), timezone.utc)
                spans.append(Span(worker, "init", "init()", start, end, f"init() took {float(m['secs']):.2f} s"))
                last_end = end
            elif (m := _SCORED.match(line)) is not None:
                end = _local(m["at"])
                start = datetime.fromtimestamp(end.timestamp() - float(m["secs"]), timezone.utc)
                spans.append(Span(worker, "ok", m["key"], start, end, f"mini-batch {m['key']}: {m['files']} file(s), "
                                  f"{m['rows']} rows in {float(m['secs']):.2f} s"))
                failed.pop(m["key"], None)
                last_end = end
            elif (m := _FAILED.match(line)) is not None:
                end = _local(m["at"])
                span = Span(worker, "failed", m["key"], last_end or end, end,
                            f"mini-batch {m['key']} failed (attempt {m['attempt']}, kind {m['kind']})")
                spans.append(span)
                failed[m["key"]] = span
                last_end = end
            elif (m := _RETRIED.match(line)) is not None:
                at = _local(m["at"])
                spans.append(Span(worker, "retried", m["key"], at, at, line.split(": ", 1)[-1][:300]))
    _settle_failures(spans, final_failures)
    return spans, False


def _settle_failures(spans: list[Span], final_failures: dict[int, int] | None) -> None:
    """Which failed spans were retried (on the same key, or split into single files) and which were
    final: of mini-batch ``i``'s failures that were their key's last and never followed by its
    success, the last ``final_failures[i]`` (the job's recorded failed files of that mini-batch)."""
    scored = {s.key for s in spans if s.kind == "ok"}
    last_failure = {s.key: s for s in spans if s.kind == "failed"}
    candidates: dict[str, list[Span]] = {}
    for s in spans:
        if s.kind != "failed":
            continue
        if s.key in scored or last_failure.get(s.key) is not s:
            s.kind = "retried"
        else:
            candidates.setdefault(s.key.split("-")[0], []).append(s)
    for index, failed in candidates.items():
        try:
            keep = len(failed) if final_failures is None else final_failures.get(int(index), 0)
        except ValueError:
            keep = len(failed)
        for s in sorted(failed, key=lambda x: x.end)[:max(0, len(failed) - keep)]:
            s.kind = "retried"
    for s in spans:
        if s.kind == "retried" and s.text.startswith("mini-batch") and "failed" in s.text and "retried" not in s.text:
            s.text += ", retried"


def worker_timeline(spans: list[Span]) -> str | None:
    """The lanes as one SVG (a ``rect`` per span, class ``mb ok|retried|failed`` or ``init``)."""
    if not spans:
        return None
    workers = sorted({s.worker for s in spans}, key=lambda w: (len(w), w))
    origin = min(s.start for s in spans)
    width_s = max(_seconds(s.end, origin) for s in spans) or 1.0
    lane, label = 22, 96
    height = TOP + lane * len(workers) + BOTTOM
    sx = (WIDTH - label - RIGHT) / width_s
    parts = [f'<svg id="worker-timeline" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
             f'height="{height}"><title>mini-batches per worker over time</title>']
    for i, worker in enumerate(workers):
        y = TOP + i * lane
        parts.append(f'<text class="lane" x="{label - 6}" y="{y + 15}" text-anchor="end">{escape(worker)}</text>'
                     f'<line class="grid" x1="{label}" y1="{y + lane - 1}" x2="{WIDTH - RIGHT}" y2="{y + lane - 1}"/>')
    for s in spans:
        y = TOP + workers.index(s.worker) * lane + 3
        x = label + _seconds(s.start, origin) * sx
        w = max(2.0, (s.end - s.start).total_seconds() * sx)
        cls = "init" if s.kind == "init" else f"mb {s.kind}"
        parts.append(f'<rect class="{cls}" data-key="{escape(s.key)}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                     f'height="{lane - 7}"><title>{escape(s.worker)}: {escape(s.text)}</title></rect>')
    parts.append(f'<text class="tick" x="{WIDTH - RIGHT}" y="{height - 6}" text-anchor="end">{escape(_num(width_s))} s'
                 f'</text><text class="tick" x="{label}" y="{height - 6}">0</text></svg>')
    return "".join(parts)
