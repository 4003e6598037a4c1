#!/usr/bin/env python3
"""Plots torus-soak's samples.csv: hub RSS (MiB) against uptime, with the judged
slope's line over the second half. Usage: soak-plot.py CSV PNG [SLOPE THRESHOLD]
(SLOPE: the soak's judged slope, MiB/hour; without it the plot estimates it the same
way, Theil-Sen over at most 400 samples)."""
import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    slope = float(sys.argv[3]) if len(sys.argv) > 3 else None
    threshold = float(sys.argv[4]) if len(sys.argv) > 4 else None
    rows = list(csv.DictReader(open(src)))
    if not rows:
        sys.exit("no samples")
    t = [float(r["uptime_s"]) / 60 for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    conns = [int(r["connections"]) for r in rows]
    anon = [int(r["anon_kib"]) / 1024 for r in rows] if "anon_kib" in rows[0] else None
    heap = [int(r["heap_kib"]) / 1024 if int(r.get("heap_kib", -1)) >= 0 else None for r in rows]

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(t, rss, marker=".", color="tab:blue", label="hub RSS (MiB)")
    if anon:
        ax.plot(t, anon, marker=".", color="tab:orange", label="anonymous RSS (MiB)")
    if any(h is not None for h in heap):
        ax.plot([x for x, h in zip(t, heap) if h is not None], [h for h in heap if h is not None],
                marker=".", color="tab:green", label="heap in use (MiB)")
    half = len(t) - len(t) // 2
    judged = anon if anon else rss
    xs, ys = t[-half:], judged[-half:]
    if len(xs) >= 2:
        # The judged slope (MiB/hour; x is in minutes), else Theil-Sen as the soak
        # computes it; the line goes through the median of the points' intercepts.
        if slope is not None:
            k = slope / 60
        else:
            step = max(1, len(xs) // 400)
            px, py = xs[::step], ys[::step]
            pairs = [(py[j] - py[i]) / (px[j] - px[i])
                     for i in range(len(px)) for j in range(i + 1, len(px)) if px[j] > px[i]]
            k = statistics.median(pairs) if pairs else 0
        b = statistics.median(y - k * x for x, y in zip(xs, ys))
        ax.plot(xs, [b + k * x for x in xs], "--", color="tab:red",
                label=f"2nd-half fit: {slope if slope is not None else k * 60:+.2f} MiB/h")
    ax.set_xlabel("uptime (minutes)")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(0, max(rss) * 1.3)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(t, conns, color="tab:gray", alpha=0.5, label="connections")
    ax2.set_ylabel("open connections (hub ledger)")
    ax2.set_ylim(0, max(max(conns), 1) * 1.3)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right")
    title = "torus-hub memory under soak"
    if threshold is not None:
        title += f" (threshold {threshold:g} MiB/h)"
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
