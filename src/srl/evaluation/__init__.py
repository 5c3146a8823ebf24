"""Math evaluation (`srl eval`): greedy accuracy, avg@k and pass@k of a model on a benchmark file.

    from srl.evaluation import EvalConfig, evaluate
    result = evaluate(EvalConfig(model="smollm2-135m-instruct", data="gsm8k", limit=20))
    result.summary["metrics"]      # {"greedy_accuracy": ...}

- `config`: `EvalConfig`, every option documented (also the CLI flags).
- reading a benchmark (problem + gold answer from an answer field, a GSM8K `#### n` solution or a `\\boxed{}`
  solution), known benchmark names and their splits, the seeded `--limit` subset: `srl.data.benchmarks` (the
  teacher's `srl data generate` reads benchmarks too).
- `metrics`: scoring one response (`srl.data.answers` extraction and equivalence), greedy accuracy, avg@k, pass@k.
- `runner`: prompts, the run (generation is `srl.generation`), problems.jsonl / summary.json and the summary
  table.
"""

from srl.data.benchmarks import (BENCHMARKS, BenchmarkSpec, Problem, load_problems, resolve_data,
                                       select_subset)
from srl.evaluation.config import EvalConfig
from srl.evaluation.metrics import (Scored, avg_at_k, greedy_accuracy, mean_pass_at_k, pass_at_k, pass_k_values,
                                    score_response)
from srl.evaluation.runner import EvalResult, evaluate, summarize
from srl.generation import Generation
from srl.generation.hf import generate_batch

__all__ = [
    "BENCHMARKS", "BenchmarkSpec", "EvalConfig", "EvalResult", "Generation", "Problem", "Scored", "avg_at_k",
    "evaluate", "generate_batch", "greedy_accuracy", "load_problems", "mean_pass_at_k", "pass_at_k",
    "pass_k_values", "resolve_data", "score_response", "select_subset", "summarize",
]
