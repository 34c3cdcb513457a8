"""``SPiRLConfig``: RLlib ``SACConfig`` with SPiRL's hyperparameters and switches.

Paper hyperparameters (appendix B.2, reference facts §1) are set explicitly in
``__init__`` because RLlib's SAC defaults differ (actor lr 3e-5, Huber critic
loss, prioritised episode replay, fusion Q-nets, 1500 warm-up steps):

==========================  ==============================================
batch                       256 high-level transitions
lr (policy, critics, α)     3e-4 each, Adam
γ / τ                       0.99 / 5e-3
critic loss                 ½ MSE, min of two critics (twin Q)
α                           log α starts at 0 (α = 1), tuned towards δ
replay                      1e6 transitions, uniform (plain transition buffer)
warm-up                     5000 low-level env steps = ceil(5000 / H) high-level steps
update ratio                one gradient step per high-level transition
==========================  ==============================================

Counting: every RLlib counter (``num_env_steps_sampled_lifetime``, episode
length, ``num_steps_sampled_before_learning_starts``) counts HIGH-LEVEL steps
(skills) with a skill env; low-level env steps are logged by
:class:`spirl_ray.rl.callbacks.SPiRLMetricsCallback` (``env_runners/env_steps_lifetime``).

Build::

    config = (SPiRLConfig()
              .environment("my_skill_env")
              .env_runners(num_env_runners=1)
              .training(skill_model_path="skills.pt", target_divergence=5.0))
    algo = config.build_algo()       # or tune.Tuner(SPiRL, param_space=config)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple, Type, Union

from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.sac.sac import SACConfig
from ray.rllib.core.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

KL_ESTIMATORS = ("analytic", "sampled")


class SPiRLConfig(SACConfig):
    """Config of :class:`~spirl_ray.rl.spirl.spirl.SPiRL` (Pertsch et al., CoRL 2020, Algorithm 1).

    Baselines are the same algorithm with switches:

    * SPiRL: ``use_skill_prior=True, init_policy_from_prior=True`` (defaults).
    * SPiRL w/o prior init (appendix F): ``init_policy_from_prior=False``.
    * SSP w/o prior: ``use_skill_prior=False, init_policy_from_prior=False``
      (entropy-regularised SAC in skill space, target entropy ``target_entropy``).
    * PriorInit + SAC (appendix E): ``use_skill_prior=False, init_policy_from_prior=True``.
    """

    def __init__(self, algo_class=None):
        from spirl_ray.rl.spirl.spirl import SPiRL

        super().__init__(algo_class=algo_class or SPiRL)
        # ---- SPiRL-specific (see `training()` for meaning) ----
        self.skill_model_path: Optional[str] = None
        self.target_divergence: float = 5.0
        self.kl_estimator: str = "analytic"
        self.kl_samples: int = 10
        self.kl_reduction: str = "mean"
        self.use_skill_prior: bool = True
        self.init_policy_from_prior: bool = True
        self.warmup_env_steps: Optional[int] = 5000
        self.skill_horizon: Optional[int] = None
        self.updates_per_step: float = 1.0
        self.critic_hidden: int = 256
        self.critic_layers: int = 5
        self.critic_layer_norm: bool = False
        self.alpha_min: Optional[float] = None
        self.prior_sampling_schedule: Optional[Tuple[int, int]] = None
        self.squash_scale: Optional[float] = None
        self.timeout_as_terminal: bool = True
        self.shared_image_encoder: bool = False
        self.freeze_policy_encoder: bool = False
        self.cache_prior_features: bool = False
        self.critic_prior_encoder: bool = False
        self.critic_state_dim: Optional[int] = None
        # RLlib's flag (old API stack only there): here the replay rows go into every checkpoint, so that a
        # resumed trial keeps learning from the same buffer (SPiRL.get_state)
        self.store_buffer_in_checkpoints = True
        # ---- deterministic evaluation every N low-level env steps (see `evaluation()`) ----
        self.evaluation_every_env_steps: Optional[int] = None
        # ---- speed (see `training()`); learning is the same either way ----
        self.learner_fast_path: bool = True
        self.max_updates_per_learner_call: int = 64
        self.learner_torch_threads: Optional[int] = None
        self.overlap_sampling: bool = True
        self.warmup_sample_chunk: int = 32
        # ---- paper hyperparameters (RLlib's SAC defaults differ) ----
        self.train_batch_size_per_learner = 256
        self.actor_lr = 3e-4
        self.critic_lr = 3e-4
        self.alpha_lr = 3e-4
        self.gamma = 0.99
        self.tau = 5e-3
        self.initial_alpha = 1.0  # log α = 0
        self.twin_q = True
        self.n_step = 1
        # Validated by SACConfig; SPiRL replaces it by a uniform transition buffer of this capacity.
        self.replay_buffer_config = {"type": "EpisodeReplayBuffer", "capacity": int(1e6)}
        self.num_steps_sampled_before_learning_starts = 500  # recomputed in validate() from warmup_env_steps / H
        # Derived in validate() from the skill-model file (driver side only; copied to workers).
        self._skill_model_meta: Optional[Dict[str, Any]] = None

    @override(SACConfig)
    def training(
        self,
        *,
        skill_model_path: Optional[str] = NotProvided,
        target_divergence: Optional[float] = NotProvided,
        kl_estimator: Optional[Literal["analytic", "sampled"]] = NotProvided,
        kl_samples: Optional[int] = NotProvided,
        kl_reduction: Optional[Literal["mean", "sum"]] = NotProvided,
        use_skill_prior: Optional[bool] = NotProvided,
        init_policy_from_prior: Optional[bool] = NotProvided,
        warmup_env_steps: Optional[int] = NotProvided,
        skill_horizon: Optional[int] = NotProvided,
        updates_per_step: Optional[float] = NotProvided,
        critic_hidden: Optional[int] = NotProvided,
        critic_layers: Optional[int] = NotProvided,
        critic_layer_norm: Optional[bool] = NotProvided,
        alpha_min: Optional[float] = NotProvided,
        prior_sampling_schedule: Optional[Tuple[int, int]] = NotProvided,
        squash_scale: Optional[float] = NotProvided,
        timeout_as_terminal: Optional[bool] = NotProvided,
        shared_image_encoder: Optional[bool] = NotProvided,
        freeze_policy_encoder: Optional[bool] = NotProvided,
        cache_prior_features: Optional[bool] = NotProvided,
        critic_prior_encoder: Optional[bool] = NotProvided,
        critic_state_dim: Optional[int] = NotProvided,
        learner_fast_path: Optional[bool] = NotProvided,
        max_updates_per_learner_call: Optional[int] = NotProvided,
        learner_torch_threads: Optional[int] = NotProvided,
        overlap_sampling: Optional[bool] = NotProvided,
        warmup_sample_chunk: Optional[int] = NotProvided,
        **kwargs,
    ) -> "SPiRLConfig":
        """SPiRL settings on top of ``SACConfig.training`` (all SAC arguments still apply).

        Args:
            skill_model_path: ``.pt`` file written by
                :func:`spirl_ray.skills.checkpoint.save_skill_model`. Its prior
                p(z|s) is the KL target and (optionally) the policy's
                initialisation; it is loaded only on the learner. Required when
                ``use_skill_prior`` or ``init_policy_from_prior``.
            target_divergence: δ, the target of E[D_KL(π ‖ p)] for the α
                update, on the scale set by ``kl_reduction`` (default: the mean
                per-latent-dim KL, as the reference implementation compares it).
                Paper: kitchen 5, block stacking 5, maze 1. Default 5. Must be > 0.
            kl_estimator: ``"analytic"`` (closed-form Gaussian KL of the
                pre-squash Gaussians; default, appendix F) or ``"sampled"``
                (``kl_samples``-sample Monte-Carlo estimate clamped to ±100, as
                the reference code).
            kl_samples: samples of the MC estimate (default 10).
            kl_reduction: ``"mean"`` (default; the reference's
                ``kl.mean(dim=-1)``, the scale the paper's δ values refer to)
                or ``"sum"`` (textbook KL; a mean-scale δ is δ·|Z| here) over
                the latent dims. Used in the critic target, actor and α losses.
            use_skill_prior: True: regularise towards the learned prior (SPiRL).
                False: standard SAC entropy (uniform prior) in skill space, α
                tuned towards ``target_entropy`` (baselines).
            init_policy_from_prior: initialise the policy with the prior's
                weights (appendix F; default True). Warm-up skills are sampled
                from the policy, i.e. from the prior when this is True.
            warmup_env_steps: low-level env steps collected before the first
                update (paper: 5000). Converted to high-level steps as
                ceil(warmup_env_steps / H) and written to
                ``num_steps_sampled_before_learning_starts``. ``None`` keeps an
                explicitly set ``num_steps_sampled_before_learning_starts``
                (in high-level steps); passing that argument alone also sets
                ``warmup_env_steps`` to ``None``.
            skill_horizon: H, low-level steps per skill, used only for the
                warm-up conversion. Default: the skill model's horizon, else 10.
            updates_per_step: gradient steps per sampled high-level transition
                (paper: 1). Exact in expectation for any number of EnvRunners
                (unlike RLlib's ``training_intensity``).
            critic_hidden: width of the critic MLPs (kitchen 256).
            critic_layers: number of linear layers of each critic MLP on
                [s, a] (kitchen 5; maze 2). LeakyReLU(0.2), no BatchNorm.
            critic_layer_norm: LayerNorm after every hidden linear layer of
                both critics and their targets (not the reference's; off by
                default). It keeps a critic from extrapolating far above its
                targets at skills the data never reached, which is how the
                kitchen runs diverged (Q above the 4 subtasks an episode can
                pay; results/kitchen/diagnosis_timeout_bootstrap, cause 5).
            alpha_min: a floor on α (not the paper's; ``None``, the default,
                has none): after every gradient step log α is clamped to
                ≥ log(alpha_min). While the policy still equals the prior (KL ≈ 0
                ≪ δ) Algorithm 1's α update lowers log α by about ``alpha_lr``
                per gradient step (Adam), so α can fall ~1000x before the critic
                first pulls the policy away; the KL then overshoots δ by 10x
                before α climbs back (block stacking: α 0.001 and KL 40-60 nats
                at 30-40k env steps, results/block_stacking/diagnosis). In α's
                units (the reward scale per high-level step). Must be > 0.
            prior_sampling_schedule: ``(hold_env_steps, anneal_env_steps)``
                of "SPiRL w/o prior init" (appendix F; paper: (500000, 500000)):
                a rollout skill is sampled from the prior instead of the policy
                with probability ω = 1 for ``hold_env_steps`` low-level env
                steps, then annealed linearly to 0
                (:func:`~spirl_ray.rl.spirl.prior_sampling.prior_sample_prob`).
                Needs ``skill_model_path``; the prior is then loaded on the
                EnvRunners too. ``None`` (default): off.
            squash_scale: s in z = bound·tanh(u / s), u the policy's Gaussian
                sample in the prior's space (the policy is "tanh-squashed to
                [-bound, bound]" either way). ``None`` (default): s = bound
                (2 for skills) when the prior is a skill prior, so z ≈ u for
                |u| ≲ 1 and the policy copied from the prior executes the
                prior's skills; s = 1 for a flat action prior (fitted on
                atanh(a)) and without a prior. ``1.0`` reproduces the reference
                code (z = 2·tanh(u), about 2u near 0 for a prior-copied
                policy). The KL is unaffected (same affine map on both
                Gaussians). Must be > 0.
            shared_image_encoder: image observations only: the twin critics
                share ONE conv encoder (trained by the sum of both critic
                losses) and the twin target critics one target encoder, as in
                SAC-AE / DrQ; the conv runs once per batch for both. Default
                False: each critic its own encoder (the reference SPiRL).
                Faster (``python -m benchmarks.bench_image_learner``), but a
                different learner, not the same math.
            freeze_policy_encoder: image observations only: the policy's conv
                encoder (copied from the prior, appendix F) is not trained; the
                actor loss trains the policy's MLP only. The policy still
                starts as the prior, and its conv features are the frozen
                prior's (computed once per batch for both). Needs
                ``init_policy_from_prior``. Default False (the whole policy is
                trained, as in the reference SPiRL). Faster, a different learner.
            cache_prior_features: image observations with the skill prior
                only: the replay stores the frozen prior's conv features of s
                and s' ((F,) float32 each, F = 512 for the paper's conv),
                computed once per transition by the learner's prior when the
                transition is added, and the learner reads them instead of
                running the prior's conv (with ``freeze_policy_encoder`` also
                the policy's) in every step that replays it. Same math, bit for
                bit (``tests/test_prior_feature_cache.py``); a speed
                replacement measured by ``python -m
                benchmarks.bench_image_learner`` (rows ``+cached``). Costs
                2 x F x 4 bytes per transition (4 KiB: doubles a maze replay's
                memory, see ``TransitionReplayBuffer``). Default False.
                ``SPiRL.setup`` raises ValueError when the module cannot read
                the cache (vector states, no prior, ``fused_image_forward`` False).
            critic_prior_encoder: image observations with the skill prior
                only: the twin critics and their targets read the frozen
                prior's conv features ([f_prior(s), z] -> MLP) instead of
                training conv encoders of their own; only the critic MLPs
                learn. With ``freeze_policy_encoder`` and
                ``cache_prior_features`` no conv runs in the learner at all
                (the replay holds f_prior of s and s'). Not the reference's
                (its critics train their own convs) and a different learner:
                the value can only use what the prior's features encode. A
                speed option measured by ``python -m
                benchmarks.bench_image_learner`` (rows ``+prior_critic``).
                Default False.
            critic_state_dim: D, or None (default): asymmetric critic. The
                twin critics and their targets read the env's low-dimensional
                state instead of the observation, [s_low (D,), z] -> MLP, while
                the policy and the prior keep reading the observation (images).
                The env must report ``info["state"]`` ((D,) float32) at reset
                and every step (block stacking and maze with ``state_in_info=True``);
                the replay stores it as the columns ``critic_state`` /
                ``critic_state_next``. The reference SPiRL's critic for its
                image tasks (``SplitObsMLPCritic``, which drops the image part
                of the observation). Image observations with
                ``fused_image_forward`` only; excludes ``critic_prior_encoder``.
            learner_fast_path: True (default): the gradient steps of a
                ``training_step`` go to the learner as ONE batch of K x
                ``train_batch_size_per_learner`` replay samples, and the learner
                runs K exact Algorithm-1 steps on consecutive minibatches (target
                polyak update per step) without RLlib's per-update bookkeeping
                (:class:`~spirl_ray.rl.spirl.learner.SPiRLTorchLearner`). False:
                one ``learner_group.update`` per gradient step (RLlib's reference
                path). Same losses either way (``tests/test_fast_path.py``).
            max_updates_per_learner_call: cap on K per learner call (bounds the
                batch sent at once; default 64).
            learner_torch_threads: torch intra-op threads of a local learner
                (``num_learners=0``), set when it is built. ``None`` (default):
                ``num_cpus_for_main_process`` (1 unless raised), the CPUs Ray/Tune
                reserve for it; ``0``: leave torch's setting alone. One thread
                is the fastest on a 2-core machine that also runs EnvRunners:
                with two, every op waits for a second thread that competes with
                the samplers for a core.
            overlap_sampling: True (default): with remote EnvRunners, each
                ``training_step`` sends the sample requests first, takes the
                gradient steps earned by the previous samples while the runners
                sample, then collects the new samples (a learner and a runner
                then keep both cores busy instead of waiting for each other).
                The updates : high-level steps ratio stays ``updates_per_step``;
                the sampling policy lags one ``training_step`` further behind
                (it holds the weights from before the latest K updates).
                False: sample, then update (strictly alternating).
            timeout_as_terminal: store the last transition of an episode cut by
                the env's time limit (``truncated``) as terminal, so the critic
                target does not bootstrap across it: Q estimates the return
                until the episode's end, as the reference implementation's
                sampler does ("force done to be True for timeout"). Default
                True. False: bootstrap from the last state (the
                infinite-horizon reading of a time limit; with a state that
                holds no time, the values of episodes' last states are then
                anchored by no transition of their own).
            warmup_sample_chunk: before learning starts (no weights change),
                each EnvRunner request samples up to this many high-level steps
                per env instead of one rollout fragment (default 32; 1 = one
                fragment per request). Same transitions, fewer round trips.

        Returns:
            This config.
        """
        if "num_steps_sampled_before_learning_starts" in kwargs and warmup_env_steps is NotProvided:
            warmup_env_steps = None
        super().training(**kwargs)
        for name, value in dict(
            skill_model_path=skill_model_path,
            target_divergence=target_divergence,
            kl_estimator=kl_estimator,
            kl_samples=kl_samples,
            kl_reduction=kl_reduction,
            use_skill_prior=use_skill_prior,
            init_policy_from_prior=init_policy_from_prior,
            warmup_env_steps=warmup_env_steps,
            skill_horizon=skill_horizon,
            updates_per_step=updates_per_step,
            critic_hidden=critic_hidden,
            critic_layers=critic_layers,
            critic_layer_norm=critic_layer_norm,
            alpha_min=alpha_min,
            prior_sampling_schedule=prior_sampling_schedule,
            squash_scale=squash_scale,
            timeout_as_terminal=timeout_as_terminal,
            shared_image_encoder=shared_image_encoder,
            freeze_policy_encoder=freeze_policy_encoder,
            cache_prior_features=cache_prior_features,
            critic_prior_encoder=critic_prior_encoder,
            critic_state_dim=critic_state_dim,
            learner_fast_path=learner_fast_path,
            max_updates_per_learner_call=max_updates_per_learner_call,
            learner_torch_threads=learner_torch_threads,
            overlap_sampling=overlap_sampling,
            warmup_sample_chunk=warmup_sample_chunk,
        ).items():
            if value is not NotProvided:
                setattr(self, name, str(value) if name == "skill_model_path" and value is not None else value)
        return self

    # ---- validation & derived values ------------------------------------------------------
    @override(SACConfig)
    def evaluation(self, *, evaluation_every_env_steps: Optional[int] = NotProvided, **kwargs) -> "SPiRLConfig":
        """RLlib's ``evaluation()`` plus an env-step schedule for deterministic evaluation.

        Args:
            evaluation_every_env_steps: evaluate whenever the training env-step counter
                (``env_runners/env_steps_lifetime``, low-level env steps) has
                crossed the next multiple of this number, and once after the first
                training iteration (the prior-initialised policy). Each evaluation
                runs ``evaluation_duration`` episodes (default 10) with the
                deterministic policy: the mean skill, squashed like a training
                sample (z = 2·tanh(μ/s)). ``None`` turns the schedule off; RLlib's
                own ``evaluation_interval`` (training iterations) then applies.
                Setting it sets ``evaluation_interval=1`` (the schedule decides per
                iteration), ``explore=False`` and the metrics window to the
                episode count of one evaluation, unless given in ``kwargs``.
            **kwargs: passed to ``AlgorithmConfig.evaluation`` (e.g.
                ``evaluation_num_env_runners``: 0 evaluates on a local EnvRunner
                in the trial's process, no extra CPU reserved).

        Results land under ``evaluation/env_runners/...`` of the iterations that
        evaluated (``num_subtasks_completed_mean``, ``success_mean``,
        ``episode_return_mean``, ...), next to the training metrics.
        """
        if evaluation_every_env_steps is not NotProvided:
            self.evaluation_every_env_steps = evaluation_every_env_steps
            if evaluation_every_env_steps is not None:
                kwargs.setdefault("evaluation_interval", 1)
                kwargs.setdefault("evaluation_duration_unit", "episodes")
                kwargs.setdefault("evaluation_duration", 10)
                eval_cfg = dict(kwargs.get("evaluation_config") or {})
                eval_cfg.setdefault("explore", False)
                eval_cfg.setdefault("metrics_num_episodes_for_smoothing", int(kwargs["evaluation_duration"]))
                kwargs["evaluation_config"] = eval_cfg
        return super().evaluation(**kwargs)

    @override(SACConfig)
    def validate(self) -> None:
        super().validate()
        errors = []
        if not (isinstance(self.target_divergence, (int, float)) and self.target_divergence > 0):
            errors.append(f"target_divergence (δ) must be a number > 0, got {self.target_divergence!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            errors.append(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        if self.kl_reduction not in ("mean", "sum"):
            errors.append(f"kl_reduction must be 'mean' or 'sum', got {self.kl_reduction!r}")
        if not (isinstance(self.kl_samples, int) and self.kl_samples >= 1):
            errors.append(f"kl_samples must be an int >= 1, got {self.kl_samples!r}")
        if not (isinstance(self.updates_per_step, (int, float)) and self.updates_per_step > 0):
            errors.append(f"updates_per_step must be > 0, got {self.updates_per_step!r}")
        if self.warmup_env_steps is not None and not (isinstance(self.warmup_env_steps, int) and self.warmup_env_steps >= 0):
            errors.append(f"warmup_env_steps must be an int >= 0 or None, got {self.warmup_env_steps!r}")
        if self.skill_horizon is not None and not (isinstance(self.skill_horizon, int) and self.skill_horizon >= 1):
            errors.append(f"skill_horizon must be an int >= 1 or None, got {self.skill_horizon!r}")
        for name in ("critic_hidden", "critic_layers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                errors.append(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.squash_scale is not None and not (
            isinstance(self.squash_scale, (int, float)) and self.squash_scale > 0
        ):
            errors.append(f"squash_scale must be None or a number > 0, got {self.squash_scale!r}")
        if self.alpha_min is not None and not (
            isinstance(self.alpha_min, (int, float)) and not isinstance(self.alpha_min, bool) and self.alpha_min > 0
        ):
            errors.append(f"alpha_min must be None or a number > 0, got {self.alpha_min!r}")
        for name in ("shared_image_encoder", "freeze_policy_encoder", "cache_prior_features", "critic_layer_norm",
                     "critic_prior_encoder"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not (isinstance(self.warmup_sample_chunk, int) and self.warmup_sample_chunk >= 1):
            errors.append(f"warmup_sample_chunk must be an int >= 1, got {self.warmup_sample_chunk!r}")
        if not (isinstance(self.max_updates_per_learner_call, int) and self.max_updates_per_learner_call >= 1):
            errors.append(f"max_updates_per_learner_call must be an int >= 1, got {self.max_updates_per_learner_call!r}")
        if self.learner_torch_threads is not None and not (
            isinstance(self.learner_torch_threads, int) and self.learner_torch_threads >= 0
        ):
            errors.append(f"learner_torch_threads must be None or an int >= 0, got {self.learner_torch_threads!r}")
        sched = self.prior_sampling_schedule
        if sched is not None:
            if not (isinstance(sched, (tuple, list)) and len(sched) == 2 and all(isinstance(v, int) and v >= 0 for v in sched)):
                errors.append(f"prior_sampling_schedule must be None or (hold_env_steps, anneal_env_steps) ints >= 0, got {sched!r}")
            elif not self.skill_model_path:
                errors.append("prior_sampling_schedule samples skills from the prior: set skill_model_path")
        every = self.evaluation_every_env_steps
        if every is not None and not (isinstance(every, int) and every >= 1):
            errors.append(f"evaluation_every_env_steps must be None or an int >= 1, got {every!r}")
        if self.n_step != 1:
            errors.append(f"SPiRL's transition replay supports n_step=1 only, got {self.n_step!r}")
        if self.training_intensity is not None:
            errors.append("training_intensity is not used by SPiRL: set updates_per_step instead")
        needs_model = self.use_skill_prior or self.init_policy_from_prior
        if needs_model and not self.skill_model_path:
            errors.append(
                "skill_model_path is required when use_skill_prior or init_policy_from_prior is True "
                "(set both False for SAC from scratch in skill space)"
            )
        elif self.skill_model_path and not Path(self.skill_model_path).is_file():
            errors.append(f"skill_model_path {self.skill_model_path!r} does not exist")
        if self.freeze_policy_encoder is True and not self.init_policy_from_prior:
            errors.append("freeze_policy_encoder=True freezes the conv encoder copied from the prior: it needs "
                          "init_policy_from_prior=True (else the policy would read a frozen random encoder)")
        if self.critic_prior_encoder is True and not self.use_skill_prior:
            errors.append("critic_prior_encoder=True makes the critics read the skill prior's conv: it needs "
                          "use_skill_prior=True")
        if self.critic_state_dim is not None:
            if not (isinstance(self.critic_state_dim, int) and not isinstance(self.critic_state_dim, bool)
                    and self.critic_state_dim >= 1):
                errors.append(f"critic_state_dim must be None or an int >= 1, got {self.critic_state_dim!r}")
            if self.critic_prior_encoder is True:
                errors.append("critic_state_dim (critics on the env state) and critic_prior_encoder=True (critics on "
                              "the prior's conv features) both choose the critics' input: set one")
        if self.cache_prior_features is True and not self.use_skill_prior:
            errors.append("cache_prior_features=True caches the skill prior's conv features: it needs "
                          "use_skill_prior=True")
        if errors:
            raise ValueError("invalid SPiRLConfig:\n  - " + "\n  - ".join(errors))

        self._skill_model_meta = _read_skill_model_meta(self.skill_model_path) if self.skill_model_path else None
        if self.warmup_env_steps is not None:
            self.num_steps_sampled_before_learning_starts = math.ceil(self.warmup_env_steps / self.horizon)

    @property
    def horizon(self) -> int:
        """H used to convert env steps into high-level steps: ``skill_horizon`` > skill model's > 10."""
        if self.skill_horizon is not None:
            return self.skill_horizon
        if self._skill_model_meta is not None:
            return self._skill_model_meta["horizon"]
        return 10

    # ---- wiring ---------------------------------------------------------------------------
    @override(SACConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from spirl_ray.rl.spirl.rl_module import SPiRLTorchRLModule

        return RLModuleSpec(module_class=SPiRLTorchRLModule)

    @override(SACConfig)
    def get_default_learner_class(self) -> Union[Type[Learner], str]:
        from spirl_ray.rl.spirl.learner import SPiRLTorchLearner

        return SPiRLTorchLearner

    @property
    @override(SACConfig)
    def _model_config_auto_includes(self) -> Dict[str, Any]:
        inc = super()._model_config_auto_includes | {
            "skill_model_path": self.skill_model_path,
            "use_skill_prior": self.use_skill_prior,
            "init_policy_from_prior": self.init_policy_from_prior,
            "critic_hidden": self.critic_hidden,
            "critic_layers": self.critic_layers,
            "critic_layer_norm": self.critic_layer_norm,
            "prior_sampling": self.prior_sampling_schedule is not None,
            "squash_scale": None if self.squash_scale is None else float(self.squash_scale),
            "prior_in_action_space": False,
            "shared_image_encoder": self.shared_image_encoder,
            "freeze_policy_encoder": self.freeze_policy_encoder,
            "critic_prior_encoder": self.critic_prior_encoder,
            "critic_state_dim": self.critic_state_dim,
        }
        meta = self._skill_model_meta
        if meta is None and self.skill_model_path and Path(self.skill_model_path).is_file():
            meta = _read_skill_model_meta(self.skill_model_path)  # config used before validate()
        if meta is not None:
            inc |= {"policy_hidden": meta["prior_hidden"], "policy_layers": meta["prior_layers"], "policy_batch_norm": True,
                    "prior_in_action_space": meta["decoder"] != "flat"}
        return inc


def _read_skill_model_meta(path: str) -> Dict[str, Any]:
    """Architecture facts of a skill-model file the policy must mirror (reads the file once)."""
    from spirl_ray.skills.checkpoint import load_skill_model

    c = load_skill_model(path).config
    return {
        "obs_dim": c.obs_dim,
        "latent_dim": c.latent_dim,
        "horizon": c.horizon,
        "prior_hidden": c.prior_hidden,
        "prior_layers": c.prior_layers,
        "decoder": c.decoder,
    }
