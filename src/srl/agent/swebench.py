"""SWE-bench: predictions in the harness's format, checked by its own loader, and scored by `swebench.harness`
where a docker engine runs.

An `srl agent run` folder has `preds.jsonl`, one line per task: `{"instance_id", "model_name_or_path",
"model_patch"}` (`PREDICTION_KEYS`, those `swebench.harness.grading.get_eval_report` documents). SWE-bench instances themselves run in their docker
images with mini-swe-agent's own runner (`mini-extra swebench`, its `DockerEnvironment`, images named as
`swebench_image(instance_id)`), which writes `preds.json` and `<id>.traj.json` files that `srl data build --format
mini-swe-agent` reads; the harness builds and runs the images to score the patches:

    python -m swebench.harness.run_evaluation --dataset_name princeton-nlp/SWE-bench_Verified \\
        --predictions_path run/preds.jsonl --run_id srl --max_workers 4

(`srl agent swebench --predictions run/preds.jsonl` checks the file, then runs exactly that.) Both need docker;
where `docker info` fails we say so in one line (`docker_unavailable_reason`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from srl.agent import quiet_imports
from srl.errors import InputError

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")


def docker_unavailable_reason() -> str | None:
    """None when a docker engine answers, else why not (one line)."""
    exe = shutil.which("docker")
    if exe is None:
        return "no `docker` command on PATH: SWE-bench instances run in docker images (install Docker Engine)"
    try:
        probe = subprocess.run([exe, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                               timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 20 s: no docker engine is reachable"
    if probe.returncode != 0:
        first = (probe.stderr or probe.stdout).strip().splitlines()
        return f"no docker engine is reachable (`docker info`: {first[0] if first else 'exit ' + str(probe.returncode)})"
    return None


def prediction(instance_id: str, model: str, patch: str) -> dict:
    """One prediction in the harness's format."""
    return {"instance_id": instance_id, "model_name_or_path": model, "model_patch": patch}


def check_predictions(path: str, dataset_name: str = "princeton-nlp/SWE-bench_Verified", split: str = "test"
                      ) -> list[dict]:
    """Read `path` with the harness's own loader (`swebench.harness.utils.get_predictions_from_file`) and check
    every prediction has the three keys, with string values and unique ids. Raises `InputError` (file, line)."""
    from swebench.harness.utils import get_predictions_from_file

    try:
        preds = get_predictions_from_file(path, dataset_name, split)
    except (ValueError, json.JSONDecodeError, OSError) as e:
        raise InputError(f"the SWE-bench harness cannot read it: {e}", path=path) from None
    seen = set()
    for i, p in enumerate(preds, 1):
        for key in PREDICTION_KEYS:
            if not isinstance(p.get(key), str):
                raise InputError("missing or not a string", path=path, line=i, field=key)
        if p["instance_id"] in seen:
            raise InputError(f"duplicate instance id {p['instance_id']!r}", path=path, line=i, field="instance_id")
        seen.add(p["instance_id"])
    return preds


def swebench_image(instance_id: str) -> str:
    """The docker image of a SWE-bench instance (mini-swe-agent's SWE-bench runner's own naming)."""
    quiet_imports()
    from minisweagent.run.benchmarks.swebench import get_swebench_docker_image_name

    return get_swebench_docker_image_name({"instance_id": instance_id})


def harness_command(predictions: str, dataset_name: str, run_id: str, max_workers: int = 4, split: str = "test"
                    ) -> list[str]:
    return [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", dataset_name, "--split", split,
            "--predictions_path", predictions, "--run_id", run_id, "--max_workers", str(max_workers)]


def run_harness(predictions: str, dataset_name: str, run_id: str, max_workers: int = 4, split: str = "test") -> int:
    """Check the predictions, then score them with the harness (needs docker; its report is its own output)."""
    check_predictions(predictions, dataset_name, split)
    reason = docker_unavailable_reason()
    if reason is not None:
        raise InputError(f"SWE-bench scoring needs docker: {reason}")
    return subprocess.run(harness_command(predictions, dataset_name, run_id, max_workers, split)).returncode


def label_trajectories(run_dir: str, report: str, output: str) -> tuple[int, int]:
    """The trajectories of a `mini-extra swebench` run folder (`<id>/<id>.traj.json`), each with `instance_id`
    and `resolved` from the harness's report (`<model>.<run_id>.json`, its `resolved_ids`), written one a line to
    `output` for `srl data build --format mini-swe-agent`. Returns (trajectories, resolved)."""
    import glob
    import os

    from srl.io import write_jsonl

    try:
        with open(report, encoding="utf-8") as f:
            resolved_ids = set(json.load(f)["resolved_ids"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a SWE-bench harness report with resolved_ids ({e})", path=report) from None
    rows = []
    for path in sorted(glob.glob(os.path.join(run_dir, "*", "*.traj.json"))):
        instance_id = os.path.basename(path)[:-len(".traj.json")]
        try:
            with open(path, encoding="utf-8") as f:
                traj = json.load(f)
        except ValueError as e:
            raise InputError(f"not JSON: {e}", path=path) from None
        rows.append({**traj, "instance_id": instance_id, "resolved": instance_id in resolved_ids})
    if not rows:
        raise InputError("no <id>/<id>.traj.json files here (a `mini-extra swebench` output folder?)", path=run_dir)
    write_jsonl(output, rows)
    return len(rows), sum(r["resolved"] for r in rows)
