"""The SPiRL pipeline: data → skill prior → prior rollouts → RL under Tune.

Each stage is skipped when its output exists (dataset file; prior in the
content-hash cache; rollout report for that prior; Tune experiment, resumed
with ``resume=True``). A config with ``variants`` (a sweep: methods,
H/|Z| or data-quality ablations) runs the offline stages once per distinct
dataset / model (the cache dedups them) and ONE Tune experiment with a trial
per (variant, seed). Everything is written below ``<storage_path>/<name>``::

    <storage_path>/datasets/*.hdf5 (+ .summary.json)  collected offline data (when not given; shared)
    prior_rollouts.json                   prior vs N(0, I) skills, no RL (one arm): the env family's
                                          metrics (subtasks, success rate, stacked blocks) and return
    prior_rollouts/<variant>.json         the same per sweep arm with a skill prior
    tune/spirl/                           Tune experiment: one trial per (variant, seed)
    config.resolved.yaml                  the validated config of this run
    <storage_path>/prior_cache/<hash>/    skill_model.pt, metrics.json, tb/
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spirl_ray.experiments.config import ConfigError, ExperimentConfig
from spirl_ray.experiments.preflight import TUNE_CONFIG_SNAPSHOT, TUNE_EXPERIMENT, tune_experiment_dir
from spirl_ray.utils import atomic_path

log = logging.getLogger(__name__)

#: Tune result key holding the low-level env steps sampled so far (the paper's x axis).
ENV_STEPS_METRIC = "env_runners/env_steps_lifetime"


def say(msg: str) -> None:
    """Stage banners go to stdout, so a user sees where the run is."""
    print(f"[spirl-ray] {msg}", flush=True)


def write_resolved_config(cfg: ExperimentConfig, path: Path | None = None) -> Path:
    """Write the validated config (defaults filled in) as YAML to ``path`` (default ``<root>/config.resolved.yaml``).

    Atomic (temp file, then rename). The RL stage also writes one into the Tune
    experiment folder, the reference of ``--resume``
    (:func:`~spirl_ray.experiments.preflight.check_resume`).
    """
    path = cfg.root / "config.resolved.yaml" if path is None else Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


# ---- stage 1: data ------------------------------------------------------------------------
def data_stage(cfg: ExperimentConfig, show_progress: bool = True) -> Path:
    """Return the dataset path, collecting it with the env family's collector when it does not exist.

    The family (:mod:`spirl_ray.envs.families`) collects: kitchen's scripted
    primitives, maze's BFS + waypoint planner (appendix C), block stacking's
    noisy stacking script (appendix C/G), or for ``env.name: gymnasium`` the
    user's ``data.collect.policy``; all write the D4RL layout (``images`` too
    for image states) and a ``.summary.json``.

    Raises:
        FileNotFoundError: ``data.path`` is set but does not exist.
        ValueError: the family has no collector and ``data.path`` is unset.
    """
    path = cfg.dataset_path
    if path.exists():
        say(f"data: using {path}")
        return path
    if cfg.data.path:
        # An explicit path that does not exist is a user error, not a reason to collect.
        raise FileNotFoundError(f"data.path {cfg.data.path!r} does not exist (remove the key to collect scripted data)")
    say(f"data: {cfg.env.collection_banner(cfg.data.collect)} -> {path}")
    say(f"data: {cfg.env.collect(cfg.data.collect, path, show_progress)}")
    return path


# ---- stage 2: skill prior -----------------------------------------------------------------
def prior_data_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """How the dataset is read for the prior: part of the prior's cache key (:func:`~spirl_ray.skills.train.prior_cache_key`).

    ``format``, the env family's :meth:`~spirl_ray.envs.families.base.EnvFamily.data_settings`
    (``state_layout``: kitchen's, else None), ``val_fraction``, ``split_seed``, and
    ``obs_key: "images"`` for image states only (so vector-state cache keys stay what they were).
    """
    data_settings = {
        "format": cfg.data.format,
        **cfg.env.data_settings(),
        "val_fraction": cfg.data.val_fraction,
        "split_seed": cfg.data.split_seed,
    }
    if cfg.env.image_states:
        data_settings["obs_key"] = "images"
    return data_settings


def offline_model_config(cfg: ExperimentConfig, obs_dim: int, act_dim: int,
                         image_shape: tuple[int, int, int] | None = None, flat: bool = False):
    """The offline model's ``SkillModelConfig`` for a dataset of these dims (part of the prior's cache key).

    ``obs_dim``: the flat state dim (images: C·H·W, with ``image_shape`` (C, H, W));
    ``flat=True``: the single-step action model p(a|s) (``decoder='flat'``, H = 1, |Z| = ``act_dim``).

    Raises:
        pydantic.ValidationError: ``skill_model`` does not fit these dims.
    """
    model_cfg = cfg.skill_model_config(obs_dim, act_dim, image_shape=image_shape)
    if flat:
        model_cfg = model_cfg.model_copy(
            update={"decoder": "flat", "horizon": 1, "latent_dim": act_dim, "decoder_state_conditioned": False}
        )
    return model_cfg


def prior_stage(cfg: ExperimentConfig, dataset_path: Path, show_progress: bool = True, flat: bool = False):
    """Train (or fetch from the cache) the skill model + prior; returns a ``PriorTrainingResult``.

    ``flat=True`` trains the single-step action model p(a|s) of the Flat Prior
    and BC + SAC baselines instead (``decoder='flat'``, H = 1, Z = A; the
    skill model's prior width/depth and ``prior_training`` apply).
    """
    from spirl_ray.data.readers import describe_reader, read_dataset
    from spirl_ray.data.sequence_dataset import SequenceDataset
    from spirl_ray.skills.train import cached_skill_prior

    images = cfg.env.image_states
    data_settings = prior_data_settings(cfg)
    say(f"data: {dataset_path}: {describe_reader(dataset_path, cfg.data.format)}")
    episodes = read_dataset(dataset_path, fmt=cfg.data.format, read_images=images, **cfg.env.reader_kwargs())
    act_dim = episodes[0].actions.shape[1]
    if images:
        image_shape = tuple(int(d) for d in episodes[0].images.shape[1:])
        model_cfg = offline_model_config(cfg, int(np.prod(image_shape)), act_dim, image_shape, flat)
    else:
        model_cfg = offline_model_config(cfg, episodes[0].observations.shape[1], act_dim, None, flat)
    horizon = model_cfg.horizon

    def factory():
        return SequenceDataset(episodes, horizon, cfg.data.val_fraction, cfg.data.split_seed, source=str(dataset_path),
                               obs_key="images" if images else "observations")

    what = ("flat action prior p(a|s)" if flat else
            f"{model_cfg.decoder} skill model, H={model_cfg.horizon}, |Z|={model_cfg.latent_dim}")
    if images:
        what += f", image states {model_cfg.image_shape} through a conv encoder {model_cfg.conv_channels}"
    say(f"prior: {what}, {cfg.prior_training.num_steps} steps")
    result = cached_skill_prior(
        dataset_path, None, data_settings, model_cfg, cfg.prior_training, cfg.prior_cache_dir,
        show_progress=show_progress, dataset_factory=factory,
    )
    state = "cached" if result.cached else "trained"
    say(f"prior: {state} {result.path} (val mse {result.metrics.get('val_mse', float('nan')):.4g}, "
        f"val prior KL {result.metrics.get('val_prior_loss', float('nan')):.3g}); "
        f"TensorBoard: tensorboard --logdir {result.path.parent / 'tb'}")
    return result


# ---- stage 3: prior rollouts --------------------------------------------------------------
def prior_rollout_stage(cfg: ExperimentConfig, prior_path: Path, out: Path | None = None) -> dict[str, Any] | None:
    """Skills from the prior alone vs N(0, I), executed in the env; cached per prior file.

    Written to ``out`` (default ``<root>/prior_rollouts.json``); one line per
    sampler from the env family's
    :meth:`~spirl_ray.envs.families.base.EnvFamily.prior_rollout_summary`
    (kitchen: subtasks per episode; maze: success rate and the fraction of
    free cells visited; block stacking: stacked blocks; gymnasium: success
    rate when reported, return).
    """
    if cfg.prior_rollouts.episodes == 0:
        return None
    import ray

    from spirl_ray.experiments.prior_rollouts import SAMPLERS, prior_rollouts
    from spirl_ray.skills.checkpoint import load_skill_model
    from spirl_ray.utils import file_sha256

    out = out or cfg.root / "prior_rollouts.json"
    key = file_sha256(prior_path)
    if out.exists():
        old = json.loads(out.read_text())
        same_env = old.get("env_kwargs") == json.loads(json.dumps(cfg.env.env_kwargs()))
        squash = 2.0 if cfg.rl.squash_scale is None else float(cfg.rl.squash_scale)
        if (old.get("prior_sha256") == key and old.get("episodes") == cfg.prior_rollouts.episodes and same_env
                and old.get("squash_scale") == squash and all(k in old for k in SAMPLERS)):
            say(f"prior rollouts: cached {out}")
            return old
    model = load_skill_model(prior_path)
    squash = 2.0 if cfg.rl.squash_scale is None else float(cfg.rl.squash_scale)  # the RL policy's s for a skill prior
    report: dict[str, Any] = {"prior_sha256": key, "episodes": cfg.prior_rollouts.episodes,
                              "scoring": getattr(cfg.env, "scoring", None), "squash_scale": squash}
    report["env_kwargs"] = json.loads(json.dumps(cfg.env.env_kwargs()))
    args = [(model, cfg.env.name, cfg.env.env_kwargs(), s, cfg.prior_rollouts.episodes, cfg.prior_rollouts.seed, 2.0, squash)
            for s in SAMPLERS]
    if ray.is_initialized():  # the samplers side by side as Ray tasks (same numbers as in sequence)
        remote = ray.remote(num_cpus=1)(prior_rollouts)
        runs = ray.get([remote.remote(*a) for a in args])
    else:
        runs = [prior_rollouts(*a) for a in args]
    for sampler, r in zip(SAMPLERS, runs):
        report[sampler] = r
        say(f"prior rollouts: {sampler:10s} {cfg.env.prior_rollout_summary(r)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


# ---- stage 4: RL under Tune ---------------------------------------------------------------
def env_state_dim(env_name: str, env_kwargs: dict[str, Any]) -> int:
    """D of the low-level env's ``info["state"]`` at reset (the asymmetric critic's input, (D,) float32).

    Builds the env once in this process (block stacking: well under a second).

    Raises:
        ValueError: the env's reset info has no ``"state"`` vector.
    """
    from spirl_ray.rl.envs import make_low_level_env

    env = make_low_level_env(env_name, env_kwargs)
    try:
        _, info = env.reset(seed=0)
    finally:
        env.close()
    state = info.get("state") if isinstance(info, dict) else None
    if state is None or np.ndim(state) != 1:
        raise ValueError(f"rl.asymmetric_critic: env {env_name!r} reported no 1-d info['state'] at reset "
                         f"(got {None if state is None else np.shape(state)})")
    return int(np.shape(state)[0])


def build_algo_config(cfg: ExperimentConfig, prior_path: Path | None, seed: int | Any = 0):
    """The ``SPiRLConfig`` of one trial of ``cfg.rl.method`` (``seed`` may be a Tune search space).

    ``prior_path`` is the method's offline model (skill model, flat action
    model, or None for SAC); see :mod:`spirl_ray.experiments.methods`.

    Raises:
        ValueError: the method needs an offline model and ``prior_path`` is None.
    """
    from spirl_ray.experiments.methods import get_method
    from spirl_ray.rl.callbacks import SPiRLMetricsCallback
    from spirl_ray.rl.envs import RL_ENV_NAME, register_envs
    from spirl_ray.rl.spirl import SPiRLConfig

    register_envs()
    method = get_method(cfg.rl.method)
    if method.offline_model is not None and prior_path is None:
        raise ValueError(f"method {method.name!r} needs a {method.offline_model} model file (prior_path)")
    model_path = str(prior_path) if method.offline_model is not None else None
    horizon = int(cfg.skill_model.get("horizon", 10)) if method.skill_space else 1
    rl = cfg.rl
    env_kwargs = cfg.env.env_kwargs()
    critic_state_dim = None
    if rl.asymmetric_critic:
        env_kwargs = {**env_kwargs, "state_in_info": True}
        critic_state_dim = env_state_dim(cfg.env.name, env_kwargs)
    return (
        SPiRLConfig()
        .environment(
            RL_ENV_NAME,
            env_config={
                "env": cfg.env.name,
                "env_kwargs": env_kwargs,
                "skill_model_path": model_path if method.skill_space else None,
            },
        )
        .env_runners(
            num_env_runners=rl.num_env_runners,
            num_envs_per_env_runner=rl.num_envs_per_env_runner,
            num_cpus_per_env_runner=rl.num_cpus_per_env_runner,
        )
        .learners(num_learners=rl.num_learners, num_gpus_per_learner=rl.num_gpus_per_learner)
        .training(
            skill_model_path=model_path,
            skill_horizon=horizon,
            use_skill_prior=method.use_skill_prior,
            init_policy_from_prior=method.init_policy_from_prior,
            squash_scale=rl.squash_scale,
            timeout_as_terminal=rl.timeout_as_terminal,
            prior_sampling_schedule=tuple(rl.prior_sampling_env_steps) if method.prior_sampling else None,
            target_divergence=rl.target_divergence,
            kl_estimator=rl.kl_estimator,
            kl_samples=rl.kl_samples,
            kl_reduction=rl.kl_reduction,
            initial_alpha=rl.initial_alpha,
            alpha_min=rl.alpha_min,
            warmup_env_steps=(rl.warmup_env_steps if rl.warmup_high_level_steps is None
                              else rl.warmup_high_level_steps * horizon),
            updates_per_step=rl.updates_per_step,
            train_batch_size_per_learner=rl.batch_size,
            actor_lr=rl.lr,
            critic_lr=rl.lr,
            alpha_lr=rl.lr if rl.alpha_lr is None else rl.alpha_lr,
            gamma=rl.gamma,
            tau=rl.tau,
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": rl.replay_capacity},
            critic_hidden=rl.critic_hidden,
            critic_layers=rl.critic_layers,
            critic_layer_norm=rl.critic_layer_norm,
            shared_image_encoder=rl.shared_image_encoder,
            freeze_policy_encoder=rl.freeze_policy_encoder,
            cache_prior_features=rl.cache_prior_features,
            critic_prior_encoder=rl.critic_prior_encoder,
            critic_state_dim=critic_state_dim,
        )
        .evaluation(
            evaluation_every_env_steps=cfg.evaluation.every_env_steps or None,
            evaluation_duration=cfg.evaluation.episodes,
            evaluation_num_env_runners=cfg.evaluation.num_env_runners,
        )
        .reporting(
            min_sample_timesteps_per_iteration=rl.min_sample_timesteps_per_iteration,
            min_time_s_per_iteration=rl.min_time_s_per_iteration,
            metrics_num_episodes_for_smoothing=rl.metrics_window_episodes,
        )
        .fault_tolerance(
            restart_failed_env_runners=True, env_runner_health_probe_timeout_s=rl.env_runner_probe_timeout_s
        )
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=seed)
    )


def sweep_param_space(arms: list[tuple[str, ExperimentConfig, Path | None]]) -> dict[str, Any]:
    """Tune param space of a sweep: the first arm's config dict + a grid over arm names and seeds.

    Each arm's differences to the first are its top-level ``AlgorithmConfig``
    keys that differ (``spirl_variant_overrides``), applied by
    :class:`~spirl_ray.experiments.trainable.SPiRLTrial`.

    Raises:
        ValueError: the arms ask for different seeds lists or Tune stop budgets.
    """
    from ray import tune

    from spirl_ray.experiments.trainable import OVERRIDES_KEY, VARIANT_KEY

    seeds = {tuple(c.rl.seeds) for _, c, _ in arms}
    if len(seeds) > 1:
        raise ValueError(f"all sweep arms must use the same rl.seeds, got {sorted(seeds)}")
    dicts = {name: build_algo_config(c, path).to_dict() for name, c, path in arms}
    base = dicts[arms[0][0]]
    overrides = {name: {k: v for k, v in d.items() if k not in base or base[k] != v} for name, d in dicts.items()}
    space = dict(base)
    space["seed"] = tune.grid_search(list(arms[0][1].rl.seeds))
    space[VARIANT_KEY] = tune.grid_search([name for name, _, _ in arms])
    space[OVERRIDES_KEY] = overrides
    return space


def tracker_callbacks(cfg: ExperimentConfig) -> list:
    """Tune logger callbacks of the configured experiment trackers (none by default; TensorBoard always).

    Raises:
        RuntimeError: a tracker is configured but its package is not installed.
    """
    t, cbs = cfg.tracking, []
    if t.mlflow_tracking_uri:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise RuntimeError("tracking.mlflow_tracking_uri is set but mlflow is not installed (pip install mlflow)") from None
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        cbs.append(MLflowLoggerCallback(
            tracking_uri=t.mlflow_tracking_uri, experiment_name=t.mlflow_experiment or cfg.name, save_artifact=False
        ))
    if t.wandb_project:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise RuntimeError("tracking.wandb_project is set but wandb is not installed (pip install wandb)") from None
        from ray.air.integrations.wandb import WandbLoggerCallback

        cbs.append(WandbLoggerCallback(project=t.wandb_project, group=t.wandb_group or cfg.name))
    return cbs


def check_trials_fit(param_space: dict[str, Any], arm_names: list[str]) -> dict[str, float]:
    """Each arm's trial resources (RLlib's own request) vs. what the running Ray cluster has.

    A trial asks for 1 CPU (its Algorithm + local learner) plus its EnvRunners'
    and remote Learners' CPUs/GPUs; one that asks for more than the cluster has
    would stay PENDING forever, so it is an error here (an autoscaling cluster
    that can add the node is told apart by ``ray.cluster_resources()`` already
    listing it only after scaling: set ``rl.num_cpus_per_env_runner`` or add
    nodes). Returns the largest request per resource.

    Raises:
        ConfigError: an arm's trial needs more of a resource than the cluster has (names the arm and fields).
    """
    import ray

    from spirl_ray.experiments.trainable import SPiRLTrial, VARIANT_KEY

    have = ray.cluster_resources() if ray.is_initialized() else {}
    biggest: dict[str, float] = {}
    for name in arm_names:
        need = SPiRLTrial.default_resource_request({**param_space, VARIANT_KEY: name, "seed": 0}).required_resources
        for res, amount in need.items():
            biggest[res] = max(biggest.get(res, 0.0), amount)
            if have and amount > have.get(res, 0.0) + 1e-9 and not os.environ.get("SPIRL_RAY_ALLOW_PENDING"):
                raise ConfigError(
                    f"sweep arm {name!r}: one trial needs {amount:g} {res} but the Ray cluster has "
                    f"{have.get(res, 0.0):g}; it would stay PENDING forever. Lower rl.num_env_runners / "
                    "rl.num_cpus_per_env_runner / rl.num_gpus_per_learner, or add nodes "
                    "(SPIRL_RAY_ALLOW_PENDING=1 waits for an autoscaler instead)"
                )
    return biggest


def rl_stage(cfg: ExperimentConfig, arms: list[tuple[str, ExperimentConfig, Path | None]] | Path, resume: bool = False):
    """Run (or resume) the Tune experiment: one trial per (arm, seed). Returns Tune's ``ResultGrid``.

    ``arms``: ``[(variant name, its config, its offline model path)]``; a bare
    path is the single-arm form ``[(cfg.rl.method, cfg, path)]``.
    """
    from ray import tune

    from spirl_ray.experiments.trainable import SPiRLTrial

    if isinstance(arms, (str, Path)):
        arms = [(cfg.rl.method, cfg, Path(arms))]
    budgets = {c.rl.env_steps for _, c, _ in arms}
    if len(budgets) > 1:
        raise ValueError(f"all sweep arms must share rl.env_steps (one Tune stop criterion), got {sorted(budgets)}")
    storage = cfg.root / "tune"
    exp_name = TUNE_EXPERIMENT
    exp_dir = tune_experiment_dir(cfg)
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        from spirl_ray.rl.envs import register_envs

        register_envs()  # restored trials build their envs by this registered name
        say(f"rl: resuming unfinished trials of {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=SPiRLTrial, resume_unfinished=True, resume_errored=True)
    else:
        space = sweep_param_space(arms)
        need = check_trials_fit(space, [name for name, _, _ in arms])
        say(f"rl: {len(arms)} arm(s) x {len(cfg.rl.seeds)} seed(s); a trial asks for "
            + ", ".join(f"{v:g} {k}" for k, v in sorted(need.items())))
        tuner = tune.Tuner(
            SPiRLTrial,
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.rl.max_concurrent_trials, trial_name_creator=_trial_name(cfg)),
            run_config=tune.RunConfig(
                name=exp_name,
                storage_path=str(storage),
                stop={ENV_STEPS_METRIC: cfg.rl.env_steps},
                failure_config=tune.FailureConfig(max_failures=cfg.rl.max_failures),
                callbacks=tracker_callbacks(cfg) or None,
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=cfg.rl.checkpoint_every, checkpoint_at_end=True, num_to_keep=2
                ),
                verbose=1,
            ),
        )
        # what these trials run with: `--resume` compares the config against this file
        write_resolved_config(cfg, exp_dir / TUNE_CONFIG_SNAPSHOT)
    say(f"rl: Tune experiment in {exp_dir}; TensorBoard: tensorboard --logdir {exp_dir}")
    return tuner.fit()


def _trial_name(cfg: ExperimentConfig):
    from spirl_ray.experiments.trainable import VARIANT_KEY

    def name(trial) -> str:
        seed = trial.config.get("seed", "?")
        return f"{cfg.env.label}_{trial.config.get(VARIANT_KEY, cfg.rl.method)}_seed{seed}_{trial.trial_id}"

    return name


def offline_stages(
    cfg: ExperimentConfig, show_progress: bool = True
) -> tuple[list[tuple[str, ExperimentConfig, Path | None]], dict[str, Any]]:
    """Data, offline model and prior rollouts of every arm; returns ``(arms, prior rollout reports)``."""
    from spirl_ray.experiments.methods import get_method

    arms, reports = [], {}
    variants = cfg.variant_configs()
    for name, vcfg in variants:
        method = get_method(vcfg.rl.method)
        if len(variants) > 1:
            say(f"sweep arm {name!r}: method {method.name}")
        path = None
        if method.offline_model is not None:
            dataset = data_stage(vcfg, show_progress)
            path = prior_stage(vcfg, dataset, show_progress, flat=method.offline_model == "flat").path
            if method.offline_model == "skills":
                out = cfg.root / "prior_rollouts.json" if len(variants) == 1 else cfg.root / "prior_rollouts" / f"{name}.json"
                reports[name] = prior_rollout_stage(vcfg, path, out)
        arms.append((name, vcfg, path))
    return arms, reports


def check_trials_fit_before_offline_stages(cfg: ExperimentConfig, resume: bool = False) -> dict[str, float] | None:
    """:func:`check_trials_fit` before any stage, when the offline models do not exist yet.

    A trial's resources come from its EnvRunner, Learner and evaluation
    settings, not from its method's offline model, so each arm is sized as
    the same config with ``rl.method: sac`` (no model file needed). Skipped
    (None) when ``resume`` restores an existing Tune experiment, whose
    trials keep their resources.

    Raises:
        ConfigError: as :func:`check_trials_fit`.
    """
    from ray import tune

    if resume and tune.Tuner.can_restore(str(tune_experiment_dir(cfg))):
        return None
    # the prior does not exist yet: check each arm as SAC, without the options that need a prior
    no_prior = {"method": "sac", "freeze_policy_encoder": False, "cache_prior_features": False,
                "critic_prior_encoder": False}
    arms = [(name, vcfg.model_copy(update={"rl": vcfg.rl.model_copy(update=no_prior)}), None)
            for name, vcfg in cfg.variant_configs()]
    return check_trials_fit(sweep_param_space(arms), [name for name, _, _ in arms])


def run_pipeline(cfg: ExperimentConfig, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """All four stages; returns ``{"arms", "prior_rollouts", "results"}`` (+ ``dataset``/``prior`` of a single arm).

    Call with Ray initialised. The CLI runs :func:`~spirl_ray.experiments.preflight.preflight`
    (dataset vs env, trackers, ``--resume`` vs the stored config) before it starts Ray;
    here a trial that cannot fit the cluster is refused before the offline stages.

    Raises:
        ConfigError: a trial needs more CPUs/GPUs than the Ray cluster has.
    """
    check_trials_fit_before_offline_stages(cfg, resume)
    cfg.root.mkdir(parents=True, exist_ok=True)
    write_resolved_config(cfg)
    arms, reports = offline_stages(cfg, show_progress)
    results = rl_stage(cfg, arms, resume=resume)
    out: dict[str, Any] = {"arms": arms, "prior_rollouts": reports, "results": results}
    if len(arms) == 1:
        out["prior"] = arms[0][2]
        out["prior_rollouts"] = next(iter(reports.values()), None)
    return out
