"""Charts as inline SVG strings, drawn on the server (no script, no external asset).

Every mark carries a class (``price-line``, ``prob-line``, ``alert-marker``,
``reliability-point``, ``curve``) and the numbers it draws in ``data-*`` attributes, so a test
can check what a person sees against the database.

>>> svg = reliability_svg({"up": [(0.25, 0.2, 10), (0.75, 0.8, 5)], "down": [(0.2, 0.3, 15)]})
>>> svg.count('class="reliability-point"')
3
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 900, 360
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 16, 28
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _points(xs: Sequence[float], ys: Sequence[float]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-label="{escape(label)}" class="chart">'
            + "".join(body) + "</svg>")


def price_svg(times: Sequence[datetime], closes: Sequence[float],
              probabilities: Sequence[tuple[datetime, float, float]],
              alerts: Sequence[tuple[datetime, str, float, str]],
              threshold: float | None = None,
              held: Sequence[tuple[datetime, str]] = ()) -> str:
    """Closes (top panel) with a marker per signal alert (up/down triangle at its candle) and a
    grey ring per signal the skill gate held back (``held``), and
    the served P(up first) and P(down first) per candle (bottom panel, 0..1, the alert
    threshold dashed)."""
    if not times:
        return _svg(WIDTH, 80, "no candles", ['<text x="10" y="40">no candles stored</text>'])
    split = PAD_T + (HEIGHT - PAD_T - PAD_B) * 0.62
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    x = _scale(t0, t1, PAD_L, WIDTH - PAD_R)
    lo, hi = min(closes), max(closes)
    y_price = _scale(lo, hi, split - 8, PAD_T)
    y_prob = _scale(0.0, 1.0, HEIGHT - PAD_B, split + 10)
    body = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{WIDTH - PAD_L - PAD_R}" '
            f'height="{HEIGHT - PAD_T - PAD_B}" fill="#fff" stroke="#e5e7eb"/>']
    for value in (lo, (lo + hi) / 2, hi):
        body.append(f'<text x="{PAD_L - 6}" y="{y_price(value) + 4:.1f}" text-anchor="end" '
                    f'class="axis">{value:,.2f}</text>')
    for value in (0.0, 0.5, 1.0):
        body.append(f'<text x="{PAD_L - 6}" y="{y_prob(value) + 4:.1f}" text-anchor="end" '
                    f'class="axis">{value:.0%}</text>')
    body.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{split:.1f}" y2="{split:.1f}" '
                f'stroke="#e5e7eb"/>')
    for t in (times[0], times[len(times) // 2], times[-1]):
        body.append(f'<text x="{x(t.timestamp()):.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                    f'class="axis">{t:%Y-%m-%d %H:%M}</text>')
    body.append(f'<polyline class="price-line" data-points="{len(closes)}" fill="none" '
                f'stroke="#111827" stroke-width="1.5" points="'
                f'{_points([x(t.timestamp()) for t in times], [y_price(c) for c in closes])}"/>')
    if threshold is not None:
        body.append(f'<line class="threshold" x1="{PAD_L}" x2="{WIDTH - PAD_R}" '
                    f'y1="{y_prob(threshold):.1f}" y2="{y_prob(threshold):.1f}" '
                    f'stroke="#9ca3af" stroke-dasharray="4 3"/>')
    shown = [row for row in probabilities if t0 <= row[0].timestamp() <= t1]
    for column, direction, colour in ((1, "up", COLOURS[2]), (2, "down", COLOURS[1])):
        if not shown:
            break
        line = _points([x(row[0].timestamp()) for row in shown],
                       [y_prob(row[column]) for row in shown])
        body.append(f'<polyline class="prob-line" data-direction="{direction}" '
                    f'data-points="{len(shown)}" fill="none" stroke="{colour}" '
                    f'stroke-width="1.5" points="{line}"/>')
    close_at = {t.timestamp(): c for t, c in zip(times, closes, strict=True)}
    for at, why in held:
        ts = at.timestamp()
        if t0 <= ts <= t1:
            body.append(f'<circle class="held-marker" cx="{x(ts):.1f}" '
                        f'cy="{y_price(close_at.get(ts, closes[-1])):.1f}" r="3.5" fill="none" '
                        f'stroke="#9ca3af" stroke-width="1.5"><title>{at:%Y-%m-%d %H:%M} held: '
                        f'{escape(why)}</title></circle>')
    for at, direction, prob, status in alerts:
        ts = at.timestamp()
        if not t0 <= ts <= t1:
            continue
        cx = x(ts)
        cy = y_price(close_at.get(ts, closes[-1]))
        up = direction.upper() == "UP"
        tip = cy - 14 if up else cy + 14
        base = cy - 4 if up else cy + 4
        colour = COLOURS[2] if up else COLOURS[1]
        body.append(f'<polygon class="alert-marker" data-direction="{escape(direction)}" '
                    f'data-status="{escape(status)}" data-probability="{prob:.4f}" '
                    f'points="{cx - 5:.1f},{base:.1f} {cx + 5:.1f},{base:.1f} {cx:.1f},{tip:.1f}" '
                    f'fill="{colour}"><title>{at:%Y-%m-%d %H:%M} {escape(direction)} '
                    f'{prob:.0%} ({escape(status)})</title></polygon>')
    return _svg(WIDTH, HEIGHT, "price with served probabilities and alerts", body)


def reliability_svg(series: dict[str, Sequence[tuple[float, float, int]]],
                    size: int = 360) -> str:
    """Per direction, the mean predicted probability (x) against the share that happened (y)
    per bin, dot area by count, on the diagonal a perfectly calibrated model would follow."""
    pad = 44
    s = _scale(0.0, 1.0, pad, size - 12)
    sy = _scale(0.0, 1.0, size - pad, 12)
    body = [f'<rect x="{pad}" y="12" width="{size - pad - 12}" height="{size - pad - 12}" '
            f'fill="#fff" stroke="#e5e7eb"/>',
            f'<line class="diagonal" x1="{s(0):.1f}" y1="{sy(0):.1f}" x2="{s(1):.1f}" '
            f'y2="{sy(1):.1f}" stroke="#9ca3af" stroke-dasharray="4 3"/>']
    for v in (0.0, 0.5, 1.0):
        body.append(f'<text x="{s(v):.1f}" y="{size - pad + 16}" text-anchor="middle" '
                    f'class="axis">{v:.0%}</text>')
        body.append(f'<text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" '
                    f'class="axis">{v:.0%}</text>')
    body.append(f'<text x="{size / 2 + pad / 2:.0f}" y="{size - 6}" text-anchor="middle" '
                f'class="axis">predicted probability</text>')
    counts = [n for bins in series.values() for _, _, n in bins]
    biggest = max(counts, default=1)
    for i, (direction, bins) in enumerate(series.items()):
        colour = COLOURS[2] if direction == "up" else COLOURS[1] if direction == "down" \
            else COLOURS[i % len(COLOURS)]
        body.append(f'<rect x="{pad + 8}" y="{20 + 16 * i}" width="10" height="10" '
                    f'fill="{colour}"/><text x="{pad + 24}" y="{29 + 16 * i}" '
                    f'class="legend">{escape(direction)} first</text>')
        if not bins:
            continue
        body.append(f'<polyline fill="none" stroke="{colour}" points="'
                    f'{_points([s(p) for p, _, _ in bins], [sy(o) for _, o, _ in bins])}"/>')
        for predicted, observed, n in bins:
            r = 3 + 7 * (n / biggest) ** 0.5
            body.append(f'<circle class="reliability-point" data-direction="{escape(direction)}" '
                        f'data-n="{n}" data-predicted="{predicted:.4f}" '
                        f'data-observed="{observed:.4f}" cx="{s(predicted):.1f}" '
                        f'cy="{sy(observed):.1f}" r="{r:.1f}" fill="{colour}" '
                        f'fill-opacity="0.6"><title>{escape(direction)}: predicted '
                        f'{predicted:.0%}, happened {observed:.0%} of {n}</title></circle>')
    return _svg(size, size, "reliability diagram", body)


def curves_svg(series: Sequence[tuple[str, Sequence[float]]], y_label: str) -> str:
    """Lines over a shared index (e.g. the running Brier score per shared outcome), one colour
    per series, with a legend."""
    values = [v for _, ys in series for v in ys]
    if not values:
        return _svg(WIDTH, 80, "no data", ['<text x="10" y="40">nothing to compare yet</text>'])
    height = 260
    longest = max(len(ys) for _, ys in series)
    x = _scale(0, max(1, longest - 1), PAD_L, WIDTH - PAD_R)
    lo, hi = min(values), max(values)
    y = _scale(lo, hi, height - PAD_B, PAD_T)
    body = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{WIDTH - PAD_L - PAD_R}" '
            f'height="{height - PAD_T - PAD_B}" fill="#fff" stroke="#e5e7eb"/>']
    for v in (lo, hi):
        body.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
                    f'class="axis">{v:.4f}</text>')
    body.append(f'<text x="{WIDTH / 2:.0f}" y="{height - 8}" text-anchor="middle" '
                f'class="axis">{escape(y_label)}</text>')
    for i, (name, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        if len(ys) == 1:
            body.append(f'<circle class="curve" data-name="{escape(name)}" data-points="1" '
                        f'cx="{x(0):.1f}" cy="{y(ys[0]):.1f}" r="3" fill="{colour}"/>')
        else:
            line = _points([x(j) for j in range(len(ys))], [y(v) for v in ys])
            body.append(f'<polyline class="curve" data-name="{escape(name)}" '
                        f'data-points="{len(ys)}" fill="none" stroke="{colour}" '
                        f'stroke-width="1.5" points="{line}"/>')
        body.append(f'<rect x="{PAD_L + 10}" y="{PAD_T + 8 + 16 * i}" width="10" height="10" '
                    f'fill="{colour}"/><text x="{PAD_L + 26}" y="{PAD_T + 17 + 16 * i}" '
                    f'class="legend">{escape(name)}</text>')
    return _svg(WIDTH, height, "running Brier score", body)
