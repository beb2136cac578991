"""The timeline's time axis: linear while something runs, long idle gaps collapsed into breaks.

An execution that waited an hour for a person, or sat FAILED for a day before a
redrive, spends nearly all its span idle; on a linear axis its steps of a few
milliseconds shrink to nothing. Here the busy moments (invocations, the starts
and ends of operations, redrives) keep a linear scale, and an idle gap longer than
``BREAK_MIN_SECONDS`` that takes ``BREAK_MIN_SHARE`` of the time still linear
becomes a break of fixed width that says how long it hid. Bars that cross a break (a wait, a
callback) still run from their start to their end through it.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from executions.console.formatting import duration

# Axis labels: an 11 px monospace character (0.6 em, rounded up), the room between two labels,
# and the narrowest track they are spaced for on the server (about the track's width at 1024 px;
# timeline.js hides what would still overlap on a narrower one).
AXIS_CHAR_PX = 6.8
AXIS_GAP_PX = 6.0
AXIS_TRACK_PX = 400.0
BREAK_MIN_SECONDS = 2.0
BREAK_MIN_SHARE = 0.2  # of the time still on the linear scale
MAX_BREAKS = 16  # the longest gaps; shorter ones stay linear
BREAK_WIDTH = 2.5  # % of the track per break
BREAKS_MAX_WIDTH = 30.0  # % of the track for all breaks together
SEGMENT_MIN_WIDTH = 10.0  # % of the track at least for each linear stretch between breaks


@dataclass(frozen=True, slots=True)
class Break:
    """An idle gap drawn as a break: ``start``/``end`` in seconds from the start, ``left``/``width`` in %."""

    start: float
    end: float
    left: float
    width: float

    @property
    def hidden(self) -> str:
        return duration(self.end - self.start)

    @property
    def style(self) -> str:
        return f"--l:{self.left:.3f}%;--w:{self.width:.3f}%"


@dataclass(frozen=True, slots=True)
class AxisLabel:
    """A label of the time axis, centred on ``at`` (% of the track) and kept inside the axis."""

    text: str
    at: float
    title: str
    is_break: bool = False

    @property
    def style(self) -> str:
        """The point and the width in characters: the CSS centres it there, clamped to the axis."""
        return f"--x:{self.at:.3f}%;--n:{len(self.text)}"

    def extent(self, track_px: float) -> tuple[float, float]:
        """Left and right edge in px on a track ``track_px`` wide, as the CSS places it."""
        width = len(self.text) * AXIS_CHAR_PX
        left = min(max(self.at / 100 * track_px - width / 2, 0.0), max(track_px - width, 0.0))
        return left, left + width


def fit_labels(labels: list[AxisLabel], track_px: float = AXIS_TRACK_PX) -> list[AxisLabel]:
    """The labels that do not overlap, most important first (``labels`` in that order).

    Positions scale with the track and widths do not, so labels apart on a track of
    ``track_px`` stay apart on any wider one.
    """
    kept: list[AxisLabel] = []
    spans: list[tuple[float, float]] = []
    for label in labels:
        left, right = label.extent(track_px)
        if any(left < b + AXIS_GAP_PX and a < right + AXIS_GAP_PX for a, b in spans):
            continue
        kept.append(label)
        spans.append((left, right))
    return kept


@dataclass(frozen=True)
class TimeScale:
    """Seconds from the execution's start to % of the track: piecewise linear through the breaks."""

    start: datetime.datetime
    span: float
    breaks: tuple[Break, ...]
    knots_t: tuple[float, ...]
    knots_x: tuple[float, ...]

    def x(self, moment: datetime.datetime) -> float:
        """Where ``moment`` falls on the track, 0-100."""
        return self.x_seconds((moment - self.start).total_seconds())

    def x_seconds(self, seconds: float) -> float:
        ts, xs = self.knots_t, self.knots_x
        if seconds <= ts[0]:
            return xs[0]
        if seconds >= ts[-1]:
            return xs[-1]
        i = bisect.bisect_right(ts, seconds) - 1
        t0, t1 = ts[i], ts[i + 1]
        if t1 <= t0:
            return xs[i + 1]
        return xs[i] + (xs[i + 1] - xs[i]) * (seconds - t0) / (t1 - t0)

    def bar(self, begin: datetime.datetime, end: datetime.datetime) -> tuple[float, float]:
        """(left, width) in %, rounded, the width never past the track's right edge."""
        left = min(max(self.x(begin), 0.0), 100.0)
        right = min(max(self.x(end), left), 100.0)
        return round(left, 3), round(right - left, 3)

    def axis_labels(self, end_text: str) -> list[AxisLabel]:
        """ "0", the end, then the breaks, longest first, each only where it overlaps no label
        kept before it (a break whose label is left out keeps its length in its band's title)."""
        ticks = [AxisLabel("0", 0.0, "the start"), AxisLabel(end_text, 100.0, "the end of the axis")]
        gaps = sorted(self.breaks, key=lambda b: b.start - b.end)
        labels = [
            AxisLabel(f"≈ {b.hidden}", b.left + b.width / 2, f"{b.hidden} idle, collapsed", is_break=True)
            for b in gaps
        ]
        return fit_labels([*ticks, *labels])

    @property
    def background(self) -> str:
        """The breaks as one CSS gradient for every track (a style on the table, nothing per row)."""
        if not self.breaks:
            return ""
        stops = ", ".join(
            f"transparent {b.left:.3f}%, var(--break) {b.left:.3f}% {b.left + b.width:.3f}%, "
            f"transparent {b.left + b.width:.3f}%"
            for b in self.breaks
        )
        return f"--breaks:linear-gradient(90deg, {stops})"


def build_scale(
    start: datetime.datetime,
    end: datetime.datetime,
    busy: Iterable[tuple[datetime.datetime, datetime.datetime]],
) -> TimeScale:
    """The scale for a span whose busy intervals are ``busy`` (instants are intervals of length 0)."""
    span = max((end - start).total_seconds(), 0.001)
    intervals = sorted(
        (max(0.0, (a - start).total_seconds()), min(span, max(0.0, (b - start).total_seconds())))
        for a, b in busy
    )
    chosen = sorted(_breaks(_gaps(intervals, span), span))
    if not chosen:
        return TimeScale(start, span, (), (0.0, span), (0.0, 100.0))
    width = min(BREAK_WIDTH, BREAKS_MAX_WIDTH / len(chosen))
    # The linear stretches between breaks share the rest in proportion to their time, each
    # with a floor: the burst of steps right after a redrive must not end up as a sliver.
    edges = [0.0, *(t for gap in chosen for t in gap), span]
    stretches = [max(edges[i + 1] - edges[i], 0.0) for i in range(0, len(edges), 2)]
    room = 100.0 - width * len(chosen)
    floor = min(SEGMENT_MIN_WIDTH, room / len(stretches) / 2)
    total = sum(stretches) or 1.0
    widths = [floor + (room - floor * len(stretches)) * length / total for length in stretches]
    knots_t, knots_x, breaks = [0.0], [0.0], []
    x = 0.0
    for (a, b), stretch in zip(chosen, widths, strict=False):
        x += stretch
        knots_t.append(a)
        knots_x.append(x)
        breaks.append(Break(a, b, round(x, 3), round(width, 3)))
        x += width
        knots_t.append(b)
        knots_x.append(x)
    knots_t.append(span)
    knots_x.append(100.0)
    return TimeScale(start, span, tuple(breaks), tuple(knots_t), tuple(knots_x))


def _breaks(gaps: list[tuple[float, float]], span: float) -> list[tuple[float, float]]:
    """The gaps worth collapsing, longest first: each at least ``BREAK_MIN_SHARE`` of the time
    still linear, so an hour's wait goes, then the five-minute wait that became most of the rest,
    while an execution busy at a steady pace keeps its linear axis."""
    chosen: list[tuple[float, float]] = []
    linear = span
    for gap in sorted(gaps, key=lambda g: g[0] - g[1])[:MAX_BREAKS]:
        length = gap[1] - gap[0]
        if length < BREAK_MIN_SECONDS or length < BREAK_MIN_SHARE * linear:
            break
        chosen.append(gap)
        linear -= length
    return chosen


def _gaps(intervals: list[tuple[float, float]], span: float) -> list[tuple[float, float]]:
    """The idle stretches between merged busy intervals (from 0 to ``span``)."""
    gaps = []
    reached = 0.0
    for a, b in intervals:
        if a > reached:
            gaps.append((reached, a))
        reached = max(reached, b)
    if reached < span:
        gaps.append((reached, span))
    return gaps
