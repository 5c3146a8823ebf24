"""`srl agent run` on the local suite against the scripted OpenAI-compatible server of the tests
(tests/agent_server.py): the whole pipeline (mini-swe-agent, sandbox, scoring, outputs) with a model whose
answers are known. docs/agents.md records its numbers.

    python scripts/agent_scripted_run.py oracle runs/oracle --workers 2     # applies each gold patch: resolves all
    python scripts/agent_scripted_run.py null runs/null                     # submits at once: resolves none

Every further argument goes to `srl agent run`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from agent_server import ScriptedServer, null_script, oracle_script  # noqa: E402

from srl.agent.tasks import load_tasks  # noqa: E402
from srl.cli import main  # noqa: E402


if __name__ == "__main__":
    which, output_dir, *rest = sys.argv[1:]
    script = {"oracle": lambda: oracle_script(load_tasks()), "null": lambda: null_script}[which]()
    with ScriptedServer(script, model=which) as server:
        sys.exit(main(["agent", "run", "--model", which, "--base_url", server.url, "--output_dir", output_dir,
                       *rest]))
