"""Draws `cargo xtask bench`'s chart: commands/s over HTTP beside the storage limit,
and the ratios the performance issue sets targets for. Usage: bench_chart.py IN.json OUT.png"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
rows = results["rows"]
ratios = results["ratios"]

wide = max(13, 7 + 0.8 * len(rows))
fig, (left, right) = plt.subplots(1, 2, figsize=(wide, 5.5),
                                  gridspec_kw={"width_ratios": [max(3, len(rows) / 2), 2]})


def streams(n):
    return f"{n // 1000}k" if n >= 1000 else str(n)


labels = [f"{r['backend']}\n{streams(r['streams'])} streams\n{r['clients']} cl." for r in rows]
colours = ["#3b75af" if r["backend"] == "sqlite" else "#d9822b" for r in rows]
bars = left.bar(range(len(rows)), [r["per_second"] for r in rows], color=colours)
for i, r in enumerate(rows):
    left.hlines(r["limit"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    left.text(i, r["per_second"], f"{r['per_second']:,.0f}\np99 {r['p99_ms']:.0f} ms",
              ha="center", va="bottom", fontsize=6)
left.set_xticks(range(len(rows)), labels, fontsize=7)
left.set_ylabel("commands/s (dashed: storage limit, same run)")
left.set_title("Deposits over HTTP")
left.set_yscale("log")

names = [r["label"] for r in ratios]
values = [r["value"] for r in ratios]
targets = [r["target"] for r in ratios]
y = range(len(ratios))
right.barh(y, values, color="#5a9e5a")
right.scatter(targets, y, marker="|", s=400, color="red", label="target", zorder=3)
for i, v in enumerate(values):
    right.text(v, i, f" {v:.2f}", va="center", fontsize=8)
right.set_yticks(y, names, fontsize=8)
right.invert_yaxis()
right.set_title("Ratios (red: the issue's target)")
right.legend(loc="lower right", fontsize=8)

fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
