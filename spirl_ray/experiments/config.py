"""The experiment config: one validated YAML file says everything a run used.

Sections map onto typed configs of each stage::

    name, storage_path
    env:            which low-level env and how it is scored      (EnvSection)
    data:           dataset to read, or how to collect one        (DataSection)
    skill_model:    SkillModelConfig fields except obs/action dims (spirl_ray.skills.models)
    prior_training: PriorTrainingConfig                           (spirl_ray.skills.train)
    rl:             SPiRL / SAC settings and the Tune experiment  (RLSection)
    prior_rollouts: evaluation of the prior alone                 (PriorRolloutSection)
    variants:       sweep arms: name + dotted overrides          (VariantSection)

Unknown keys are errors that list the valid keys of their section. The
resolved config is written into every run directory (``config.resolved.yaml``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from spirl_ray.envs.families import DEFAULT_FAMILY, FAMILIES
from spirl_ray.experiments.methods import get_method
from spirl_ray.skills.models import SkillModelConfig
from spirl_ray.skills.train import PriorTrainingConfig


class ConfigError(ValueError):
    """The experiment YAML is missing, unparsable or invalid; the message names file and field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _env_family_union():
    """``env:`` is one of the registered families' models, chosen by ``name`` (a pydantic discriminated union)."""
    classes = tuple(FAMILIES.values())
    return Annotated[Union[classes], Field(discriminator="name")]  # noqa: UP007 - a runtime-built union


#: The ``env:`` section: the model of the family ``env.name`` names (:mod:`spirl_ray.envs.families`).
EnvSection = _env_family_union()


class CollectSection(_Section):
    """Data collection when ``data.path`` is not given: the env family's scripted expert
    (kitchen primitives / maze planner / stacking script), or for ``env.name: gymnasium`` the user's ``policy``."""

    episodes: PositiveInt = Field(600, description="episodes to collect")
    seed: int = 0
    num_workers: int | None = Field(None, description="parallel Ray tasks (default: all CPUs)")
    random_action_fraction: float = Field(
        0.0, ge=0, le=1, description="kitchen / block_stacking / gymnasium: fraction of random-action episodes (appendix G)"
    )
    subtask_order: Literal["random", "rpl"] = Field(
        "random", description="kitchen: how an episode's 4 scripted subtasks are ordered. 'random': any order, never "
        "exactly the target order; 'rpl': D4RL kitchen-mixed's structure, the human (Relay Policy Learning) demos' "
        "fixed relative order with never all 4 target subtasks in one episode",
    )
    step_noise_scale: float = Field(
        1.0, ge=0, description="block_stacking: scale of the stacking script's per-step Gaussian action noise (std 0.1 "
        "on dx, dz and 0.05 on the finger opening at 1; 0 = none). The paper's data noise is its pseudo-random "
        "subgoals, which stay; a value other than 1 collects its own file (suffix _stepnoise<scale>)",
    )
    policy: str | None = Field(
        None, description="env.name gymnasium: 'package.module:function' called as function(observation, rng) -> "
        "action for every step (observation as the env returns it, rng a numpy Generator seeded per episode)",
    )

    @model_serializer(mode="wrap")
    def _serialise(self, handler):
        """``policy`` only when set, ``subtask_order`` and ``step_noise_scale`` only when not the default:
        the resolved configs written before these fields existed stay as they were."""
        data = handler(self)
        if data.get("policy") is None:
            data.pop("policy", None)
        if data.get("subtask_order") == "random":
            data.pop("subtask_order", None)
        if data.get("step_noise_scale") == 1.0:
            data.pop("step_noise_scale", None)
        return data


class DataSection(_Section):
    """Offline dataset: an existing D4RL hdf5 / Minari dataset, or one collected by the env family's collector."""

    path: str | None = Field(None, description="dataset file/dir; None -> collected into <storage>/<name>/data/")
    format: Literal["auto", "d4rl", "minari"] = "auto"
    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of episodes held out for validation")
    split_seed: int = 0
    collect: CollectSection = Field(default_factory=CollectSection)


class RLSection(_Section):
    """Downstream RL (Algorithm 1, appendix B.2) and the Tune experiment around it."""

    method: Literal[
        "spirl", "spirl_no_prior_init", "ssp", "prior_init_sac", "sac", "bc_sac", "flat_prior"
    ] = Field("spirl", description="what runs (spirl_ray.experiments.methods): SPiRL or a baseline/ablation")
    env_steps: PositiveInt = Field(1_500_000, description="budget per trial in low-level env steps (paper kitchen: 1.5M)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="one Tune trial per seed")
    target_divergence: PositiveFloat = Field(5.0, description="delta, on the kl_reduction scale (kitchen/blocks 5, maze 1)")
    kl_reduction: Literal["mean", "sum"] = Field("mean", description="KL over latent dims: 'mean' = reference scale of delta")
    kl_estimator: Literal["analytic", "sampled"] = "analytic"
    kl_samples: PositiveInt = 10
    prior_sampling_env_steps: tuple[NonNegativeInt, NonNegativeInt] = Field(
        (500_000, 500_000),
        description="method spirl_no_prior_init: env steps with ω = 1, then env steps annealing ω to 0 (appendix F)",
    )
    initial_alpha: PositiveFloat = Field(1.0, description="α at the start (paper: log α = 0, α = 1)")
    alpha_min: PositiveFloat | None = Field(
        None, description="floor on α, not the paper's (None: none). While the policy equals the prior (KL ≈ 0 ≪ δ) "
        "α falls by ~alpha_lr in log per update, ~1000x before the critic first moves the policy; the KL then "
        "overshoots δ 10x (results/block_stacking/diagnosis). In α's units: the reward scale per high-level step",
    )
    squash_scale: PositiveFloat | None = Field(
        None, description="s in z = 2·tanh(u / s), u the policy's Gaussian sample in the prior's space. None: 2 for "
        "a skill prior (a policy copied from the prior executes the prior's skills), 1 for a flat prior; "
        "1 = the reference code's z = 2·tanh(u)",
    )
    timeout_as_terminal: bool = Field(
        True, description="the transition cut by the env's time limit is terminal for the critic target (the "
        "reference sampler's 'force done for timeout'); false: bootstrap across the time limit",
    )
    warmup_env_steps: NonNegativeInt = Field(5000, description="env steps sampled before the first update")
    warmup_high_level_steps: NonNegativeInt | None = Field(
        None, description="if set, replaces warmup_env_steps: high-level transitions (skills) sampled before the first "
        "update, the reference code's n_warmup_steps (5000 = ~50k env steps at H = 10). Our env-step axis counts "
        "them; the reference's global_step does not",
    )
    updates_per_step: PositiveFloat = Field(
        1.0, description="gradient steps per sampled high-level transition (paper: 1; < 1 only to cut a quick run's cost)"
    )
    batch_size: PositiveInt = 256
    lr: PositiveFloat = Field(3e-4, description="Adam lr for policy, critics and alpha")
    alpha_lr: PositiveFloat | None = Field(
        None, description="Adam lr for log alpha (None: `lr`, the paper's choice). At a short budget a larger one "
        "lets alpha reach its working range before the run ends (log alpha moves about alpha_lr per update)",
    )
    gamma: float = Field(0.99, gt=0, le=1)
    tau: PositiveFloat = 5e-3
    replay_capacity: PositiveInt = Field(1_000_000, description="high-level transitions")
    critic_hidden: PositiveInt = 256
    critic_layers: PositiveInt = 5
    critic_layer_norm: bool = Field(
        False, description="LayerNorm after every hidden layer of the critics (not the reference's): bounds how far a "
        "critic extrapolates above its targets at skills no data reached (kitchen: Q rose above the 4 subtasks an "
        "episode can pay while the returns fell to 0; results/kitchen/diagnosis_timeout_bootstrap, cause 5)",
    )
    shared_image_encoder: bool = Field(
        False, description="image states (env.state 'image'): the twin critics share one conv encoder and the twin "
        "target critics one target encoder (SAC-AE / DrQ), trained by both critic losses; ~1.25x learner updates/s "
        "(benchmarks/bench_image_learner.py). false: each critic its own encoder, as in the reference SPiRL",
    )
    freeze_policy_encoder: bool = Field(
        False, description="image states: the policy's conv encoder (copied from the prior) is not trained, only its "
        "MLP; the policy still starts as the prior and reuses the frozen prior's conv features; ~1.25x learner "
        "updates/s (benchmarks/bench_image_learner.py). false: the whole policy is trained, as in the reference SPiRL",
    )
    cache_prior_features: bool = Field(
        False, description="image states, methods with the skill prior: the replay stores the frozen prior's conv "
        "features of s and s' (computed once per transition) and the learner reads them instead of running the "
        "prior's conv (with freeze_policy_encoder also the policy's) per update; same numbers bit for bit, faster "
        "(benchmarks/bench_image_learner.py), +4 KiB per transition (the paper's conv: 2 x 512 float32)",
    )
    critic_prior_encoder: bool = Field(
        False, description="image states, methods with the skill prior: the critics and target critics read the "
        "frozen prior's conv features and train only their MLPs (not the reference's: a different learner). With "
        "freeze_policy_encoder and cache_prior_features no conv runs in the learner (benchmarks/bench_image_learner.py); "
        "shared_image_encoder then has no effect (no critic conv)",
    )
    asymmetric_critic: bool = Field(
        False, description="image states, envs reporting info['state'] (block_stacking, maze): the critics and target "
        "critics read the env's low-dimensional state [s_low, z] -> MLP instead of the image, while the policy and "
        "the prior keep the images (asymmetric actor-critic; the reference's SplitObsMLPCritic for its image tasks). "
        "The replay stores s_low of s and s' (+4 x D bytes per transition). Excludes critic_prior_encoder; "
        "shared_image_encoder then has no effect (no critic conv)",
    )
    num_env_runners: NonNegativeInt = Field(1, description="RLlib EnvRunner actors (0 = sample in the driver)")
    num_envs_per_env_runner: PositiveInt = 1
    num_cpus_per_env_runner: float = Field(1.0, gt=0)
    num_learners: NonNegativeInt = Field(0, description="Learner actors (0 = learn in the trial's process)")
    num_gpus_per_learner: float = Field(0.0, ge=0, description="GPUs per Learner (0 = CPU; a GPU learner node needs >0)")
    max_concurrent_trials: int | None = None
    max_failures: NonNegativeInt = Field(
        3, description="Tune restarts of a trial whose process/node died, from its last checkpoint"
    )
    env_runner_probe_timeout_s: PositiveFloat = Field(
        5.0, description="seconds to wait per health probe of a lost EnvRunner (RLlib default 30)"
    )
    checkpoint_every: PositiveInt = Field(10, description="checkpoint every N training iterations")
    min_sample_timesteps_per_iteration: PositiveInt = Field(100, description="high-level steps per training iteration")
    min_time_s_per_iteration: float = Field(
        0.0, ge=0, description="seconds per training iteration at least (RLlib's SAC default is 1 s; 0 makes "
        "iteration boundaries depend on steps only, so results rows are reproducible across machine speeds)",
    )
    metrics_window_episodes: PositiveInt = Field(
        20, description="RLlib's per-EnvRunner window of episode metrics (return, subtasks, success). RLlib 2.60 "
        "resets EnvRunner metrics every iteration, so an iteration's value averages only the episodes that ended "
        "in it; smooth curves with `python -m spirl_ray.plot --smooth N`",
    )

    @field_validator("seeds")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is needed")
        return v

    @model_serializer(mode="wrap")
    def _serialise(self, handler):
        """The image-encoder options, asymmetric_critic, critic_layer_norm and alpha_min only when set.

        The resolved configs written before they existed stay as they were.
        """
        data = handler(self)
        for key in ("shared_image_encoder", "freeze_policy_encoder", "cache_prior_features", "critic_layer_norm",
                    "critic_prior_encoder", "asymmetric_critic"):
            if data.get(key) is False:
                data.pop(key, None)
        if data.get("alpha_min", 0) is None:
            data.pop("alpha_min")
        return data


class PriorRolloutSection(_Section):
    """'Prior rollouts': skills sampled from the learned prior alone vs. from N(0, I)."""

    episodes: NonNegativeInt = Field(20, description="episodes per sampler; 0 disables")
    seed: int = 0


class EvaluationSection(_Section):
    """Deterministic evaluation (RLlib ``config.evaluation``) on the training env-step axis."""

    every_env_steps: NonNegativeInt = Field(
        20_000, description="evaluate after the first iteration and whenever the training env-step count crosses a "
        "multiple of this (low-level env steps); 0 turns evaluation off",
    )
    episodes: PositiveInt = Field(10, description="episodes per evaluation, mean skill squashed as in training")
    num_env_runners: NonNegativeInt = Field(
        0, description="evaluation EnvRunner actors; 0 = a local EnvRunner in the trial's process (no extra CPU)",
    )


class TrackingSection(_Section):
    """Optional experiment trackers next to TensorBoard (Tune logger callbacks); unset = off."""

    mlflow_tracking_uri: str | None = Field(None, description="http://host:5000 or file:///path; None = off")
    mlflow_experiment: str | None = Field(None, description="default: the config's name")
    wandb_project: str | None = Field(None, description="None = off; the API key comes from WANDB_API_KEY")
    wandb_group: str | None = Field(None, description="default: the config's name")


class VariantSection(_Section):
    """One arm of a sweep: a name and dotted-key overrides of the rest of the config."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", description="trial-name part and legend key, e.g. 'sac' or 'H3'")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted keys -> values, as with `run --set`")


class ExperimentConfig(_Section):
    """Top-level experiment config (``tune_configs/*.yaml``)."""

    name: str = Field(description="experiment name; output goes to <storage_path>/<name>")
    storage_path: str = Field("runs", description="root of datasets, priors and Tune results (relative to cwd)")
    env: EnvSection = Field(default_factory=FAMILIES[DEFAULT_FAMILY], description="the env family and its fields")
    data: DataSection = Field(default_factory=DataSection)
    skill_model: dict[str, Any] = Field(default_factory=dict, description="SkillModelConfig fields but obs_dim/action_dim")
    prior_training: PriorTrainingConfig = Field(default_factory=PriorTrainingConfig)
    rl: RLSection = Field(default_factory=RLSection)
    prior_rollouts: PriorRolloutSection = Field(default_factory=PriorRolloutSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    variants: list[VariantSection] = Field(
        default_factory=list,
        description="sweep arms (methods, ablations); each is this config with its overrides; empty = one arm",
    )

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, v: list[VariantSection]) -> list[VariantSection]:
        names = [x.name for x in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique; repeated: {dup}")
        for x in v:
            bad = [k for k in x.set if k.split(".")[0] in ("name", "storage_path", "variants")]
            if bad:
                raise ValueError(f"variant {x.name!r}: {bad} cannot be overridden per variant")
        return v

    def variant_configs(self) -> list[tuple[str, "ExperimentConfig"]]:
        """``[(variant name, its full config)]``; without ``variants``: ``[(rl.method, self)]``.

        Raises:
            ConfigError: a variant's overrides make an invalid config (named, with the fields).
        """
        if not self.variants:
            return [(self.rl.method, self)]
        base = self.model_dump(mode="json", exclude={"variants"})
        out = []
        for v in self.variants:
            raw = json.loads(json.dumps(base))
            try:
                _set_dotted(raw, v.set)
                out.append((v.name, ExperimentConfig(**raw)))
            except (ValidationError, ConfigError) as e:
                msg = format_validation_error(e, f"variant {v.name!r}") if isinstance(e, ValidationError) else str(e)
                raise ConfigError(msg) from None
        return out

    @field_validator("skill_model")
    @classmethod
    def _check_skill_model(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = {"obs_dim", "action_dim", "image_shape"} & set(v)
        if bad:
            raise ValueError(f"{sorted(bad)} are derived from the env and dataset; remove them")
        SkillModelConfig(obs_dim=1, action_dim=1, **v)  # validates names and values
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _default_family(cls, v: Any) -> Any:
        """An ``env:`` mapping without ``name`` is the default family (kitchen)."""
        if isinstance(v, dict) and "name" not in v:
            return {"name": DEFAULT_FAMILY, **v}
        return v

    @model_validator(mode="after")
    def _check_env_fit(self) -> "ExperimentConfig":
        self.env.check_experiment(self.data, get_method(self.rl.method).offline_model)
        if not self.env.image_states:
            on = [k for k in ("shared_image_encoder", "freeze_policy_encoder", "cache_prior_features",
                              "critic_prior_encoder", "asymmetric_critic") if getattr(self.rl, k)]
            if on:
                raise ValueError(f"rl.{', rl.'.join(on)}: image states only (env.state 'image'); this env has state vectors")
        if self.rl.freeze_policy_encoder and not get_method(self.rl.method).init_policy_from_prior:
            raise ValueError(f"rl.freeze_policy_encoder freezes the conv encoder copied from the prior; method "
                             f"{self.rl.method!r} does not copy the prior into the policy")
        if self.rl.asymmetric_critic:
            if not type(self.env).state_in_info:
                raise ValueError(f"rl.asymmetric_critic: the critics read info['state'], which env.name "
                                 f"{self.env.name!r} does not report (block_stacking and maze do)")
            if self.rl.critic_prior_encoder:
                raise ValueError("rl.asymmetric_critic and rl.critic_prior_encoder both choose the critics' input "
                                 "(env state vs the prior's conv features): set one")
        for key, what in (("cache_prior_features", "caches the skill prior's conv features"),
                          ("critic_prior_encoder", "makes the critics read the skill prior's conv")):
            if getattr(self.rl, key) and not get_method(self.rl.method).use_skill_prior:
                raise ValueError(f"rl.{key} {what}; method {self.rl.method!r} does not use the skill prior")
        if self.env.image_states:
            try:
                SkillModelConfig(obs_dim=4, action_dim=2, image_shape=(1, 2, 2), **self.skill_model)
            except ValidationError as e:
                msg = "; ".join(err["msg"] for err in e.errors())
                raise ValueError(f"skill_model does not fit env.state 'image': {msg}") from None
        return self

    def skill_model_config(self, obs_dim: int, action_dim: int,
                           image_shape: tuple[int, int, int] | None = None) -> SkillModelConfig:
        """The skill model of this experiment for the dataset's dims (``image_shape``: image states (C, H, W)).

        Raises:
            pydantic.ValidationError: the fields do not fit these dims.
        """
        return SkillModelConfig(obs_dim=obs_dim, action_dim=action_dim, image_shape=image_shape, **self.skill_model)

    # ---- paths --------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.storage_path).expanduser().resolve() / self.name

    @property
    def dataset_path(self) -> Path:
        """``data.path``, or the collected file, named by what was collected (a changed
        ``data.collect`` or state layout collects anew instead of reusing an old file).

        Collected files live in ``<storage_path>/datasets/``, shared by every
        experiment under that storage root (a sweep and its baselines use the
        very same file, so the prior cache hits across experiments)."""
        if self.data.path:
            return Path(self.data.path).expanduser().resolve()
        c = self.data.collect
        name = f"scripted_{self.env.name}_{c.episodes}ep_seed{c.seed}_{self.env.dataset_variant(c)}"
        if c.random_action_fraction:
            name += f"_random{c.random_action_fraction:g}"
        return Path(self.storage_path).expanduser().resolve() / "datasets" / f"{name}.hdf5"

    @property
    def prior_cache_dir(self) -> Path:
        """Shared across experiments under the same storage root, keyed by content hash."""
        return Path(self.storage_path).expanduser().resolve() / "prior_cache"


def _without_family_tag(loc: tuple) -> tuple[tuple, str | None]:
    """``("env", "<family>", field, ...)`` as pydantic locates errors in the ``env`` union -> ``("env", field, ...)``
    and the family's name; other locations unchanged (and None)."""
    if len(loc) >= 2 and loc[0] == "env" and loc[1] in FAMILIES:
        return (loc[0], *loc[2:]), loc[1]
    return loc, None


def _fields_at(model: type[BaseModel], loc: tuple, family: str | None = None) -> list[str] | None:
    """Valid field names of the (sub)model that holds location ``loc`` (without its last item, family tag removed)."""
    for i, part in enumerate(loc[:-1]):
        if i == 0 and part == "env" and family is not None:
            model = FAMILIES[family]
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return sorted(model.model_fields)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One readable message per problem: ``field.path: what was wrong`` (+ valid keys for unknown ones).

    An ``env`` key of another family than ``env.name``'s says so (``env.size: a field of env.name 'maze',
    not of 'kitchen'``)."""
    lines = [f"invalid experiment config {source}:"]
    for e in err.errors():
        raw_loc, family = _without_family_tag(tuple(e["loc"]))
        loc = ".".join(str(p) for p in raw_loc) or "<top level>"
        msg = e["msg"]
        if e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])  # our own message, without pydantic's "Value error, " prefix
        if e["type"] == "extra_forbidden":
            valid = _fields_at(ExperimentConfig, raw_loc, family)
            owners = [n for n, cls in FAMILIES.items() if n != family and raw_loc[-1] in cls.model_fields]
            if family is not None and len(raw_loc) == 2 and owners:
                msg = (f"does not apply to env.name {family!r} (a field of env.name "
                       f"{' / '.join(repr(o) for o in owners)})")
            else:
                msg = "unknown key"
            msg += f"; valid keys here: {', '.join(valid)}" if valid else ""
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _set_dotted(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set ``{"a.b.c": value}`` items in the nested dict ``raw`` (in place).

    Raises:
        ConfigError: a dotted key runs through a value that is not a mapping.
    """
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
        node[leaf] = value


def yaml_error_message(err: yaml.YAMLError, source: str) -> str:
    """``<source>, line L, column C: not valid YAML: <problem>`` (1-based, where PyYAML marks the problem).

    ``source`` names the text, e.g. ``config file 'x.yaml'`` or ``--set rl.seeds=[1``.
    """
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return f"{source}: not valid YAML: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    msg = f"{source}, {at(mark)}: not valid YAML: {problem}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and (context_mark.line, context_mark.column) != (mark.line, mark.column):
        msg += f" ({context} at {at(context_mark)})"  # e.g. where an unclosed [ or { began
    return msg


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML.

    Args:
        path: the YAML file.
        overrides: dotted keys to set after loading, e.g. ``{"rl.env_steps": 2000}``.
    Raises:
        ConfigError: missing file, YAML syntax error (with its line and column), or
            invalid fields (all listed, e.g. an unknown kitchen subtask with the
            closest valid names).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(e, f"config file {str(path)!r}")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping at the top level, got {type(raw).__name__}")
    _set_dotted(raw, overrides or {})
    try:
        cfg = ExperimentConfig(**raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, repr(str(path)))) from None
    try:
        cfg.variant_configs()  # every sweep arm must be valid before anything runs
    except ConfigError as e:
        raise ConfigError(f"config file {str(path)!r}: {e}") from None
    return cfg
