"""Exports of SRL data for other training engines.

- `srl.export.verl`: step-wise instances (SRL) or whole problems (RLVR) -> verl's RL parquet, a reward module
  (`srl_reward.py`, verl's `compute_score`) and a run script with the paper's values in verl's keys.
"""
