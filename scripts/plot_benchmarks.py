#!/usr/bin/env python3
"""Collects the benchmark figures and draws docs/benchmarks.svg (python3 standard library only).

    # after `cargo bench --bench engine` and
    #       `cargo bench --bench contention -- --csv target/contention.csv`:
    python3 scripts/plot_benchmarks.py collect   # -> docs/benchmarks.json
    python3 scripts/plot_benchmarks.py plot      # docs/benchmarks.json -> docs/benchmarks.svg
    python3 scripts/plot_benchmarks.py           # both

`collect` reads criterion's medians (target/criterion/<group>/<bench>/new/estimates.json) and the
contention harness CSV, and writes them to docs/benchmarks.json, which is committed so the chart
can be redrawn without re-running the benches. The SVG is written by hand: horizontal bars,
logarithmic axes (the figures span three orders of magnitude), one panel per operation.
"""

import csv
import json
import math
import os
import sys
from html import escape

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CRITERION = os.path.join(ROOT, "target", "criterion")
CONTENTION_CSV = os.path.join(ROOT, "target", "contention.csv")
DATA = os.path.join(ROOT, "docs", "benchmarks.json")
SVG = os.path.join(ROOT, "docs", "benchmarks.svg")

LIBRARIES = ["ours", "prometheus", "prometheus-client", "metrics", "measured"]
FLOOR = "floor: AtomicU64::fetch_add"
# criterion bench ids use underscores.
CRITERION_NAMES = {
    "ours": "ours",
    "prometheus": "prometheus",
    "prometheus-client": "prometheus_client",
    "metrics": "metrics",
    "measured": "measured",
    FLOOR: "floor_atomic_fetch_add",
}
GROUPS = ["counter_inc", "closed_label_inc", "open_label_inc", "histogram_observe", "encode_node"]


def criterion_median_ns(group, bench):
    path = os.path.join(CRITERION, group, bench, "new", "estimates.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def collect():
    data = {"criterion": {}, "contention": [], "memory": []}
    for group in GROUPS:
        row = {}
        for library, bench in CRITERION_NAMES.items():
            value = criterion_median_ns(group, bench)
            if value is not None:
                row[library] = value
        data["criterion"][group] = row
    if os.path.exists(CONTENTION_CSV):
        with open(CONTENTION_CSV, newline="") as f:
            for r in csv.DictReader(f):
                if r["kind"] == "timing":
                    data["contention"].append({
                        "scenario": r["scenario"],
                        "threads": int(r["threads"]),
                        "library": r["library"],
                        "ns_per_op": float(r["ns_per_op"]),
                        "mops": float(r["mops"]),
                    })
                else:
                    data["memory"].append({
                        "library": r["library"],
                        "resident_bytes_per_series": float(r["resident_bytes_per_series"]),
                        "heap_bytes_per_series": float(r["heap_bytes_per_series"]),
                    })
    else:
        print(f"note: {CONTENTION_CSV} not found; contention panels will be empty", file=sys.stderr)
    os.makedirs(os.path.dirname(DATA), exist_ok=True)
    with open(DATA, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.relpath(DATA, ROOT)}")


# ------------------------------------------------------------------------------ drawing

WIDTH = 1000
PANEL_W = 470
LABEL_W = 150
BAR_H = 11
BAR_GAP = 2
ROW_GAP = 8
COLORS = {"1 thread": "#9ecae1", "2 threads, same series": "#08519c",
          "2 threads, different series": "#6baed6", "1 thread (criterion)": "#31a354",
          "resident": "#756bb1", "heap (live allocations)": "#bcbddc"}
OURS_MARK = "#d94801"


def fmt(v, unit):
    if unit == "bytes":
        return f"{v:.1f} B" if v < 100 else f"{v:.0f} B"
    if unit == "µs":
        return f"{v:.0f} µs" if v >= 100 else f"{v:.1f} µs"
    return f"{v:.2f} ns" if v < 10 else f"{v:.1f} ns" if v < 100 else f"{v:.0f} ns"


class Panel:
    """A horizontal bar chart on a log axis: rows of (label, [(series, value)])."""

    def __init__(self, title, unit, rows, note=None):
        self.title, self.unit, self.rows, self.note = title, unit, rows, note
        values = [v for _, bars in rows for _, v in bars if v]
        lo = min(values) if values else 1
        hi = max(values) if values else 10
        self.lo = 10 ** math.floor(math.log10(lo * 0.8))
        self.hi = 10 ** math.ceil(math.log10(hi * 1.6))

    def height(self):
        body = sum(len(bars) * (BAR_H + BAR_GAP) + ROW_GAP for _, bars in self.rows)
        return 34 + body + 30 + (14 if self.note else 0)

    def x(self, v):
        span = PANEL_W - LABEL_W - 60
        return LABEL_W + span * (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))

    def draw(self, ox, oy):
        out = [f'<g transform="translate({ox},{oy})">']
        out.append(f'<text x="0" y="14" class="title">{escape(self.title)}</text>')
        y = 30
        body_top = y
        for label, bars in self.rows:
            h = len(bars) * (BAR_H + BAR_GAP)
            weight = ' font-weight="bold"' if label == "ours" else ""
            out.append(f'<text x="{LABEL_W - 6}" y="{y + h / 2 + 4:.1f}" text-anchor="end"{weight}>{escape(label)}</text>')
            for series, v in bars:
                if v:
                    w = max(self.x(v) - LABEL_W, 1)
                    out.append(f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{COLORS[series]}"/>')
                    out.append(f'<text x="{LABEL_W + w + 3:.1f}" y="{y + BAR_H - 2}" class="value">{fmt(v, self.unit)}</text>')
                y += BAR_H + BAR_GAP
            y += ROW_GAP
        # Log axis with decade ticks.
        out.append(f'<line x1="{LABEL_W}" y1="{body_top - 4}" x2="{LABEL_W}" y2="{y}" class="axis"/>')
        decade = self.lo
        while decade <= self.hi * 1.0001:
            xx = self.x(decade)
            out.append(f'<line x1="{xx:.1f}" y1="{body_top - 4}" x2="{xx:.1f}" y2="{y}" class="grid"/>')
            label = f"{decade:g}"
            out.append(f'<text x="{xx:.1f}" y="{y + 12}" text-anchor="middle" class="tick">{label}</text>')
            decade *= 10
        per = "per series" if self.unit == "bytes" else "per operation"
        out.append(f'<text x="{LABEL_W + (PANEL_W - LABEL_W - 60) / 2:.0f}" y="{y + 25}" text-anchor="middle" class="tick">{escape(self.unit)} {per} (log scale; shorter is better)</text>')
        if self.note:
            out.append(f'<text x="0" y="{y + 39}" class="tick">{escape(self.note)}</text>')
        out.append("</g>")
        return out


def contention_rows(data, scenario_kind):
    rows = []
    by = {(r["scenario"], r["threads"], r["library"]): r["ns_per_op"] for r in data["contention"]}
    for library in [FLOOR] + LIBRARIES:
        bars = [
            ("1 thread", by.get((f"{scenario_kind}, same series", 1, library))),
            ("2 threads, same series", by.get((f"{scenario_kind}, same series", 2, library))),
            ("2 threads, different series", by.get((f"{scenario_kind}, different series", 2, library))),
        ]
        name = "fetch_add floor" if library == FLOOR else library
        if any(v for _, v in bars):
            rows.append((name, bars))
    return rows


def criterion_rows(data, group, scale=1.0, with_floor=True):
    row = data["criterion"].get(group, {})
    rows = []
    for library in ([FLOOR] if with_floor else []) + LIBRARIES:
        v = row.get(library)
        if v is not None:
            rows.append(("fetch_add floor" if library == FLOOR else library, [("1 thread (criterion)", v * scale)]))
    return rows


def plot():
    with open(DATA) as f:
        data = json.load(f)
    panels = [
        Panel("Counter increment (pre-resolved handle)", "ns", contention_rows(data, "counter")),
        Panel("15-bucket duration histogram observe", "ns", contention_rows(data, "histogram")),
        Panel("Closed label from &str (\"ZSCORE\") + increment", "ns", criterion_rows(data, "closed_label_inc")),
        Panel("Open label lookup (512 values) + increment", "ns", criterion_rows(data, "open_label_inc")),
        Panel("Encode a 6.5k-series node to text", "µs", criterion_rows(data, "encode_node", 1e-3, with_floor=False),
              note="measured's output lacks the two constant labels (30% fewer bytes)"),
    ]
    memory = [(m["library"], [("resident", m["resident_bytes_per_series"]),
                              ("heap (live allocations)", m["heap_bytes_per_series"])])
              for m in data["memory"]]
    if memory:
        panels.append(Panel("Memory per counter series, 2 writer threads", "bytes", memory,
                            note="ours: heap counts whole per-shard slabs; only written pages are resident"))
    legend = ["1 thread", "2 threads, same series", "2 threads, different series", "1 thread (criterion)",
              "resident", "heap (live allocations)"]
    columns = [[], []]
    heights = [60, 60]
    for p in panels:
        c = 0 if heights[0] <= heights[1] else 1
        columns[c].append((p, heights[c]))
        heights[c] += p.height() + 16
    total_h = max(heights) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h}" viewBox="0 0 {WIDTH} {total_h}" font-family="sans-serif" font-size="11">',
        "<style>.title{font-size:13px;font-weight:bold}.value{font-size:9px;fill:#333}"
        ".tick{font-size:9px;fill:#555}.axis{stroke:#333}.grid{stroke:#ddd}</style>",
        f'<rect width="{WIDTH}" height="{total_h}" fill="white"/>',
        '<text x="10" y="20" class="title">elastickv-metrics vs Rust peers: cost per operation, 1 vs 2 threads</text>',
    ]
    lx = 10
    for name in legend:
        out.append(f'<rect x="{lx}" y="32" width="12" height="10" fill="{COLORS[name]}"/>')
        out.append(f'<text x="{lx + 16}" y="41">{escape(name)}</text>')
        lx += 28 + 6.2 * len(name)
    for c, column in enumerate(columns):
        for p, y in column:
            out.extend(p.draw(10 + c * (PANEL_W + 30), y))
    out.append("</svg>")
    with open(SVG, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {os.path.relpath(SVG, ROOT)}")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("collect", "all"):
        collect()
    if what in ("plot", "all"):
        plot()
    if what not in ("collect", "plot", "all"):
        sys.exit(f"usage: {sys.argv[0]} [collect|plot]")


if __name__ == "__main__":
    main()
