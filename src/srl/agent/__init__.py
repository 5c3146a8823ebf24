"""Agentic SRL end to end: a model runs as a software agent (mini-swe-agent) on bug-fix tasks in a bubblewrap
sandbox, its patches are scored by the tasks' tests, and the resolved runs become SRL data (docs/agents.md).

- `sandbox`: the bubblewrap sandbox (no network, writes confined to the task's copy, time/memory/output limits);
- `tasks`: the local task file format, preparing a task's repository, patches, scoring and verifying;
- `run`: driving mini-swe-agent over a task set (resumable, parallel workers, limits) and the run's summary;
- `swebench`: SWE-bench predictions in the harness's format, checked by its loader; the harness where docker runs.
"""

import os


def quiet_imports() -> None:
    """Before importing mini-swe-agent or litellm: mini-swe-agent prints a banner on import, and litellm fetches
    a price list from the internet unless told to use its bundled copy."""
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
