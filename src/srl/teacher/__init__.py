"""Expert trajectories from a teacher model (issue 14): `srl data generate` and `srl data rewrite`.

    from srl.teacher import EndpointConfig, GenerateConfig, RewriteConfig, generate_solutions, rewrite_solutions
    endpoint = EndpointConfig(model="smol", base_url="http://127.0.0.1:8000/v1")
    generate_solutions(GenerateConfig(input="gsm8k", output="teacher/solutions.jsonl", limit=40, n=4), endpoint)
    rewrite_solutions(RewriteConfig(input="teacher/solutions.jsonl", output="teacher/steps.jsonl"), endpoint)
    # then: srl data build --input teacher/steps.jsonl --format numbered --output instances.jsonl

- `client`: robust batch calling over the `openai` client (concurrency, retries, fatal errors, progress), the
  endpoint config and the API key (read from the environment, never written);
- `journal`: the resumable append-only JSONL of answered calls (a rerun skips them, a kill loses only the calls
  in flight) and the atomic writes of the files derived from it;
- `prompt`: the prompt files (defaults in `srl/teacher/prompts/`);
- `generate`: sample solutions, keep the verified ones, count correct samples per problem;
- `rewrite`: rewrite solutions into the paper's `1. **Title** action` steps, accept the faithful ones.
"""

from srl.teacher.client import EndpointConfig
from srl.teacher.generate import GenerateConfig, GenerateSummary, generate_solutions
from srl.teacher.rewrite import RewriteConfig, RewriteSummary, check_rewrite, rewrite_solutions

__all__ = ["EndpointConfig", "GenerateConfig", "GenerateSummary", "RewriteConfig", "RewriteSummary",
           "check_rewrite", "generate_solutions", "rewrite_solutions"]
