"""`srl eval`: a model on a math benchmark: greedy accuracy, avg@k, pass@k."""

from __future__ import annotations

from collections.abc import Sequence

from srl.cli.train import quiet_libraries
from srl.errors import file_system_errors_reported
from srl.options import make_parser, parse


# --- srl eval -----------------------------------------------------------------------------------------------
def eval_command(argv: Sequence[str]) -> int:
    from srl.evaluation import EvalConfig, evaluate

    parser = make_parser("srl eval", "Evaluate a model on a math benchmark: greedy accuracy, avg@k and pass@k; "
                                     "writes problems.jsonl and summary.json into --output_dir.", EvalConfig)
    (cfg,) = parse(parser, argv)
    quiet_libraries()
    with file_system_errors_reported():
        evaluate(cfg)
    return 0
