"""The ω schedule of "SPiRL w/o prior init" (appendix F).

Without initialising the policy from the prior, early rollouts of a random
policy explore poorly; the paper instead executes, for a fraction ω of the
high-level steps, a skill sampled from the prior p(z|s) instead of one from
the policy: ω = 1 for the first 500k env steps, then annealed linearly to 0
over the next 500k env steps. The EnvRunners' RL module applies ω
(:meth:`~spirl_ray.rl.spirl.rl_module.SPiRLTorchRLModule.set_prior_sample_prob`);
the algorithm recomputes it from the low-level env-step count before every
weight sync.
"""

from __future__ import annotations


def prior_sample_prob(env_steps: float, hold_env_steps: int, anneal_env_steps: int) -> float:
    """ω at ``env_steps`` low-level env steps: 1 until ``hold_env_steps``, then linear to 0.

    Args:
        env_steps: low-level env steps sampled so far (>= 0).
        hold_env_steps: env steps with ω = 1 (paper: 500,000).
        anneal_env_steps: env steps over which ω goes 1 -> 0 (paper: 500,000; 0 = drop at once).

    Returns:
        ω in [0, 1], the probability that a rollout skill is drawn from the prior.

    Raises:
        ValueError: a negative argument.
    """
    if env_steps < 0 or hold_env_steps < 0 or anneal_env_steps < 0:
        raise ValueError(
            f"prior_sample_prob: env_steps={env_steps}, hold_env_steps={hold_env_steps}, "
            f"anneal_env_steps={anneal_env_steps} must all be >= 0"
        )
    if env_steps < hold_env_steps:
        return 1.0
    if anneal_env_steps == 0:
        return 0.0
    return max(0.0, 1.0 - (env_steps - hold_env_steps) / anneal_env_steps)
