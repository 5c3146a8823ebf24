"""supervised-rl: Supervised Reinforcement Learning (Deng et al., arXiv 2510.25992) on the Hugging Face stack.

The package reads top to bottom like the method:

    trajectories -> steps -> instances -> prompts -> rewards -> sampling -> trainer -> stages -> evaluation -> cli
"""

__version__ = "0.1.0"
