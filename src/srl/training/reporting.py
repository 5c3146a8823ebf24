"""The run folder's reports: `metrics.jsonl` (one JSON object per logging step), PNG plots of it, and a live
progress bar with the step reward.

    run/
      metrics.jsonl       {"step": 3, "reward": 0.21, "dynamic_sampling/filtered_fraction": 0.4, ...}
      plots/*.png         reward, filtered fraction, format errors, reward by step index (+ loss)
      completions.jsonl   prompt tail, expert step, model action, reward (written by SRLTrainer)
      checkpoint-N/       resumable checkpoints (complete ones carry srl_complete.json)
"""

from __future__ import annotations

import json
import math
import os

from transformers import TrainerCallback

from srl.io import atomic_path, write_jsonl

PLOTS = {
    "reward": (["reward"], "mean reward (step similarity, -1 = format error)"),
    "filtered_fraction": (["dynamic_sampling/filtered_fraction"], "fraction of groups dropped (reward std <= ε)"),
    "format_errors": (["format_error_rate"], "fraction of completions with a broken format"),
    "loss": (["loss"], "training loss"),
}


class MetricsFileCallback(TrainerCallback):
    """Append every log to `path` as JSON lines (main process only); on resume, drop lines past the checkpoint;
    redraw the plots at each save and at the end."""

    def __init__(self, path: str, plots_dir: str | None = None, stage: str = ""):
        self.path, self.plots_dir, self.stage = path, plots_dir, stage

    def on_train_begin(self, args, state, control, **kwargs):
        """Start the file from the trainer's own log history: empty for a fresh run; on resume, the logs up to the
        checkpoint (transformers restores `state.log_history` from it), so lines written after it are dropped."""
        if state.is_world_process_zero:
            write_jsonl(self.path, (self._row(h["step"], h) for h in state.log_history if "step" in h))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(self._row(state.global_step, logs)) + "\n")

    def _row(self, step: int, logs: dict) -> dict:
        row = {"step": step, "stage": self.stage}
        row.update({k: v for k, v in logs.items() if k != "step" and isinstance(v, (int, float, str)) and not
                    (isinstance(v, float) and math.isnan(v))})
        return row

    def on_save(self, args, state, control, **kwargs):
        self._plot(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._plot(state)

    def _plot(self, state):
        if state.is_world_process_zero and self.plots_dir and os.path.exists(self.path):
            plot_metrics(self.path, self.plots_dir)


class ProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps showing the latest reward and filtered fraction."""

    def __init__(self):
        self.progress = self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from srl.console import make_progress

        self.progress = make_progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        self.progress.start()
        self.task = self.progress.add_task(args.run_name or "training", total=state.max_steps,
                                           completed=state.global_step, status="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress and logs:
            parts = []
            for key, label in (("reward", "reward"), ("dynamic_sampling/filtered_fraction", "filtered"),
                               ("format_error_rate", "format err"), ("loss", "loss")):
                if isinstance(logs.get(key), (int, float)):
                    parts.append(f"{label} {logs[key]:.3f}")
            self.progress.update(self.task, completed=state.global_step, status="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()
            self.progress = None


def read_metrics(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    continue
    return rows


def plot_metrics(metrics_path: str, out_dir: str) -> list[str]:
    """Draw the run's curves from `metrics.jsonl` into `out_dir` (PNG). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, f"{name}.png")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        written.append(path)

    for name, (keys, title) in PLOTS.items():
        series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))] for k in keys}
        if not any(series.values()):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k, points in series.items():
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        save(fig, name)

    by_step = sorted({k for r in rows for k in r if k.startswith("reward_by_step/")},
                     key=lambda k: (k.endswith("+"), int(k.split("/")[1].rstrip("+"))))
    if by_step:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
        for k in by_step:
            points = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            left.plot(*zip(*points), marker=".", label=k.split("/")[1])
        left.set_title("reward by step index over training")
        left.set_xlabel("optimizer step")
        left.legend(title="step k", fontsize=7)
        half = len(rows) // 2
        for part, label in ((rows[:max(half, 1)], "first half"), (rows[half:], "second half")):
            means = []
            for k in by_step:
                values = [r[k] for r in part if isinstance(r.get(k), (int, float))]
                means.append(sum(values) / len(values) if values else float("nan"))
            right.plot([k.split("/")[1] for k in by_step], means, marker="o", label=label)
        right.set_title("mean reward by step index")
        right.set_xlabel("step index k of the target")
        right.legend()
        for ax in (left, right):
            ax.grid(alpha=0.3)
        save(fig, "reward_by_step")
    return written


def run_summary(run_dir: str) -> str:
    """One line on how a run went, from its metrics.jsonl: the reward in its first and last fifth of steps,
    format errors, filtered groups (the demo and `srl train` print it at the end)."""
    rows = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "reward" in r]
    if not rows:
        return ""
    fifth = max(len(rows) // 5, 1)

    def mean(part, key):
        return sum(r.get(key, 0) for r in part) / len(part)

    return (f"reward: first fifth {mean(rows[:fifth], 'reward'):.3f} -> last fifth {mean(rows[-fifth:], 'reward'):.3f}"
            f" over {len(rows)} steps; format errors {mean(rows, 'format_error_rate'):.1%}; groups filtered "
            f"{mean(rows, 'dynamic_sampling/filtered_fraction'):.1%}")
