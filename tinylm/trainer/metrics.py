"""metrics.jsonl (one JSON object per logged step) and the loss-curve PNG."""
from __future__ import annotations

import json
import os
import sys

from tinylm.atomic import atomic_open, atomic_write_text

METRICS_NAME = "metrics.jsonl"
CURVE_NAME = "loss_curve.png"


class MetricsLog:
    """Appends records to output_dir/metrics.jsonl, flushed line by line so
    a crash loses at most the line being written (an append log is the one
    file not written by rename: read() skips a torn last line)."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, METRICS_NAME)

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        """The records; a torn last line (a crash mid-write) is left out."""
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def truncate_after(self, step: int) -> None:
        """Drops the records of steps after `step`: a run resumed from that
        checkpoint logs them again."""
        if os.path.exists(self.path):
            kept = [r for r in self.read() if r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_loss_curve(records: list[dict], path: str) -> bool:
    """Draws training (and eval) loss against step into a PNG, written to a
    temporary name and renamed. matplotlib is an optional dependency
    (pip install tinylm[plot]); without it this prints one line and returns
    False."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"tinylm: matplotlib is not installed, so no {os.path.basename(path)} "
              f"(pip install 'tinylm[plot]')", file=sys.stderr)
        return False
    # Figure + the Agg canvas directly: pyplot would touch global backend state.
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=label, marker="." if len(points) < 50 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return True
