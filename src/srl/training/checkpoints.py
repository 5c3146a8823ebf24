"""Checkpoints a run can always resume from: a checkpoint folder counts only once it carries the complete marker
(`COMPLETE_MARKER`, written last, after every file of the checkpoint), and old checkpoints are rotated only after
that, so a run killed at any moment resumes from its last complete checkpoint.

The marker also holds what `SRLTrainer` needs beyond TRL's own state (the refill stream's position).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from srl.io import follow_umask, write_json

COMPLETE_MARKER = "srl_complete.json"


class FilesFollowUmask:
    """A `transformers.Trainer` mixin: the files of every model it saves (checkpoints and `save_model`, e.g.
    `final/`) follow the umask (`srl.io.follow_umask`), the weights too, which safetensors writes 0600.
    Use it first: `class MyTrainer(FilesFollowUmask, SFTTrainer)`."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        follow_umask(output_dir or self.args.output_dir)


def mark_complete(folder: str, state: dict[str, Any]) -> None:
    """Write the complete marker (atomically) into a checkpoint folder whose files are all written."""
    write_json(os.path.join(folder, COMPLETE_MARKER), state)


def read_marker(folder: str) -> dict[str, Any] | None:
    """The marker of a checkpoint folder, None if it has none."""
    path = os.path.join(folder, COMPLETE_MARKER)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def complete_checkpoints(output_dir: str) -> list[str]:
    """Checkpoint folders of `output_dir` that were completely written, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        complete = os.path.exists(os.path.join(path, COMPLETE_MARKER))
        if name.startswith("checkpoint-") and name[11:].isdigit() and complete:
            found.append((int(name[11:]), path))
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest completely written checkpoint, or None. A folder without the marker is never returned."""
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def rotate_complete_checkpoints(output_dir: str, limit: int) -> None:
    """Keep the `limit` newest complete checkpoints (0: keep all)."""
    done = complete_checkpoints(output_dir)
    for path in done[:-limit] if limit > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
