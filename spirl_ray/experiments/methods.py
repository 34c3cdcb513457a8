"""The methods compared in the paper (§4, Fig. 4; appendix E, F) as switches of one algorithm.

Every method is the :class:`~spirl_ray.rl.spirl.SPiRL` algorithm (RLlib SAC
with SPiRL's learner) with a few switches, so they share the replay, the
update ratio, the hyperparameters and the metrics; only what the paper
changes differs:

=====================  ==============  ==========  ==========  ===========  ==============
method                 offline model   acts in     KL to prior  policy init  prior sampling
=====================  ==============  ==========  ==========  ===========  ==============
spirl                  skill VAE+prior  skills      yes          prior        no
spirl_no_prior_init    skill VAE+prior  skills      yes          random       ω schedule (F)
ssp                    skill VAE        skills      no (entropy) random       no
prior_init_sac         skill VAE+prior  skills      no (entropy) prior        no       (E)
sac                    none             actions     no (entropy) random       no
bc_sac                 flat p(a|s)      actions     no (entropy) BC policy    no
flat_prior             flat p(a|s)      actions     yes          prior        no
=====================  ==============  ==========  ==========  ===========  ==============

"SPiRL closed-loop" is ``spirl`` with ``skill_model.decoder: closed_loop``;
the state-conditioned decoder of appendix D is
``skill_model.decoder_state_conditioned: true`` — model options, not methods.
The flat model (BC policy / flat prior) is a
:class:`~spirl_ray.skills.models.SkillModel` with ``decoder='flat'`` (H = 1,
latent = pre-tanh action), trained by maximum likelihood on the same dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class Method:
    """What one method needs and switches on.

    Attributes:
        name: key used in configs and trial names.
        offline_model: ``"skills"`` (skill VAE + prior), ``"flat"`` (single-step
            action model p(a|s)) or ``None`` (nothing trained offline).
        skill_space: True: the policy acts in skill space through the frozen
            decoder (skill env, H env steps per high-level step); False: on
            primitive actions (one env step per step).
        use_skill_prior: KL to the offline model's prior replaces the entropy.
        init_policy_from_prior: the policy starts as a copy of the offline prior.
        prior_sampling: rollout skills drawn from the prior with the ω schedule.
        label: legend label in plots.
    """

    name: str
    offline_model: Optional[Literal["skills", "flat"]]
    skill_space: bool
    use_skill_prior: bool
    init_policy_from_prior: bool
    prior_sampling: bool
    label: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("spirl", "skills", True, True, True, False, "SPiRL (ours)"),
        Method("spirl_no_prior_init", "skills", True, True, False, True, "SPiRL w/o prior init"),
        Method("ssp", "skills", True, False, False, False, "SSP w/o prior"),
        Method("prior_init_sac", "skills", True, False, True, False, "PriorInit + SAC"),
        Method("sac", None, False, False, False, False, "SAC"),
        Method("bc_sac", "flat", False, False, True, False, "BC + SAC"),
        Method("flat_prior", "flat", False, True, True, False, "Flat Prior"),
    )
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]
