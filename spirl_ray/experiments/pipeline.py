"""The SPiRL pipeline: data → skill prior → prior rollouts → RL under Tune.

Each stage is skipped when its output exists (dataset file; prior in the
content-hash cache; rollout report for that prior; Tune experiment, resumed
with ``resume=True``). Everything is written below ``<storage_path>/<name>``::

    data/scripted_*.hdf5 (+ .summary.json) collected offline data (when not given)
    prior_rollouts.json                   prior vs N(0, I) skills, no RL
    tune/                                 Tune experiment: one trial per seed
    config.resolved.yaml                  the validated config of this run
    <storage_path>/prior_cache/<hash>/    skill_model.pt, metrics.json, tb/
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from spirl_ray.experiments.config import ExperimentConfig
from spirl_ray.utils import atomic_path

log = logging.getLogger(__name__)

#: Tune result key holding the low-level env steps sampled so far (the paper's x axis).
ENV_STEPS_METRIC = "env_runners/env_steps_lifetime"


def say(msg: str) -> None:
    """Stage banners go to stdout, so a user sees where the run is."""
    print(f"[spirl-ray] {msg}", flush=True)


def write_resolved_config(cfg: ExperimentConfig) -> Path:
    path = cfg.root / "config.resolved.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


# ---- stage 1: data ------------------------------------------------------------------------
def data_stage(cfg: ExperimentConfig, show_progress: bool = True) -> Path:
    """Return the dataset path, collecting it with the scripted expert when it does not exist."""
    path = cfg.dataset_path
    if path.exists():
        say(f"data: using {path}")
        return path
    if cfg.data.path:
        # An explicit path that does not exist is a user error, not a reason to collect.
        raise FileNotFoundError(f"data.path {cfg.data.path!r} does not exist (remove the key to collect scripted data)")
    from spirl_ray.data.collect_kitchen import collect_kitchen_dataset

    c = cfg.data.collect
    say(f"data: collecting {c.episodes} scripted kitchen episodes -> {path}")
    summary = collect_kitchen_dataset(
        path,
        num_episodes=c.episodes,
        seed=c.seed,
        num_workers=c.num_workers,
        state_layout=cfg.env.state_layout,
        random_action_fraction=c.random_action_fraction,
        show_progress=show_progress,
    )
    rates = {
        name: (f"{v['successes']}/{v['attempts']}" if v.get("attempts") else "not scripted")
        for name, v in summary.get("per_subtask", {}).items()
    }
    say(f"data: collector success per subtask: {rates}; mean episode length "
        f"{summary.get('mean_episode_length', float('nan')):.0f} env steps")
    return path


# ---- stage 2: skill prior -----------------------------------------------------------------
def prior_stage(cfg: ExperimentConfig, dataset_path: Path, show_progress: bool = True):
    """Train (or fetch from the cache) the skill model + prior; returns a ``PriorTrainingResult``."""
    from spirl_ray.data.readers import read_dataset
    from spirl_ray.data.sequence_dataset import SequenceDataset
    from spirl_ray.skills.train import cached_skill_prior

    horizon = int(cfg.skill_model.get("horizon", 10))
    data_settings = {
        "format": cfg.data.format,
        "state_layout": cfg.env.state_layout,
        "val_fraction": cfg.data.val_fraction,
        "split_seed": cfg.data.split_seed,
    }
    episodes = read_dataset(dataset_path, fmt=cfg.data.format, state_layout=cfg.env.state_layout)
    obs_dim, act_dim = episodes[0].observations.shape[1], episodes[0].actions.shape[1]
    model_cfg = cfg.skill_model_config(obs_dim, act_dim)

    def factory():
        return SequenceDataset(episodes, horizon, cfg.data.val_fraction, cfg.data.split_seed, source=str(dataset_path))

    say(f"prior: {model_cfg.decoder} skill model, H={model_cfg.horizon}, |Z|={model_cfg.latent_dim}, "
        f"{cfg.prior_training.num_steps} steps")
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
def prior_rollout_stage(cfg: ExperimentConfig, prior_path: Path) -> dict[str, Any] | None:
    """Skills from the prior alone vs N(0, I), executed in the env; cached per prior file."""
    if cfg.prior_rollouts.episodes == 0:
        return None
    from spirl_ray.experiments.prior_rollouts import prior_rollouts
    from spirl_ray.skills.checkpoint import load_skill_model
    from spirl_ray.utils import file_sha256

    out = cfg.root / "prior_rollouts.json"
    key = file_sha256(prior_path)
    if out.exists():
        old = json.loads(out.read_text())
        if old.get("prior_sha256") == key and old.get("episodes") == cfg.prior_rollouts.episodes:
            say(f"prior rollouts: cached {out}")
            return old
    model = load_skill_model(prior_path)
    report: dict[str, Any] = {"prior_sha256": key, "episodes": cfg.prior_rollouts.episodes, "scoring": cfg.env.scoring}
    for sampler in ("prior", "normal"):
        r = prior_rollouts(model, cfg.env.name, cfg.env.env_kwargs(), sampler, cfg.prior_rollouts.episodes, cfg.prior_rollouts.seed)
        report[sampler] = r
        say(f"prior rollouts: z~{sampler:6s} mean subtasks ({cfg.env.scoring}) {r['mean_subtasks']:.2f}, "
            f"any of 7 {r['mean_any_subtasks']:.2f}, mean return {r['mean_return']:.2f}")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


# ---- stage 4: RL under Tune ---------------------------------------------------------------
def build_algo_config(cfg: ExperimentConfig, prior_path: Path, seed: int | Any = 0):
    """The ``SPiRLConfig`` of one trial (``seed`` may be a Tune search space)."""
    from spirl_ray.rl.callbacks import SPiRLMetricsCallback
    from spirl_ray.rl.envs import RL_ENV_NAME, register_envs
    from spirl_ray.rl.spirl import SPiRLConfig

    register_envs()
    horizon = int(cfg.skill_model.get("horizon", 10))
    rl = cfg.rl
    return (
        SPiRLConfig()
        .environment(
            RL_ENV_NAME,
            env_config={"env": cfg.env.name, "env_kwargs": cfg.env.env_kwargs(), "skill_model_path": str(prior_path)},
        )
        .env_runners(
            num_env_runners=rl.num_env_runners,
            num_envs_per_env_runner=rl.num_envs_per_env_runner,
            num_cpus_per_env_runner=rl.num_cpus_per_env_runner,
        )
        .training(
            skill_model_path=str(prior_path),
            skill_horizon=horizon,
            target_divergence=rl.target_divergence,
            kl_estimator=rl.kl_estimator,
            kl_samples=rl.kl_samples,
            kl_reduction=rl.kl_reduction,
            init_policy_from_prior=rl.init_policy_from_prior,
            warmup_env_steps=rl.warmup_env_steps,
            train_batch_size_per_learner=rl.batch_size,
            actor_lr=rl.lr,
            critic_lr=rl.lr,
            alpha_lr=rl.lr,
            gamma=rl.gamma,
            tau=rl.tau,
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": rl.replay_capacity},
            critic_hidden=rl.critic_hidden,
            critic_layers=rl.critic_layers,
        )
        .reporting(min_sample_timesteps_per_iteration=rl.min_sample_timesteps_per_iteration)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=seed)
    )


def rl_stage(cfg: ExperimentConfig, prior_path: Path, resume: bool = False):
    """Run (or resume) the Tune experiment: one SPiRL trial per seed. Returns Tune's ``ResultGrid``."""
    from ray import tune

    from spirl_ray.rl.spirl import SPiRL

    storage = cfg.root / "tune"
    exp_name = "spirl"
    exp_dir = storage / exp_name
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        say(f"rl: resuming unfinished trials of {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=SPiRL, resume_unfinished=True, resume_errored=True)
    else:
        algo_config = build_algo_config(cfg, prior_path, seed=tune.grid_search(cfg.rl.seeds))
        tuner = tune.Tuner(
            SPiRL,
            param_space=algo_config,
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.rl.max_concurrent_trials, trial_name_creator=_trial_name(cfg)),
            run_config=tune.RunConfig(
                name=exp_name,
                storage_path=str(storage),
                stop={ENV_STEPS_METRIC: cfg.rl.env_steps},
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=cfg.rl.checkpoint_every, checkpoint_at_end=True, num_to_keep=2
                ),
                verbose=1,
            ),
        )
    say(f"rl: Tune experiment in {exp_dir}; TensorBoard: tensorboard --logdir {exp_dir}")
    return tuner.fit()


def _trial_name(cfg: ExperimentConfig):
    def name(trial) -> str:
        seed = trial.config.get("seed", "?")
        return f"{cfg.env.name}_spirl_seed{seed}_{trial.trial_id}"

    return name


def run_pipeline(cfg: ExperimentConfig, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """All four stages; returns ``{"dataset", "prior", "prior_rollouts", "results"}``."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    write_resolved_config(cfg)
    dataset = data_stage(cfg, show_progress)
    prior = prior_stage(cfg, dataset, show_progress)
    rollouts = prior_rollout_stage(cfg, prior.path)
    results = rl_stage(cfg, prior.path, resume=resume)
    return {"dataset": dataset, "prior": prior, "prior_rollouts": rollouts, "results": results}
