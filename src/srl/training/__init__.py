"""Training: the SRL, RLVR and SFT stages on TRL.

    config       one configuration dataclass per stage (`RunArguments`, `SRLConfig`, `RLVRConfig`, ...)
    sampling     dynamic sampling: which groups of rollouts are informative, and batch surgery on TRL's tensors
    trainer      `SRLTrainer`: TRL's `GRPOTrainer` plus dynamic sampling, at TRL's own seams
    checkpoints  complete-checkpoint markers, the last complete checkpoint, rotation
    reporting    the run folder's metrics.jsonl, plots and the progress bar (trainer callbacks)
    stages       a stage's rows and `run_stage`: configuration in, run folder and model out
"""
