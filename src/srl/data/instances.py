"""Step-wise instances, exactly as the paper builds them (Section 3): an expert trajectory with steps
y_1..y_N yields N-1 instances; instance k shows the problem and the expert steps y_1..y_{k-1} and its target
is y_k. Options: also target the last step (N instances), give the next step's title as a hint (the model
writes the rest), and show only the last m previous steps.

Rows are plain dicts with the columns TRL's GRPOTrainer expects (`prompt` as chat messages) plus what the
reward and the logs need:

    prompt          list[{"role", "content"}]   system prompt + user turn
    expert_step     str                         the target step (without its number)
    step_index      int                         k, 1-based
    num_steps       int                         N
    trajectory_id   str
    final_answer    str | None
    problem         str
    source          str
"""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from srl.errors import InputError
from srl import io as srl_io
from srl.io import atomic_open, atomic_path, write_json, write_jsonl, write_parquet
from srl.data.prompts import PromptTemplate, ThinkMode
from srl.data.trajectories import Trajectory

MIN_STEPS = 2


@dataclass(frozen=True)
class InstanceOptions:
    """How trajectories become instances.

    Args:
        include_last_step: also make the last step a target (N instances instead of the paper's N-1).
        title_hint: give the next step's title in the prompt; the target is then the step's action only.
        max_previous_steps: show only the last m expert steps (None: all of them, as the paper does for math).
        think: the output format the prompt asks for ("off" uses the system prompt without the monologue).
        template: the prompt template (default: the paper's system prompt and our user turn).
    """

    include_last_step: bool = False
    title_hint: bool = False
    max_previous_steps: int | None = None
    think: ThinkMode = "required"
    template: PromptTemplate = field(default_factory=PromptTemplate)


@dataclass
class BuildSummary:
    """What a build did: trajectories read, skipped (by reason), kept, instances written, steps per trajectory,
    and for agent trajectories the assistant turns by outcome (`turns`: action kept, rejected by the scaffold, no
    action found, dropped by option)."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    instances: int = 0
    steps_per_trajectory: list[int] = field(default_factory=list)
    turns: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.read - sum(self.skipped.values())

    def steps_stats(self) -> dict[str, float]:
        s = self.steps_per_trajectory
        if not s:
            return {}
        return {"min": min(s), "median": statistics.median(s), "mean": round(statistics.fmean(s), 2), "max": max(s)}

    def as_dict(self) -> dict[str, Any]:
        out = {"read": self.read, "kept": self.kept, "skipped": dict(self.skipped), "instances": self.instances,
               "steps_per_trajectory": self.steps_stats()}
        if self.turns:
            out["assistant_turns"] = dict(self.turns)
        return out


def trajectory_instances(traj: Trajectory, options: InstanceOptions = InstanceOptions()) -> list[dict[str, Any]]:
    """The step-wise instances of one trajectory (empty if it has fewer than 2 steps).

    >>> from srl.data.trajectories import Step
    >>> t = Trajectory("t1", "What is 2+3*4?", [Step("3*4 = 12."), Step("2 + 12 = 14."), Step("The answer is 14.")])
    >>> [(r["step_index"], r["expert_step"]) for r in trajectory_instances(t)]
    [(1, '3*4 = 12.'), (2, '2 + 12 = 14.')]
    """
    n = len(traj.steps)
    if n < MIN_STEPS:
        return []
    template = options.template
    system = template.system_prompt(options.think)
    if traj.system:
        system = f"{system}\n\n{traj.system}"
    last = n if options.include_last_step else n - 1
    rows = []
    for k in range(1, last + 1):  # k is the 1-based index of the target step
        first = 1 if options.max_previous_steps is None else max(1, k - options.max_previous_steps)
        previous = [s.text for s in traj.steps[first - 1:k - 1]]
        step = traj.steps[k - 1]
        hint = step.title if options.title_hint else None
        user = template.user_turn(traj.problem, previous, step_number=k, first_number=first, title=hint)
        rows.append({
            "prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "expert_step": step.action if hint else step.text,
            "step_index": k,
            "num_steps": n,
            "trajectory_id": traj.id,
            "final_answer": traj.final_answer,
            "problem": traj.problem,
            "source": traj.source,
        })
    return rows


def counted_rows(items: Iterable, summary: BuildSummary, rows_of: Callable[[Any], list[dict[str, Any]]],
                 skip_reason: Callable[[Any], str | None], steps_of: Callable[[Any], int] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """The rows of many trajectories (`rows_of(trajectory)`), counting in `summary` what was read and why anything
    was skipped: `("skip", reason)` items from a loader, and trajectories for which `skip_reason` gives a reason.
    `steps_of(trajectory)` is its number of steps for the statistics (default: `len(trajectory.steps)`)."""
    for traj in items:
        summary.read += 1
        reason = traj[1] if isinstance(traj, tuple) else skip_reason(traj)
        if reason:
            summary.skipped[reason] += 1
            continue
        rows = rows_of(traj)
        summary.steps_per_trajectory.append(steps_of(traj) if steps_of else len(traj.steps))
        summary.instances += len(rows)
        yield from rows


def build_instances(trajectories: Iterable[Trajectory | tuple[str, Any]], options: InstanceOptions = InstanceOptions(),
                    summary: BuildSummary | None = None) -> Iterator[dict[str, Any]]:
    """Instances of many trajectories, counting in `summary` what was read and why anything was skipped.
    Items may also be `("skip", reason)` tuples from a loader, which are counted and dropped."""
    def too_short(traj: Trajectory) -> str | None:
        if len(traj.steps) >= MIN_STEPS:
            return None
        return "no steps" if not traj.steps else "only 1 step"

    return counted_rows(trajectories, summary if summary is not None else BuildSummary(),
                        lambda traj: trajectory_instances(traj, options), too_short)


def to_dataset(rows: Iterable[dict[str, Any]]):
    """A `datasets.Dataset` of instance rows."""
    import datasets

    return datasets.Dataset.from_list(list(rows))


INSTANCE_COLUMNS = ("prompt", "expert_step")


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages: null, boolean, number, string, list, object."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "list",
             dict: "object"}
    return names.get(type(value), type(value).__name__)


def prompt_kind(rec) -> str:
    """Check one instance row read from a file (`srl.io.Record`) as the trainer and `srl data show` use it, and
    return the kind of its prompt ("text" or "messages"). Anything else is an `InputError` naming file, line and
    field: a missing column, an `expert_step` that is not a non-empty string, a prompt that is neither a
    non-empty string nor a non-empty list of messages {role: str, content: str}."""
    for column in INSTANCE_COLUMNS:
        if column not in rec.data:
            raise rec.error("missing: is this a file of step-wise instances written by `srl data build`?", column)
    step = rec.data["expert_step"]
    if not isinstance(step, str) or not step.strip():
        raise rec.error(f"must be a non-empty string, got {json_type(step) if step != '' else 'an empty one'}",
                        "expert_step")
    prompt = rec.data["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise rec.error("empty", "prompt")
        return "text"
    if not isinstance(prompt, list) or not prompt:
        raise rec.error(f"must be a string or a list of chat messages {{role, content}}, got "
                        f"{json_type(prompt) if prompt != [] else 'an empty list'}", "prompt")
    for i, message in enumerate(prompt):
        if not isinstance(message, dict):
            raise rec.error(f"must be a message {{role, content}}, got {json_type(message)}", f"prompt[{i}]")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                got = "missing" if key not in message else f"must be a string, got {json_type(message[key])}"
                raise rec.error(got, f"prompt[{i}].{key}")
    return "messages"


def checked_instances(records: Iterable) -> Iterator[Any]:
    """`records` (instance rows from one file), each checked by `prompt_kind`, and all of one kind: a prompt
    that is a string in one row and messages in another is refused at the row where it changes (a dataset column
    holds one type)."""
    first = None
    for rec in records:
        kind = prompt_kind(rec)
        if first is None:
            first = (kind, rec)
        elif kind != first[0]:
            where = f"{first[1].unit} {first[1].line}" if first[1].unit == "line" else f"record {first[1].line}"
            raise rec.error(f"is {'a string' if kind == 'text' else 'a list of messages'}, but on {where} it is "
                            f"{'a string' if first[0] == 'text' else 'a list of messages'}: every row's prompt must "
                            "be of the same kind", "prompt")
        yield rec


INSTANCE_FOLDER_MARKER = "srl_instances.json"  # written into every `datasets` folder we build: "this one is ours"
_DATASET_FOLDER_FILES = re.compile(r"(dataset_info\.json|state\.json|data-\d+-of-\d+\.arrow|dataset_dict\.json)$")


def check_output_target(path: str, inputs: Iterable[str | None] = ()) -> None:
    """Refuse (InputError, before any work starts) to write instances where that would destroy user data
    (`srl.io.check_output_target`): ours are a `.jsonl`/`.json`/`.parquet` file of instance rows (fields
    `prompt` and `expert_step`) or a `datasets` folder holding our marker file and nothing but the dataset's
    own files."""
    kind = "file" if os.path.splitext(path)[1].lower() in (".jsonl", ".json", ".parquet") else "folder"
    srl_io.check_output_target(path, inputs, ours=_is_instances_output, written_by="`srl data build`", kind=kind)


def _is_instances_output(path: str) -> bool:
    import json

    if os.path.isdir(path):
        names = os.listdir(path)
        return INSTANCE_FOLDER_MARKER in names and all(
            n == INSTANCE_FOLDER_MARKER or _DATASET_FOLDER_FILES.match(n) for n in names)
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            return {"prompt", "expert_step"} <= set(pq.read_schema(path).names)
        with open(path, encoding="utf-8") as f:
            head = f.read(1 << 20)
        if ext == ".jsonl":
            first = json.loads(head.split("\n", 1)[0])
            return isinstance(first, dict) and {"prompt", "expert_step"} <= set(first)
        return head.lstrip().startswith("[") and '"expert_step"' in head and '"prompt"' in head
    except Exception:  # unreadable or not instance rows: not ours
        return False


def write_rows(rows: Iterable[dict[str, Any]], path: str) -> int:
    """Write rows to `.jsonl`, `.json`, `.parquet`, or a `datasets` folder (any other path), atomically
    (`srl.io.atomic_path`: a temporary file or folder beside `path`, renamed at the end), so a failed build leaves
    nothing behind. Returns the count."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".jsonl":
        return write_jsonl(path, rows)
    if ext == ".json":
        rows = list(rows)
        write_json(path, rows)
        return len(rows)
    if ext == ".parquet":
        return write_parquet(rows, path)
    import datasets

    ds = to_dataset(rows)
    with atomic_path(path, folder=True) as tmp:
        quiet = datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # our own bar counts the rows; an error then stays one line
        try:
            ds.save_to_disk(tmp)
        finally:
            if not quiet:
                datasets.enable_progress_bars()
        write_json(os.path.join(tmp, INSTANCE_FOLDER_MARKER), {"written_by": "srl data build", "rows": len(ds)},
                   indent=None)
        check_output_target(path)  # still ours (or gone) right before it is replaced
    return len(ds)
