"""The scale curve: how backup and drill time (as ratios to the plain tools, measured in the same run) and
Backstop's own peak memory change with the size of the database.

    .venv/bin/python infra/bench/scale.py --run                      # medium, large, xlarge: 0.25, 1, 4 GB of SQL
    .venv/bin/python infra/bench/scale.py --run --sizes medium,large --runs 3
    .venv/bin/python infra/bench/scale.py                            # re-plot the last results, run nothing

With --run, `run.py` runs once per size (the cases below, `--runs` rounds each) and writes
.local/bench/scale-<size>.json; without it, those files (or `--results`) are read as they are. Prints a Markdown
table and writes the plot as SVG (`--svg`, default docs/benchmarks/scale.svg): ratios on the left, peak
memory on the right, the issue's targets as dashed lines. Sizes on the x axis are the corpus's own measure
(pg_dump's plain SQL bytes), on a log scale.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from common import BENCH, LOCAL, REPO, say

CASES = "pg_dump,gzip6_upload,backstop_zstd,pg_restore_j2,verify_counts,verify_digests"

# (case, label, colour): the ratio panel's lines (each case over its run's reference), and the memory panel's.
RATIOS = [
    ("backstop_zstd", "backup ÷ pg_dump", "#1f77b4"),
    ("gzip6_upload", "pg_dump | gzip -6 + upload ÷ pg_dump", "#7f7f7f"),
    ("verify_counts", "drill, row counts ÷ pg_restore -j2", "#2ca02c"),
    ("verify_digests", "drill, row digests ÷ pg_restore -j2", "#d62728"),
]
MEMORY = [
    ("backstop_zstd", "backup", "#1f77b4"),
    ("verify_counts", "drill, row counts", "#2ca02c"),
    ("verify_digests", "drill, row digests", "#d62728"),
]
# The issue's targets (ratio or MiB) drawn as dashed lines, in the colour of what they bound.
RATIO_TARGETS = [(1.10, "#1f77b4"), (1.00, "#2ca02c"), (1.50, "#d62728")]
MEMORY_TARGETS = [(64, "#1f77b4", "backup ≤ 64 MiB"), (128, "#2ca02c", "drill ≤ 128 MiB")]


def load(paths: list[Path]) -> list[dict]:
    """One point per corpus size. Several files of one size merge, later files' cases over earlier ones' (e.g.
    the drill from one run, the backup from another): each case keeps the ratio of its own run."""
    points: dict[str, dict] = {}
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{path} does not exist: run with --run first (or name results with --results)")
        result = json.loads(path.read_text())
        cases = result["cases"]
        point = {
            "size": result.get("size") or result.get("database"),
            "sql_gb": result["corpus"]["sql_bytes"] / 1e9,
            "runs": result["runs"],
            "file": str(path),
            "seconds": {c: v.get("median_seconds") for c, v in cases.items()},
            "ratio": {c: v.get("ratio_to_reference") for c, v in cases.items()},
            "peak_mib": {c: (v["median_own_peak_kb"] / 1024 if v.get("median_own_peak_kb") else None)
                         for c, v in cases.items()},
            "refused": {c: len(v.get("refused", [])) for c, v in cases.items() if v.get("refused")},
            "speeds": [x for v in cases.values() for pair in v.get("cpu_speed_mb_s", []) for x in pair],
        }
        merged = points.setdefault(point["size"], point)
        if merged is not point:
            for field in ("seconds", "ratio", "peak_mib"):
                merged[field].update({c: v for c, v in point[field].items() if v is not None})
            merged["refused"].update(point["refused"])
            merged["speeds"] += point["speeds"]
            merged["file"] += ", " + point["file"]
    return sorted(points.values(), key=lambda p: p["sql_gb"])


def table(points: list[dict]) -> str:
    def f(v, fmt):
        return format(v, fmt) if v is not None else "–"

    lines = ["| SQL GB | pg_dump s | backup s (ratio) | gzip pipeline s (ratio) | pg_restore -j2 s | "
             "drill counts s (ratio) | drill digests s (ratio) | backup peak MiB | drill peak MiB (counts, digests) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        s, r, m = p["seconds"], p["ratio"], p["peak_mib"]
        lines.append(
            f"| {p['sql_gb']:.2f} | {f(s.get('pg_dump'), '.2f')} "
            f"| {f(s.get('backstop_zstd'), '.2f')} ({f(r.get('backstop_zstd'), '.2f')}) "
            f"| {f(s.get('gzip6_upload'), '.2f')} ({f(r.get('gzip6_upload'), '.2f')}) "
            f"| {f(s.get('pg_restore_j2'), '.2f')} "
            f"| {f(s.get('verify_counts'), '.2f')} ({f(r.get('verify_counts'), '.2f')}) "
            f"| {f(s.get('verify_digests'), '.2f')} ({f(r.get('verify_digests'), '.2f')}) "
            f"| {f(m.get('backstop_zstd'), '.1f')} | {f(m.get('verify_counts'), '.1f')}, {f(m.get('verify_digests'), '.1f')} |")
    speeds = [f"{p['sql_gb']:.2f} GB: {min(p['speeds'])}..{max(p['speeds'])}" for p in points if p["speeds"]]
    if speeds:
        lines.append("")
        lines.append("Speed of one core around every case (SHA-256 MB/s): " + "; ".join(speeds))
    refused = [f"{p['size']}: " + ", ".join(f"{c} x{n}" for c, n in p["refused"].items()) for p in points if p["refused"]]
    if refused:
        lines.append("")
        lines.append("Refused runs (another process or the host ate the CPU): " + "; ".join(refused))
    return "\n".join(lines)


class Panel:
    """One chart: a log-scaled x axis (GB of SQL), a linear y axis from 0, in a box of the SVG."""

    def __init__(self, x0: float, y0: float, w: float, h: float, xs: list[float], y_max: float, title: str,
                 y_label: str):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.lo, self.hi = min(xs) / 1.5, max(xs) * 1.5
        self.y_max = y_max
        self.parts: list[str] = []
        self.parts.append(f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-weight="bold">{title}</text>')
        self.parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
        self.parts.append(f'<text x="{x0 - 38}" y="{y0 + h / 2}" text-anchor="middle" '
                          f'transform="rotate(-90 {x0 - 38} {y0 + h / 2})">{y_label}</text>')
        for x in xs:
            px = self.px(x)
            self.parts.append(f'<line x1="{px}" y1="{y0 + h}" x2="{px}" y2="{y0 + h + 4}" stroke="#999"/>')
            self.parts.append(f'<text x="{px}" y="{y0 + h + 17}" text-anchor="middle">{x:.2f}</text>')
        self.parts.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle">GB of SQL (log scale)</text>')
        step = nice_step(y_max)
        y = 0.0
        while y <= y_max + 1e-9:
            py = self.py(y)
            self.parts.append(f'<line x1="{x0}" y1="{py}" x2="{x0 + w}" y2="{py}" stroke="#eee"/>')
            self.parts.append(f'<text x="{x0 - 6}" y="{py + 4}" text-anchor="end">{y:g}</text>')
            y += step

    def px(self, x: float) -> float:
        return round(self.x0 + self.w * (math.log(x) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo)), 1)

    def py(self, y: float) -> float:
        return round(self.y0 + self.h - self.h * y / self.y_max, 1)

    def target(self, y: float, colour: str, label: str = "") -> None:
        py = self.py(y)
        self.parts.append(f'<line x1="{self.x0}" y1="{py}" x2="{self.x0 + self.w}" y2="{py}" stroke="{colour}" '
                          f'stroke-dasharray="5,4" stroke-opacity="0.7"/>')
        if label:
            self.parts.append(f'<text x="{self.x0 + self.w - 4}" y="{py - 4}" text-anchor="end" fill="{colour}">{label}</text>')

    def series(self, points: list[tuple[float, float]], colour: str) -> None:
        if not points:
            return
        path = " ".join(f"{self.px(x)},{self.py(y)}" for x, y in points)
        self.parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in points:
            self.parts.append(f'<circle cx="{self.px(x)}" cy="{self.py(y)}" r="3.5" fill="{colour}"/>')


def nice_step(y_max: float) -> float:
    for step in (0.1, 0.25, 0.5, 1, 2, 5, 10, 16, 32, 64):
        if y_max / step <= 8:
            return step
    return 128


def svg(points: list[dict]) -> str:
    xs = [p["sql_gb"] for p in points]
    ratios = [p["ratio"].get(c) for p in points for c, _, _ in RATIOS if p["ratio"].get(c)]
    peaks = [p["peak_mib"].get(c) for p in points for c, _, _ in MEMORY if p["peak_mib"].get(c)]
    # The gzip pipeline's ratio (4–5) would flatten the others: the panel stops at 2.5 and says so.
    ratio_top = min(2.5, max([1.6, *ratios]) * 1.1)
    width, height = 980, 440
    left = Panel(70, 40, 380, 260, xs, ratio_top, "time ÷ the plain tool's, same run", "ratio")
    right = Panel(580, 40, 380, 260, xs, max([140.0, *peaks]) * 1.1, "Backstop's own peak memory", "MiB")
    for y, colour in RATIO_TARGETS:
        left.target(y, colour)
    for y, colour, label in MEMORY_TARGETS:
        right.target(y, colour, label)
    for case, _, colour in RATIOS:
        series = [(p["sql_gb"], min(p["ratio"][case], ratio_top)) for p in points if p["ratio"].get(case)]
        left.series(series, colour)
        clipped = [p for p in points if (p["ratio"].get(case) or 0) > ratio_top]
        for p in clipped:
            left.parts.append(f'<text x="{left.px(p["sql_gb"]) + 6}" y="{left.py(ratio_top) + 14}" fill="{colour}">'
                              f'{p["ratio"][case]:.2f}</text>')
    for case, _, colour in MEMORY:
        right.series([(p["sql_gb"], p["peak_mib"][case]) for p in points if p["peak_mib"].get(case)], colour)
    legend = []
    for i, (_, label, colour) in enumerate(RATIOS):
        y = 362 + 18 * (i % 2)
        x = 70 + 440 * (i // 2)
        legend.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{colour}" stroke-width="2"/>'
                      f'<text x="{x + 30}" y="{y}">{label}</text>')
    legend.append('<text x="70" y="410" fill="#555">dashed: the targets (backup 1.10, drill with counts 1.00, with '
                  'digests 1.50; memory 64 and 128 MiB);</text>')
    legend.append('<text x="70" y="426" fill="#555">a ratio above the panel is written at its top; a point is '
                  'missing where its run had no same-run reference</text>')
    body = "\n".join(left.parts + right.parts + legend)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="medium,large,xlarge", help="corpus sizes (run.py --size), in order")
    parser.add_argument("--run", action="store_true", help="run the benchmark for each size first")
    parser.add_argument("--runs", type=int, default=1, help="rounds per size when running (default 1)")
    parser.add_argument("--only", default=CASES, help=f"cases when running (default {CASES})")
    parser.add_argument("--cli", help="backstop binary for run.py (default target/release/backstop)")
    parser.add_argument("--results", nargs="*", help="result files to plot instead of .local/bench/scale-<size>.json")
    parser.add_argument("--svg", default=str(REPO / "docs" / "benchmarks" / "scale.svg"))
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    paths = [Path(r) for r in args.results] if args.results else [LOCAL / "bench" / f"scale-{s}.json" for s in sizes]
    if args.run:
        for size, path in zip(sizes, paths):
            command = [sys.executable, str(BENCH / "run.py"), "--size", size, "--runs", str(args.runs),
                       "--only", args.only, "--out", str(path)] + (["--cli", args.cli] if args.cli else [])
            say(f"== {size}: {' '.join(command[1:])}")
            if subprocess.run(command).returncode != 0:
                say(f"run.py failed for {size}: the curve is not drawn")
                return 1
    points = load(paths)
    say(table(points))
    out = Path(args.svg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg(points))
    say(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
