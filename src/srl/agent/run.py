"""Run a model as a software agent on a task set through mini-swe-agent, in the bubblewrap sandbox, and score it.

For each task: its buggy repository is prepared, mini-swe-agent's `DefaultAgent` (text-based actions: a THOUGHT
then one ```` ```mswea_bash_command ```` block, its `mini_textbased.yaml` prompts) talks to the model through
litellm (any OpenAI-compatible server: `--base_url`), every command runs in the task's own `Sandbox`, and when
the agent submits (or a limit ends it) its changes become a patch that is applied to a fresh copy and tested
(`srl.agent.tasks.evaluate_patch`). Written under `output_dir`:

    <id>/<id>.traj.json    the trajectory, in mini-swe-agent's own format (saved after every step), plus
                           `instance_id` and `resolved` at the end
    <id>/patch.diff        the agent's changes
    <id>/result.json       the task's summary (written last: a task with one is finished)
    results.jsonl          every finished task's summary, in task order
    preds.jsonl            the patches in SWE-bench's predictions format (instance_id, model_name_or_path, model_patch)
    trajectories.jsonl     every trajectory, one a line: `srl data build --format mini-swe-agent` reads it and
                           keeps the resolved ones
    summary.json           resolve rate (Wilson 95% interval), exit reasons, steps, tokens, cost

A rerun with the same output_dir skips the finished tasks (those whose run ended in an error, e.g. the endpoint
failing, run again). Tasks run in parallel `workers` threads, each with its own sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srl.agent import quiet_imports
from srl.agent.sandbox import MOUNT, Sandbox, SandboxLimits, bwrap_missing_reason
from srl.agent.tasks import SUITE, Task, diff_trees, evaluate_patch, load_tasks, prepare_repo
from srl.errors import InputError
from srl.evaluation.metrics import wilson_interval
from srl.io import check_writable_folder, read_mapping, write_json, write_jsonl, write_text

SUBMIT_WORD = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"  # mini-swe-agent's submit line
# What an SRL-trained model writes (the instances' target form): `<think>...</think>` then the command alone. The
# thinking may already be gone from the reply's content (litellm and vLLM's reasoning parsers move it to
# `reasoning_content`), so the action is what follows `</think>`, or the whole content without one. mini-swe-agent
# takes it with re.findall(pattern, reply, re.DOTALL); `srl data build --action_pattern` reads it back the same way.
SRL_ACTION_PATTERN = r"(?s)\A(?:.*</think>)?\s*(?P<action>.*\S)"
ACTION_STYLES = ("mini", "srl")


@dataclass
class AgentRunConfig:
    """`srl agent run`: which model, which tasks, where the results go, and the limits."""

    model: str = field(metadata={"help": "Model name at the endpoint (the name a vLLM server was started with, or "
                                         "an API model). With --base_url it is called as an OpenAI-compatible "
                                         "model; without, it is a litellm model name (e.g. gpt-4.1-mini)."})
    output_dir: str = field(metadata={"help": "Run folder (created; a rerun resumes it)."})
    base_url: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "Environment variable holding the API key (never written). A --base_url server may need none."})
    tasks: str = field(default=SUITE, metadata={"help": "Task file (JSONL, see srl.agent.tasks); default: the "
                                                        "shipped toolz suite."})
    ids: str | None = field(default=None, metadata={"help": "Comma-separated instance ids to run (default: all)."})
    limit: int | None = field(default=None, metadata={"help": "Run only the first N tasks."})
    workers: int = field(default=1, metadata={"help": "Tasks run at once (threads; each has its own sandbox)."})
    step_limit: int = field(default=30, metadata={"help": "Model calls per task (0: no limit)."})
    cost_limit: float = field(default=3.0, metadata={"help": "Dollars per task, as litellm prices the calls "
                                                             "(0: no limit; local models cost 0)."})
    time_limit: int = field(default=1800, metadata={"help": "Seconds per task, checked before each model call "
                                                            "(0: no limit)."})
    command_timeout: int = field(default=60, metadata={"help": "Seconds one command may run in the sandbox."})
    memory_mb: int = field(default=4096, metadata={"help": "Address-space limit per process in the sandbox, MiB."})
    processes: int = field(default=256, metadata={"help": "Processes a command may have at once."})
    output_chars: int = field(default=200_000, metadata={"help": "Characters of a command's output kept."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature."})
    max_tokens: int = field(default=2048, metadata={"help": "Tokens per model reply."})
    request_timeout: float = field(default=600.0, metadata={"help": "Seconds one model call may take."})
    action_style: str = field(default="mini", metadata={
        "help": "How the model writes its action: `mini` (mini-swe-agent's THOUGHT + one ```mswea_bash_command "
                "block) or `srl` (what `srl train --stage srl` teaches on agent instances: <think>...</think> then "
                "the command alone; the SRL instructions are added to the system prompt).",
        "choices": list(ACTION_STYLES)})
    oracle_files: bool = field(default=False, metadata={
        "help": "The oracle-file setting: the task text names the files the gold patch changes."})
    agent_config: str | None = field(default=None, metadata={
        "help": "A mini-swe-agent YAML config whose agent/model sections replace the prompts and templates "
                "(default: mini-swe-agent's mini_textbased.yaml)."})
    keep_repos: bool = field(default=False, metadata={"help": "Keep each task's working copy (<id>/repo)."})

    def __post_init__(self):
        for name in ("workers", "command_timeout", "memory_mb", "processes", "output_chars", "max_tokens"):
            if getattr(self, name) < 1:
                raise InputError("must be >= 1", field=name)
        for name in ("step_limit", "cost_limit", "time_limit"):
            if getattr(self, name) < 0:
                raise InputError("must be >= 0", field=name)
        if self.limit is not None and self.limit < 1:
            raise InputError("must be >= 1", field="limit")
        if self.action_style not in ACTION_STYLES:
            raise InputError(f"expected one of {', '.join(ACTION_STYLES)}", field="action_style")

    @property
    def sandbox_limits(self) -> SandboxLimits:
        return SandboxLimits(timeout=self.command_timeout, memory_mb=self.memory_mb, processes=self.processes,
                             output_chars=self.output_chars)


def mini_config(path: str | None = None) -> dict:
    """mini-swe-agent's config: its `mini_textbased.yaml` (text actions, any chat model), or the YAML at `path`."""
    quiet_imports()
    if path is None:
        import minisweagent

        path = os.path.join(os.path.dirname(minisweagent.__file__), "config", "mini_textbased.yaml")
    data = read_mapping(path, what="mini-swe-agent config")
    if not isinstance(data.get("agent"), dict):
        raise InputError("needs an `agent` section (system_template, instance_template)", path=path, field="agent")
    return data


class RunInterrupted(Exception):
    """The run was interrupted (Ctrl-C) while this task was in flight."""


class SandboxEnvironment:
    """mini-swe-agent's `Environment` over a `Sandbox`: each action runs there; a limit hit is reported in the
    observation's `<exception>`; the submit line ends the run as mini-swe-agent's own environments do."""

    def __init__(self, sandbox: Sandbox, stop: threading.Event | None = None):
        from pydantic import BaseModel

        class Config(BaseModel):
            cwd: str = MOUNT
            timeout: int = sandbox.limits.timeout

        self.sandbox, self.config, self.stop = sandbox, Config(), stop or threading.Event()

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        from minisweagent.exceptions import Submitted

        if self.stop.is_set():  # Ctrl-C: the task ends before its next command (and runs again on a rerun)
            raise RunInterrupted("interrupted")
        result = self.sandbox.run(action.get("command", ""), cwd=cwd or MOUNT, timeout=timeout)
        output = {"output": result.output, "returncode": result.returncode, "exception_info": result.limit_note}
        lines = result.output.lstrip().splitlines(keepends=True)
        if lines and lines[0].strip() == SUBMIT_WORD and result.returncode == 0:
            submission = "".join(lines[1:])
            raise Submitted({"role": "exit", "content": submission,
                             "extra": {"exit_status": "Submitted", "submission": submission}})
        return output

    def get_template_vars(self, **kwargs) -> dict[str, Any]:
        import platform

        return {**self.config.model_dump(), **platform.uname()._asdict(), **kwargs}

    def serialize(self) -> dict:
        return {"info": {"config": {"environment": {**self.config.model_dump(), **asdict(self.sandbox.limits)},
                                    "environment_type": "srl.agent.run.SandboxEnvironment (bubblewrap)"}}}


def make_model(cfg: AgentRunConfig, model_section: dict):
    """mini-swe-agent's text-based litellm model for the endpoint."""
    quiet_imports()
    import litellm
    from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel

    litellm.suppress_debug_info = True
    key = os.environ.get(cfg.api_key_env)
    if key is None and cfg.base_url is None and "/" not in cfg.model:
        raise InputError(f"no API key: set ${cfg.api_key_env} (or give --base_url for a local server)",
                         field="api_key_env")
    kwargs = {**model_section.get("model_kwargs", {}), "temperature": cfg.temperature,
              "max_tokens": cfg.max_tokens, "timeout": cfg.request_timeout}
    if cfg.base_url:
        kwargs.update(api_base=cfg.base_url, api_key=key or "EMPTY")
    elif key:
        kwargs["api_key"] = key
    section = {k: v for k, v in model_section.items() if k not in ("model_kwargs", "model_name", "model_class")}
    return LitellmTextbasedModel(model_name=f"openai/{cfg.model}" if cfg.base_url else cfg.model,
                                 model_kwargs=kwargs, cost_tracking="ignore_errors", **section)


def task_text(task: Task, oracle_files: bool) -> str:
    text = task.problem_statement + f"\n\nThe repository is at {MOUNT}, the working directory of every command."
    if oracle_files:
        text += "\n\nThe fix belongs in: " + ", ".join(f"`{f}`" for f in task.files) + "."
    return text


def token_counts(messages: list[dict]) -> dict[str, int]:
    """Prompt and completion tokens over the model replies of a trajectory (their `extra.response.usage`)."""
    totals = {"prompt": 0, "completion": 0}
    for m in messages:
        extra = m.get("extra") or {}
        response = extra.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            totals["prompt"] += int(usage.get("prompt_tokens") or 0)
            totals["completion"] += int(usage.get("completion_tokens") or 0)
    return totals


def run_task(task: Task, cfg: AgentRunConfig, agent_section: dict, model_section: dict,
             stop: threading.Event | None = None) -> dict:
    """One task end to end: prepare, run the agent in the sandbox, diff, score, write. Returns its summary."""
    from minisweagent.agents.default import DefaultAgent

    folder = os.path.join(cfg.output_dir, task.instance_id)
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # an unfinished or failed earlier attempt
    os.makedirs(folder)
    cache = os.path.join(cfg.output_dir, ".sources")
    repo, base = os.path.join(folder, "repo"), os.path.join(folder, ".base")
    prepare_repo(task, repo, cache)
    prepare_repo(task, base, cache)
    traj_path = os.path.join(folder, f"{task.instance_id}.traj.json")
    started = time.monotonic()
    error = None
    sandbox = Sandbox(repo, cfg.sandbox_limits)
    agent = DefaultAgent(make_model(cfg, model_section), SandboxEnvironment(sandbox, stop),
                         **{**agent_section, "step_limit": cfg.step_limit, "cost_limit": cfg.cost_limit,
                            "wall_time_limit_seconds": cfg.time_limit, "output_path": Path(traj_path)})
    try:
        try:
            exit_info = agent.run(task=task_text(task, cfg.oracle_files))
            exit_reason = exit_info.get("exit_status", "")
        except Exception as e:  # the endpoint failed for good, or mini-swe-agent did; the agent saved its exit
            exit_reason, error = type(e).__name__, str(e).splitlines()[0][:500] if str(e) else type(e).__name__
    finally:
        sandbox.close()
    patch = diff_trees(base, repo)
    seconds = time.monotonic() - started
    evaluation = evaluate_patch(task, patch, folder, cache_dir=cache)
    tokens = token_counts(agent.messages)
    summary = {"instance_id": task.instance_id, "resolved": evaluation.resolved, "patch_applied": evaluation.applied,
               "exit_reason": exit_reason, "steps": agent.n_calls, "tokens": tokens, "cost": agent.cost,
               "seconds": round(seconds, 1), "limit_hits": dict(Counter(e["limit"] for e in sandbox.events)),
               "failed_tests": evaluation.failed_fail_to_pass + evaluation.failed_pass_to_pass,
               "patch_chars": len(patch), "error": error, "model": cfg.model, "oracle_files": cfg.oracle_files}
    agent.save(Path(traj_path),
               {"instance_id": task.instance_id, "resolved": evaluation.resolved,
                "info": {"srl": {"evaluation": evaluation.as_dict(), "tokens": tokens, "seconds": summary["seconds"],
                                 "limit_hits": sandbox.events}}})
    write_text(os.path.join(folder, "patch.diff"), patch)
    if not cfg.keep_repos:
        shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    write_json(os.path.join(folder, "result.json"), summary)
    return summary


def read_result(output_dir: str, instance_id: str) -> dict | None:
    path = os.path.join(output_dir, instance_id, "result.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summarize(results: list[dict]) -> dict:
    """Resolve rate with its Wilson 95% interval, exit reasons, and the means and totals of the runs."""
    n, resolved = len(results), sum(bool(r["resolved"]) for r in results)
    low, high = wilson_interval(resolved, n)
    hits = Counter()
    for r in results:
        hits.update(r.get("limit_hits") or {})
    return {"tasks": n, "resolved": resolved, "resolve_rate": resolved / n if n else 0.0,
            "wilson_95": [low, high], "exit_reasons": dict(Counter(r["exit_reason"] or "?" for r in results)),
            "patches_applied": sum(bool(r["patch_applied"]) for r in results),
            "empty_patches": sum(r["patch_chars"] == 0 for r in results),
            "mean_steps": sum(r["steps"] for r in results) / n if n else 0.0,
            "prompt_tokens": sum(r["tokens"]["prompt"] for r in results),
            "completion_tokens": sum(r["tokens"]["completion"] for r in results),
            "cost": sum(r["cost"] for r in results), "seconds": sum(r["seconds"] for r in results),
            "limit_hits": dict(hits), "errors": sum(r.get("error") is not None for r in results)}


def write_outputs(output_dir: str, tasks: list[Task]) -> list[dict]:
    """results.jsonl, preds.jsonl, trajectories.jsonl and summary.json from the finished tasks' files."""
    results = [r for t in tasks if (r := read_result(output_dir, t.instance_id)) is not None]
    write_jsonl(os.path.join(output_dir, "results.jsonl"), results)
    preds, trajs = [], []
    for r in results:
        folder = os.path.join(output_dir, r["instance_id"])
        with open(os.path.join(folder, "patch.diff"), encoding="utf-8") as f:
            preds.append({"instance_id": r["instance_id"], "model_name_or_path": r["model"], "model_patch": f.read()})
        with open(os.path.join(folder, f"{r['instance_id']}.traj.json"), encoding="utf-8") as f:
            trajs.append(json.load(f))
    write_jsonl(os.path.join(output_dir, "preds.jsonl"), preds)
    write_jsonl(os.path.join(output_dir, "trajectories.jsonl"), trajs)
    write_json(os.path.join(output_dir, "summary.json"), summarize(results))
    return results


def run_agent(cfg: AgentRunConfig, progress: bool = True) -> tuple[list[dict], int]:
    """Run the tasks not yet finished in `cfg.output_dir`; returns (all finished results, tasks skipped)."""
    from srl.console import progress_bar

    quiet_imports()
    ids = [i.strip() for i in cfg.ids.split(",") if i.strip()] if cfg.ids else None
    tasks = load_tasks(cfg.tasks, ids, cfg.limit)
    config = mini_config(cfg.agent_config)
    agent_section = {k: v for k, v in config["agent"].items() if k != "mode"}
    model_section = dict(config.get("model") or {})
    if cfg.action_style == "srl":
        from srl.data.agents import ACTION_FORMATS, AGENT_INSTRUCTIONS

        instructions = AGENT_INSTRUCTIONS.format(action_format=ACTION_FORMATS["command"])
        agent_section["system_template"] = f"{agent_section['system_template'].rstrip()}\n\n{instructions}"
        model_section["action_regex"] = SRL_ACTION_PATTERN
    make_model(cfg, model_section)  # a missing key or bad option fails here, before any task starts
    reason = bwrap_missing_reason()
    if reason is not None:
        raise InputError(f"the agent's sandbox needs bubblewrap: {reason}")
    check_writable_folder(cfg.output_dir)
    os.makedirs(os.path.join(cfg.output_dir, ".sources"), exist_ok=True)
    todo, skipped = [], 0
    for t in tasks:
        done = read_result(cfg.output_dir, t.instance_id)
        if done is not None and done.get("error") is None:
            skipped += 1
        else:
            todo.append(t)
    stop = threading.Event()
    bar = progress_bar(f"agent ({cfg.model})", len(todo)) if progress else nullcontext(lambda n=1: None)
    with bar as advance:
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            futures = [pool.submit(run_task, t, cfg, agent_section, model_section, stop) for t in todo]
            try:
                for fut in as_completed(futures):
                    fut.result()
                    advance()
            except BaseException:  # Ctrl-C or a failed task: queued tasks never start, running ones stop
                stop.set()
                for fut in futures:
                    fut.cancel()
                raise
    return write_outputs(cfg.output_dir, tasks), skipped
