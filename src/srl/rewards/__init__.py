"""Rewards: the SRL step reward (similarity of the action to the expert's step, -1 for a broken format) and
the outcome reward of the RLVR stage (is the final answer right?).

    text_similarity  the paper's difflib ratio 2M / (|a| + |b|), bit-identical and fast (C extension `_difflib`)
    functions        the rewards, as plain functions and as TRL reward functions

>>> srl_reward("<think>half of 48</think> Natalia sold 48/2 = 24 clips in May.",
...            "Natalia sold 48/2 = 24 clips in May.")
1.0
"""

from srl.rewards.functions import (FORMAT_PENALTY, REWARDS, action_reward, action_similarity, answer_reward,
                                   get_action_reward, get_answer_reward, get_step_reward, outcome_reward,
                                   srl_reward, step_similarity_reward)
from srl.rewards.text_similarity import similarity, similarity_many

__all__ = ["similarity", "similarity_many", "srl_reward", "outcome_reward", "step_similarity_reward",
           "answer_reward", "get_step_reward", "get_answer_reward", "action_similarity", "action_reward",
           "get_action_reward", "REWARDS", "FORMAT_PENALTY"]
