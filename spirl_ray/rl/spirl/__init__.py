"""SPiRL (Pertsch, Lee, Lim, CoRL 2020) on RLlib's new API stack: config, algorithm, learner, RL module, losses."""

from spirl_ray.rl.spirl.config import SPiRLConfig
from spirl_ray.rl.spirl.learner import SPiRLTorchLearner
from spirl_ray.rl.spirl.rl_module import SPiRLTorchRLModule
from spirl_ray.rl.spirl.spirl import SPiRL, TransitionReplayBuffer

__all__ = ["SPiRL", "SPiRLConfig", "SPiRLTorchLearner", "SPiRLTorchRLModule", "TransitionReplayBuffer"]
