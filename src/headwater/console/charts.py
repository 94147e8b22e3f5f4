"""A credential's last hour as a small bar chart: requests per minute, and those that waited for
the budget, drawn by the template as inline SVG (no script, no stylesheet of its own).

    hour_chart(recent.minutes(credential_id))
    # {"bars": [{"x": 0, "requests": 12.0, "waits": 3.0, "label": "16:05 12 requests, 3 waited"}, ...],
    #  "requests": 140, "waits": 9, "peak": 20, "width": 240, "height": 48}
"""

from __future__ import annotations

import time

from headwater.recent import Minute

BAR_WIDTH = 4
HEIGHT = 48


def hour_chart(minutes: list[Minute]) -> dict:
    peak = max((m.requests for m in minutes), default=0)
    scale = (HEIGHT - 2) / peak if peak else 0.0
    bars = []
    for i, m in enumerate(minutes):
        at = time.strftime("%H:%M", time.gmtime(m.start))
        bars.append({
            "x": i * BAR_WIDTH,
            "requests": round(m.requests * scale, 1),
            "waits": round(m.waits * scale, 1),
            "label": f"{at} UTC: {m.requests} requests, {m.waits} waited",
        })
    return {
        "bars": bars,
        "requests": sum(m.requests for m in minutes),
        "waits": sum(m.waits for m in minutes),
        "peak": peak,
        "width": len(minutes) * BAR_WIDTH,
        "height": HEIGHT,
    }
