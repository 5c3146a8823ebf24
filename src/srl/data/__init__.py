"""The data stage: expert solutions in, step-wise instances out.

    trajectories  the data model (`Trajectory`, `Step`) and the loaders
    steps         splitters: a solution -> its ordered steps (math_steps: the LaTeX-aware sentence splitter)
    answers       final-answer extraction (`\\boxed{}`, GSM8K `#### n`)
    benchmarks    math problems with gold answers (`Problem`), known benchmark names and splits, overlap checks
    prompts       the paper's system prompts and the user turn of an instance (`PromptTemplate`)
    instances     trajectories -> step-wise instances (`InstanceOptions`, `build_instances`)
    agents/       multi-turn agent trajectories -> one instance per expert action
    build         `DataConfig` and `build`: what `srl data build` runs (and what training builds with)

The bundled sample `gsm8k_train_sample.jsonl` lives in this folder too (package data).
"""

import os

BUNDLED_GSM8K = os.path.join(os.path.dirname(__file__), "gsm8k_train_sample.jsonl")
