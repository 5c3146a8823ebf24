"""`srl data export --to verl`: SRL or RLVR data, the reward and a run configuration for verl.

    srl data export --to verl --input instances.jsonl --output verl_srl/ --validation_fraction 0.05
    srl data export --to verl --stage rlvr --input train.jsonl --output verl_rlvr/
    bash verl_srl/run_srl.sh trainer.n_gpus_per_node=8
"""

from __future__ import annotations

from collections.abc import Sequence

from srl import options
from srl.console import console
from srl.errors import file_system_errors_reported


def make_parser():
    from srl.export.verl import ExportConfig

    return options.make_parser("srl data export", "Write training data for another engine: verl's parquet files, a "
                                          "reward module scoring exactly as `srl train`, and a run script with the "
                                          "paper's values (docs/scaling.md).", ExportConfig)


def data_export(argv: Sequence[str]) -> int:
    from srl.export.verl import export

    (cfg,) = options.parse(make_parser(), argv)
    with file_system_errors_reported("; nothing was written"):
        summary = export(cfg)
    rows = ", ".join(f"{split} {n:,} rows / {summary.problems[split]:,} problems"
                     for split, n in summary.rows.items() if n)
    console().print(f"[bold green]exported[/] {summary.stage} → {summary.output}: {rows}; run it with "
                    f"`bash {summary.output.rstrip('/')}/run_srl.sh`")
    return 0
