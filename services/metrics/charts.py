"""Server-side SVG charts for the dashboard: bars and lines, drawn in Python.

Why not a JavaScript library: the page then needs no script at all (nothing to vendor, no licence to
carry, no console to go wrong, it prints and archives as is), and suppression is applied before
anything reaches the browser. A suppressed bar or point is not drawn; its label reads "< 5".
"""

from __future__ import annotations

from html import escape

from services.metrics.domain.suppression import Figure

WIDTH, HEIGHT, PAD = 560, 220, 36


def bar_chart(title: str, bars: dict[str, Figure], *, unit: str = "") -> str:
    values = [f.value for f in bars.values() if f.value is not None and not f.suppressed]
    top = max(values, default=0) or 1
    n = max(1, len(bars))
    slot = (WIDTH - 2 * PAD) / n
    parts = []
    for i, (label, f) in enumerate(bars.items()):
        x = PAD + i * slot + slot * 0.15
        w = slot * 0.7
        if f.value is not None and not f.suppressed:
            h = (HEIGHT - 2 * PAD) * f.value / top
            y = HEIGHT - PAD - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(h, 1):.1f}">'
                f"<title>{escape(label)}: {escape(f.display)}{unit}</title></rect>"
            )
        lift = 0.0 if f.suppressed else (HEIGHT - 2 * PAD) * (f.value or 0) / top
        parts.append(_text("value", x + w / 2, HEIGHT - PAD - 4 - lift, f.display))
        parts.append(_text("label", x + w / 2, HEIGHT - PAD + 14, label))
    return _frame(title, "".join(parts))


def line_chart(title: str, labels: list[str], series: dict[str, list[Figure]], *, lo: float, hi: float) -> str:
    n = max(1, len(labels) - 1)
    span = (hi - lo) or 1

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD + i * (WIDTH - 2 * PAD) / n
        y = HEIGHT - PAD - (min(hi, max(lo, v)) - lo) / span * (HEIGHT - 2 * PAD)
        return x, y

    parts = [
        f'<text class="axis" x="4" y="{PAD}">{hi:g}</text><text class="axis" x="4" y="{HEIGHT - PAD}">{lo:g}</text>'
    ]
    for k, (name, points) in enumerate(series.items()):
        coords = [xy(i, f.value) for i, f in enumerate(points) if f.value is not None and not f.suppressed]
        if coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline class="line s{k}" points="{path}"><title>{escape(name)}</title></polyline>')
            parts += [f'<circle class="dot s{k}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in coords]
        parts.append(f'<text class="legend s{k}" x="{PAD + 160 * k}" y="14">{escape(name)}</text>')
    step = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % step == 0:
            x, _ = xy(i, lo)
            parts.append(
                f'<text class="label" x="{x:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{escape(label)}</text>'
            )
    return _frame(title, "".join(parts))


def _text(css: str, x: float, y: float, text: str) -> str:
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(text)}</text>'


def _frame(title: str, body: str) -> str:
    return (
        f'<figure><figcaption>{escape(title)}</figcaption><svg class="chart" role="img" aria-label="{escape(title)}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>'
        f"{body}</svg></figure>"
    )
