"""The run folder's reports: `metrics.jsonl` (one JSON object per logging step), PNG plots of it, and a live
progress bar with the step reward.

    run/
      metrics.jsonl       {"step": 3, "reward": 0.21, "dynamic_sampling/filtered_fraction": 0.4, ...}
      plots/*.png         reward (mean ± std), filtered fraction, format errors, truncated fraction, completion
                          length, entropy, KL, grad norm, loss, reward by step index: those that were logged
      completions.jsonl   SRL: prompt tail, expert_step, action, completion, reward; RLVR: prompt tail,
                          gold_answer, answer, completion, reward (written by SRLTrainer)
      checkpoint-N/       resumable checkpoints (complete ones carry srl_complete.json)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from transformers import TrainerCallback

from srl.io import atomic_path, write_jsonl

@dataclass(frozen=True)
class Plot:
    """One PNG of `plots/`: the curves of `keys` (each drawn when logged) against the optimizer step. `band`: a
    key holding the std of the first key, drawn as a ±1 std band around it; `fraction`: a 0-1 quantity, drawn on
    a fixed 0-1 axis so that plots of different runs compare at a glance."""

    name: str
    keys: tuple[str, ...]
    title: str
    ylabel: str
    band: str | None = None
    fraction: bool = False


PLOTS = (
    Plot("reward", ("reward",), "reward of the batch's completions: mean and ± 1 std", "reward", band="reward_std"),
    Plot("filtered_fraction", ("dynamic_sampling/filtered_fraction", "frac_reward_zero_std"),
         "groups whose rewards are all equal (dropped by dynamic sampling)", "fraction of groups", fraction=True),
    Plot("format_errors", ("format_error_rate",), "completions with a broken format", "fraction of completions",
         fraction=True),
    Plot("truncated", ("completions/clipped_ratio",), "completions cut at max_completion_length (no end of turn)",
         "fraction of completions", fraction=True),
    Plot("completion_length", ("completions/mean_length", "completions/max_length", "completions/min_length"),
         "completion length in the batch (see truncated.png for those cut at the limit)", "tokens"),
    Plot("entropy", ("entropy",), "mean entropy of the completion tokens", "entropy (nats)"),
    Plot("kl", ("kl",), "KL divergence to the reference model (logged when beta > 0)", "KL (nats per token)"),
    Plot("grad_norm", ("grad_norm",), "gradient norm before clipping", "L2 norm"),
    Plot("token_accuracy", ("mean_token_accuracy",), "SFT: next-token accuracy on the expert's tokens",
         "fraction of tokens", fraction=True),
    Plot("loss", ("loss",), "training loss", "loss"),
)


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
    """A rich progress bar over optimizer steps showing the latest reward and filtered fraction; over a budget's
    own unit (rollouts, seconds) when `meter` (a `srl.training.budget.Budget`) stops training there, since the
    stage's max_steps is then only a ceiling."""

    def __init__(self, meter=None):
        self.progress = self.task = None
        self.meter = meter

    def _completed(self, state) -> float:
        used = self.meter.progress_of(state) if self.meter else None
        return state.global_step if used is None else used[0]

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from srl.console import make_progress

        self.progress = make_progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        self.progress.start()
        used = self.meter.progress_of(state) if self.meter else None
        name = args.run_name or "training"
        total = state.max_steps if used is None else used[1]
        self.task = self.progress.add_task(name if used is None else f"{name} ({used[2]})", total=total,
                                           completed=self._completed(state), status="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task, completed=self._completed(state))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress and logs:
            parts = []
            for key, label in (("reward", "reward"), ("dynamic_sampling/filtered_fraction", "filtered"),
                               ("format_error_rate", "format err"), ("completions/clipped_ratio", "cut"),
                               ("loss", "loss")):
                if isinstance(logs.get(key), (int, float)):
                    parts.append(f"{label} {logs[key]:.3f}")
            self.progress.update(self.task, completed=self._completed(state), status="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()
            self.progress = None


def completion_row(inp: dict, text: str, output_format) -> dict:
    """A row of completions.jsonl, its columns named for what they hold. SRL (a step-wise instance): the step
    index, the prompt's end, the expert's step, the model's action (what the step reward compares) and the whole
    completion. RLVR (a problem with its final answer): the gold answer, the answer found in the completion (as
    `srl eval` finds it: `\\boxed{}`, `#### n`, then the last number for a GSM8K gold) and the completion."""
    row = {"prompt_tail": prompt_tail(inp["prompt"])}
    if "expert_step" in inp:
        from srl.rewards.format import parse_response

        return {"step_index": inp.get("step_index"), **row, "expert_step": inp["expert_step"],
                "action": parse_response(text, output_format).action, "completion": text}
    from srl.data.answers import extract_answer, use_number_fallback

    fallback = use_number_fallback("auto", inp.get("gold_kind"))
    return {**row, "gold_answer": inp.get("final_answer"),
            "answer": extract_answer(text, "auto", last_number_fallback=fallback), "completion": text}


def prompt_tail(prompt, chars: int = 300) -> str:
    """The end of a prompt (a string, or the last message of a chat) for the completions table."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content", ""))[-chars:]
    return str(prompt)[-chars:]


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

    for plot in PLOTS:
        series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))] for k in plot.keys}
        if not any(series.values()):
            continue
        std = {r["step"]: r[plot.band] for r in rows if plot.band and isinstance(r.get(plot.band), (int, float))}
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for k, points in series.items():
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, label=k)
            if k == plot.keys[0] and std:
                band = [(x, y - std[x], y + std[x]) for x, y in points if x in std]
                xs, low, high = zip(*band)
                ax.fill_between(xs, low, high, alpha=0.2, label=f"± 1 std ({plot.band})")
        _style(ax, plot.title, plot.ylabel, plot.fraction, legend=len(series) > 1 or bool(plot.band))
        save(fig, plot.name)
    by_step = sorted({k for r in rows for k in r if k.startswith("reward_by_step/")},
                     key=lambda k: (k.endswith("+"), int(k.split("/")[1].rstrip("+"))))
    if by_step:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
        for k in by_step:
            points = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            left.plot(*zip(*points), marker=".", label=k.split("/")[1])
        _style(left, "reward by step index over training", "mean reward", legend=False)
        left.legend(title="step k", fontsize=7)
        half = len(rows) // 2
        for part, label in ((rows[:max(half, 1)], "first half"), (rows[half:], "second half")):
            means = []
            for k in by_step:
                values = [r[k] for r in part if isinstance(r.get(k), (int, float))]
                means.append(sum(values) / len(values) if values else float("nan"))
            right.plot([k.split("/")[1] for k in by_step], means, marker="o", label=label)
        right.set_title("mean reward by step index", fontsize=9)
        right.set_xlabel("step index k of the target")
        right.set_ylabel("mean reward")
        right.grid(alpha=0.3)
        right.legend()
        save(fig, "reward_by_step")
    return written


def _style(ax, title: str, ylabel: str, fraction: bool = False, legend: bool = True) -> None:
    """Title, axis labels, whole-number step ticks, a 0-1 axis for fractions, grid and legend."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=9)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if fraction:
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


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
