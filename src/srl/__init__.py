"""supervised-rl: Supervised Reinforcement Learning (Deng et al., arXiv 2510.25992) on the Hugging Face stack.

The package reads top to bottom like the method; each subpackage only imports the ones above it:

    srl.errors, srl.io        one exception for bad input; records with file:line errors, YAML, atomic writers
    srl.data                  expert trajectories -> steps -> step-wise instances (prompts, agents, build)
    srl.rewards               step similarity, answer equivalence, output format, the reward functions
    srl.generation            hf and vLLM generation, the think budget
    srl.training              configs, dynamic sampling, SRLTrainer (TRL), checkpoints, reports, stages
    srl.evaluation            benchmarks, scoring, the `srl eval` run
    srl.models, srl.tiny      known models (conversion, loading), tiny local test models
    srl.cli                   the `srl` command (library code never imports it)
"""

import os as _os

from srl import _moved

__version__ = "0.1.0"

# torch backs CPU tensors of 2 MB and more with transparent huge pages when this is set before its first allocation:
# fresh memory then costs one page fault per 2 MB instead of per 4 KB: a few percent of a CPU training step here
# (srl.training.threads.huge_pages_line, docs/benchmarks.md). A value the user set wins (0 turns it off).
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

_moved.install()
