"""SPiRL RL module: prior-shaped Gaussian policy, twin LeakyReLU critics, frozen skill prior.

Networks (appendix B.2: "the architecture of policy and critic mirror the one
of the skill prior network"):

* ``pi``: a :class:`~spirl_ray.skills.models.GaussianMLP` with the prior's
  architecture (obs_dim -> 2Z = [mu, log_sigma]), its BatchNorm layers frozen
  (:func:`~spirl_ray.skills.models.freeze_batch_norm`), initialised from the
  prior's weights (appendix F) when ``model_config["skill_model_path"]`` is set
  and ``init_policy_from_prior`` is True. Its output is exactly what RLlib's
  ``TorchSquashedGaussian`` reads, so EnvRunners act a = tanh(v) in [-1, 1],
  rescaled to the skill env's Box(-2, 2) -> z = 2·tanh(v).
* Squash scale s (``model_config["squash_scale"]``): the networks (policy
  and prior alike) output a Gaussian over u in the prior's space and the
  module hands RLlib v = u / s, i.e. dist inputs [mu / s, log_sigma - log s],
  so z = 2·tanh(u / s). With s = 2 (the default for a skill prior, whose u
  *is* a skill z) z ≈ u for |u| ≲ 1 and a policy copied from the prior
  executes the prior's skills; with s = 1 (the reference code's
  ``max_action_range * tanh(u)``) it executes z ≈ 2u, measured to halve the
  subtasks the copied prior completes in the kitchen. The same affine map is
  applied to the prior's params, and the Gaussian KL (analytic or sampled)
  is invariant under it. A flat action prior is fitted on atanh(a), already
  the pre-squash space: s = 1.
* ``qf``/``qf_twin`` (+ target copies): MLPs on [s, a] with LeakyReLU(0.2),
  ``critic_layers`` linear layers of width ``critic_hidden`` (kitchen: 5 x 256;
  maze: 2 x 256), no BatchNorm, no separate obs/action streams.
* Image observations (a (C, H, W) Box, e.g. the maze's 2 x 32 x 32 uint8
  frames; appendix B.1): ``pi`` carries the prior's
  :class:`~spirl_ray.skills.models.ConvEncoder` in front of its MLP (so it
  is still an exact copy of the prior), and each critic's encoder
  (``qf_encoder``, ``qf_twin_encoder``, and their target copies) is a conv
  encoder of the same architecture with its own weights whose flattened
  features are concatenated with the action: ``[conv(s), a]`` -> MLP. The
  conv architecture comes from the skill-model file when one is set, else
  from ``model_config`` ``conv_channels`` / ``conv_kernel`` (paper: (8, 16,
  32), 3). Observations stay uint8 until the encoder divides them by 255.
  Two speed options change what is trained (both off by default, the
  reference SPiRL's separate networks):

  - ``shared_image_encoder``: ONE conv encoder for the twin critics (owned
    by ``qf_encoder``; ``qf_twin_encoder`` reads it without registering it)
    and one for the two target critics, as in SAC-AE / DrQ. The encoder is in
    the ``qf`` optimizer and receives the gradient of both critic losses.
  - ``freeze_policy_encoder``: the policy's conv encoder (a copy of the
    prior's, appendix F) is not trained; the actor loss trains the policy's
    MLP (and BatchNorm affine) only. The policy still *starts as the prior*
    exactly, and with the prior loaded its conv features equal the frozen
    prior's at every step, so the learner computes them once for both.
    Chosen over "the actor reads the critic encoder's features with
    stop-gradient" (SAC-AE / DrQ): the critic's encoder is not the prior's,
    so that actor would not start as the prior, would change whenever the
    critic's encoder trains, and the EnvRunners would need the critic
    encoder's weights.

  - ``critic_prior_encoder`` (needs the skill prior): the critics and the
    target critics read the frozen prior's conv features instead of conv
    encoders of their own (``_PriorConvObsActionEncoder``: no parameters, no
    target copy to polyak-update); only their MLPs train.
  - ``critic_state_dim`` = D (asymmetric critic): the critics and the target
    critics read the env's low-dimensional state (the batch columns
    ``critic_state`` / ``critic_state_next``, (B, D), which the replay fills
    from ``info["state"]``) instead of the image: [s_low, a] -> MLP, no conv.
    The policy and the prior still read the images. The reference SPiRL's
    critic for its image tasks (``SplitObsMLPCritic`` drops the image part of
    its observation). Fused forward only (RLlib's generic forward hands the
    target critics ``next_obs`` alone).

  The learner's forward pass on images (``_forward_train_image``) computes
  the same outputs as RLlib's generic SAC forward with fewer conv passes
  (``model_config["fused_image_forward"]``, default True; False = RLlib's
  generic forward, the reference ``tests/test_image_prior.py`` compares it to).
* ``skill_prior``: the frozen prior p(z|s) — learner side only (not built when
  ``inference_only``), never trained, absent from EnvRunners.
* Cached prior features (image observations, the prior loaded): a training
  batch may carry the columns ``prior_features`` / ``prior_features_next``,
  the frozen prior's conv features of ``obs`` / ``next_obs`` computed once by
  :meth:`SPiRLTorchRLModule.prior_features` when the transition entered the
  replay (``SPiRLConfig.training(cache_prior_features=True)``). The fused
  forward reads them instead of running the prior's conv (and, with
  ``freeze_policy_encoder``, the policy's) at every replay of the
  transition; only while the prior's conv still holds the weights the last
  features were computed with (checked every step), else it computes them.
* ``sampling_prior`` + buffer ``prior_sample_prob`` (ω), only with
  ``prior_sampling`` ("SPiRL w/o prior init", appendix F): on every side,
  exploration draws each skill from the prior with probability ω instead of
  from the policy. ω lives in the module state, so the learner side sets it
  and the weight sync carries it to the EnvRunners.

``model_config`` keys (set by :class:`~spirl_ray.rl.spirl.config.SPiRLConfig`):
``skill_model_path`` (str | None), ``init_policy_from_prior`` (bool),
``use_skill_prior`` (bool, build the prior for the KL), ``policy_hidden``,
``policy_layers``, ``policy_batch_norm`` (policy architecture; must match the
prior's when it is loaded), ``critic_hidden``, ``critic_layers``, ``twin_q``,
``prior_sampling`` (bool); for image observations without a skill-model
file ``conv_channels`` and ``conv_kernel``; for image observations
``shared_image_encoder``, ``freeze_policy_encoder``, ``critic_prior_encoder`` and ``fused_image_forward``
(bools) and ``critic_state_dim`` (int | None).
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn as nn
from ray.rllib.algorithms.sac.sac_catalog import SACCatalog
from ray.rllib.algorithms.sac.sac_learner import ACTION_DIST_INPUTS_NEXT, QF_PREDS, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic, TorchSquashedGaussian
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override

from spirl_ray.skills.models import ConvEncoder, GaussianMLP, build_mlp, freeze_batch_norm

#: ``fwd_out`` keys holding the prior's (B, 2Z) Gaussian params at ``obs`` / ``next_obs``.
PRIOR_DIST_INPUTS = "prior_dist_inputs"
PRIOR_DIST_INPUTS_NEXT = "prior_dist_inputs_next"
#: batch columns (optional) holding the frozen prior's (B, F) float32 conv features of ``obs`` / ``next_obs``,
#: computed once per transition when it enters the replay (:meth:`SPiRLTorchRLModule.prior_features`).
PRIOR_FEATURES = "prior_features"
PRIOR_FEATURES_NEXT = "prior_features_next"
#: batch columns holding the env's (B, D) float32 low-dimensional state at ``obs`` / ``next_obs`` (``info["state"]``),
#: the asymmetric critic's input (``critic_state_dim``).
CRITIC_STATE = "critic_state"
CRITIC_STATE_NEXT = "critic_state_next"

#: defaults of the model_config keys this module reads.
MODEL_DEFAULTS: Dict[str, Any] = {
    "skill_model_path": None,
    "init_policy_from_prior": True,
    "use_skill_prior": True,
    "policy_hidden": 128,
    "policy_layers": 6,
    "policy_batch_norm": True,
    "critic_hidden": 256,
    "critic_layers": 5,
    "critic_layer_norm": False,
    "prior_sampling": False,
    "conv_channels": (8, 16, 32),
    "conv_kernel": 3,
    "squash_scale": None,
    "prior_in_action_space": False,
    "shared_image_encoder": False,
    "freeze_policy_encoder": False,
    "critic_prior_encoder": False,
    "critic_state_dim": None,
    "fused_image_forward": True,
}


def to_squash_space(params: torch.Tensor, scale: float) -> torch.Tensor:
    """Gaussian params over u -> params over v = u / ``scale``: (B, 2Z) [mu, log_sigma] -> same shape."""
    if scale == 1.0:
        return params
    mu, log_sigma = params.chunk(2, dim=-1)
    return torch.cat([mu / scale, log_sigma - math.log(scale)], dim=-1)


class SquashedGaussianSquashedMode(TorchSquashedGaussian):
    """RLlib's squashed Gaussian whose deterministic action is the squashed mean.

    RLlib 2.60's ``TorchSquashedGaussian.to_deterministic()`` returns the
    *pre-squash* mean v unchanged, so a deterministic EnvRunner
    (``explore=False``, i.e. evaluation) would act v, clipped to [-1, 1] and
    rescaled, instead of tanh(v): with the skill squash z = 2·tanh(u / s)
    that is z = 2·clip(μ/s) rather than 2·tanh(μ/s). Here the deterministic
    action is ``low + (tanh(v) + 1) / 2 · (high − low)``, the mode of the
    squashed distribution's pre-image mapped the same way as a training sample.
    """

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self._squash(self.loc))


class _ObsEncoder(nn.Module):
    """Parameter-free 'encoder' passing ``obs`` through (keeps RLlib's encoder/head split)."""

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {ENCODER_OUT: batch[Columns.OBS].float()}


class _ObsActionEncoder(nn.Module):
    """Parameter-free 'encoder' for critics: concat [obs, action] -> (B, S + Z)."""

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {ENCODER_OUT: torch.cat([batch[Columns.OBS].float(), batch[Columns.ACTIONS].float()], dim=-1)}


class _ImageObsActionEncoder(nn.Module):
    """Critic encoder for image observations: [conv(obs) (B, F), action (B, Z)] -> (B, F + Z)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: tuple[int, ...], kernel: int):
        super().__init__()
        self.conv = ConvEncoder(image_shape, channels, kernel)
        self.out_dim = self.conv.out_dim

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        feats = self.conv(batch[Columns.OBS])
        return {ENCODER_OUT: torch.cat([feats, batch[Columns.ACTIONS].float()], dim=-1)}


class _SharedImageObsActionEncoder(nn.Module):
    """Twin-critic encoder reading another critic's conv (``shared_image_encoder``): same output as
    :class:`_ImageObsActionEncoder`, (B, F + Z), but the conv is *not* a submodule (no parameters of
    its own, so no optimizer or target copy trains or polyak-updates it a second time)."""

    def __init__(self, owner: _ImageObsActionEncoder):
        super().__init__()
        self.out_dim = owner.out_dim
        self._owner = [owner]  # a list: not registered as a submodule

    @property
    def conv(self) -> ConvEncoder:
        return self._owner[0].conv

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return self._owner[0](batch)


class _PriorConvObsActionEncoder(nn.Module):
    """Critic encoder reading the frozen skill prior's conv (``critic_prior_encoder``): [f_prior(obs), action]
    (B, F + Z), features without gradient. The conv is *not* a submodule: no parameters of its own, so no
    optimizer, polyak update or checkpoint holds it a second time (RLlib's target copy deep-copies the
    frozen conv along; the fused forward reads the prior's features for both)."""

    def __init__(self, prior_conv: ConvEncoder):
        super().__init__()
        self.out_dim = prior_conv.out_dim
        self._conv = [prior_conv]  # a list: not registered as a submodule

    @property
    def conv(self) -> ConvEncoder:
        return self._conv[0]

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            feats = self.conv(batch[Columns.OBS])
        return {ENCODER_OUT: torch.cat([feats, batch[Columns.ACTIONS].float()], dim=-1)}


class _StateActionEncoder(nn.Module):
    """Asymmetric-critic encoder (``critic_state_dim``): [critic_state (B, D), action (B, Z)] -> (B, D + Z).

    No parameters: the critic MLP after it reads the env state directly.
    """

    def __init__(self, state_dim: int):
        super().__init__()
        self.out_dim = int(state_dim)

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {ENCODER_OUT: torch.cat([_critic_state(batch, CRITIC_STATE), batch[Columns.ACTIONS].float()], dim=-1)}


def _critic_state(batch: Dict[str, Any], key: str) -> torch.Tensor:
    """The batch's (B, D) float critic-state column ``key``.

    Raises:
        ValueError: the column is missing (the replay stores it only when the env reports ``info["state"]``).
    """
    if key not in batch:
        raise ValueError(f"asymmetric critic (critic_state_dim set): the training batch has no {key!r} column; the "
                         f"replay fills it from the env's info['state'] (block stacking: state_in_info=True)")
    return torch.as_tensor(batch[key]).float()


class SPiRLTorchRLModule(DefaultSACTorchRLModule):
    """SAC RL module with a prior-shaped policy and a frozen skill prior (learner side only)."""

    def __init__(self, *args, **kwargs):
        # The catalog is only used by the parent for spaces/dist classes; we build our own nets.
        kwargs.setdefault("catalog_class", SACCatalog)
        super().__init__(*args, **kwargs)

    def _cfg(self, key: str) -> Any:
        return self.model_config.get(key, MODEL_DEFAULTS[key])

    def _image_settings(self, obs_shape: tuple) -> Dict[str, Any]:
        """GaussianMLP image kwargs: {} for vector obs; else image_shape + the conv architecture.

        The conv architecture is the skill-model file's (when set) so that the
        policy copies the prior exactly on every side (EnvRunners too);
        otherwise ``model_config`` ``conv_channels`` / ``conv_kernel``.
        """
        if len(obs_shape) != 3:
            return {}
        channels, kernel = tuple(self._cfg("conv_channels")), int(self._cfg("conv_kernel"))
        path = self._cfg("skill_model_path")
        if path is not None:
            from spirl_ray.skills.checkpoint import load_skill_model

            cfg = load_skill_model(path).config
            channels, kernel = tuple(cfg.conv_channels), int(cfg.conv_kernel)
        return {"image_shape": tuple(int(d) for d in obs_shape), "conv_channels": channels, "conv_kernel": kernel}

    @override(RLModule)
    def setup(self):
        obs_shape = tuple(int(d) for d in self.observation_space.shape)
        if len(obs_shape) not in (1, 3):
            raise ValueError(f"SPiRL RL module: observations must be state vectors (S,) or images (C, H, W), "
                             f"got shape {obs_shape}")
        obs_dim = int(torch.tensor(obs_shape).prod())
        act_dim = int(self.action_space.shape[0])
        self.twin_q = self.model_config.get("twin_q", True)
        image = self._image_settings(obs_shape)
        self._image = bool(image)
        set_on_vectors = [k for k in ("shared_image_encoder", "freeze_policy_encoder", "critic_prior_encoder")
                          if self._cfg(k)]
        if set_on_vectors and not image:
            raise ValueError(f"SPiRL RL module: {' and '.join(set_on_vectors)} act on image observations; these "
                             f"are state vectors of shape {obs_shape}")
        self._critic_prior_encoder = bool(image) and bool(self._cfg("critic_prior_encoder"))
        state_dim = self._cfg("critic_state_dim")
        self._critic_state_dim = None if state_dim is None else int(state_dim)
        if self._critic_state_dim is not None:
            if not image or not self._cfg("fused_image_forward"):
                raise ValueError("SPiRL RL module: critic_state_dim (asymmetric critic) needs image observations and "
                                 "fused_image_forward=True (RLlib's generic forward gives the target critics next_obs "
                                 f"only); observations have shape {obs_shape}")
            if self._critic_prior_encoder:
                raise ValueError("SPiRL RL module: critic_state_dim and critic_prior_encoder both choose the critics' "
                                 "input: set one")
        self._shared_encoder = (bool(image) and bool(self._cfg("shared_image_encoder")) and not self._critic_prior_encoder
                                and self._critic_state_dim is None)
        self._pi_reads_prior_features = False
        self._prior_feature_weights: List[torch.Tensor] | None = None  # the prior conv's, at the last prior_features()

        self.pi_encoder = _ObsEncoder()
        self.pi = freeze_batch_norm(
            GaussianMLP(obs_dim, act_dim, self._cfg("policy_hidden"), self._cfg("policy_layers"),
                        self._cfg("policy_batch_norm"), **image)
        )
        if image and self._cfg("freeze_policy_encoder"):
            self.pi.encoder.requires_grad_(False)
        self.squash_scale = self._resolve_squash_scale()
        if self.squash_scale != 1.0:
            # every RLlib call site of pi (inference, exploration, train, next obs) gets v-space params
            self.pi.register_forward_hook(self._pi_to_squash_space)

        # ω of appendix F's prior sampling (a buffer: synced to the EnvRunners with the weights).
        self.register_buffer("prior_sample_prob", torch.tensor(1.0 if self._cfg("prior_sampling") else 0.0))
        self.sampling_prior = None
        if self._cfg("prior_sampling"):
            path = self._cfg("skill_model_path")
            if path is None:
                raise ValueError("prior_sampling=True needs model_config['skill_model_path']")
            self.sampling_prior = self._load_prior(path, obs_shape, act_dim)

        if not self.inference_only:
            hidden, layers = self._cfg("critic_hidden"), self._cfg("critic_layers")
            path = self._cfg("skill_model_path")
            prior = None
            if self._critic_prior_encoder:
                if path is None or not self._cfg("use_skill_prior"):
                    raise ValueError("critic_prior_encoder=True: the critics read the skill prior's conv; it needs "
                                     "model_config['skill_model_path'] and use_skill_prior=True")
                prior = self._load_prior(path, obs_shape, act_dim)

            def critic_encoder() -> nn.Module:
                if self._critic_state_dim is not None:
                    return _StateActionEncoder(self._critic_state_dim)
                if self._critic_prior_encoder:
                    return _PriorConvObsActionEncoder(prior.encoder)
                if image:
                    return _ImageObsActionEncoder(image["image_shape"], image["conv_channels"], image["conv_kernel"])
                return _ObsActionEncoder()

            self.qf_encoder = critic_encoder()
            in_dim = getattr(self.qf_encoder, "out_dim", obs_dim) + act_dim
            layer_norm = bool(self._cfg("critic_layer_norm"))
            self.qf = build_mlp(in_dim, 1, hidden, layers, batch_norm=False, layer_norm=layer_norm)
            if self.twin_q:
                self.qf_twin_encoder = (_SharedImageObsActionEncoder(self.qf_encoder) if self._shared_encoder
                                        else critic_encoder())
                self.qf_twin = build_mlp(in_dim, 1, hidden, layers, batch_norm=False, layer_norm=layer_norm)

            self.skill_prior = None
            if path is not None:
                prior = prior if prior is not None else self._load_prior(path, obs_shape, act_dim)
                if self._cfg("init_policy_from_prior"):
                    self._init_policy_from(prior)
                if self._cfg("use_skill_prior"):
                    self.skill_prior = prior
            elif self._cfg("use_skill_prior"):
                raise ValueError("use_skill_prior=True needs model_config['skill_model_path']")
            # The frozen policy encoder is a copy of the frozen prior's: the same features, computed once.
            self._pi_reads_prior_features = bool(
                image and self._cfg("freeze_policy_encoder") and self._cfg("init_policy_from_prior")
                and self.skill_prior is not None
            )

    @override(DefaultSACTorchRLModule)
    def make_target_networks(self):
        """RLlib's target copies; with ``shared_image_encoder`` the twin target critic reads the target
        conv of ``target_qf_encoder`` (one target encoder, polyak-updated once)."""
        super().make_target_networks()
        if self.twin_q and self._shared_encoder:
            self.target_qf_twin_encoder = _SharedImageObsActionEncoder(self.target_qf_encoder)

    def _pi_to_squash_space(self, _module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        return to_squash_space(out, self.squash_scale)

    def _resolve_squash_scale(self) -> float:
        """s of z = bound·tanh(u / s): ``squash_scale`` if set, else the action bound for a prior over
        the action space itself (skills), else 1.

        Raises:
            ValueError: ``squash_scale`` <= 0, or an asymmetric action space with the automatic scale.
        """
        s = self._cfg("squash_scale")
        if s is not None:
            if not float(s) > 0:
                raise ValueError(f"squash_scale must be > 0, got {s!r}")
            return float(s)
        if not self._cfg("prior_in_action_space"):
            return 1.0
        low, high = self.action_space.low, self.action_space.high
        if not (np.allclose(low, -high) and np.allclose(high, high.flat[0])):
            raise ValueError(f"squash_scale=None needs a symmetric box action space, got low={low}, high={high}")
        return float(high.flat[0])

    # ---- prior ---------------------------------------------------------------------------
    def _load_prior(self, path: str, obs_shape: tuple, act_dim: int) -> nn.Module:
        """Load p(z|s) from a skill-model file; eval mode, requires_grad False; check shapes.

        Raises:
            ValueError: the prior's state shape or skill dim differ from the spaces.
        """
        from spirl_ray.skills.checkpoint import load_skill_model

        skill_model = load_skill_model(path)
        prior = skill_model.prior
        if (tuple(prior.in_shape), prior.out_dim) != (tuple(obs_shape), act_dim):
            raise ValueError(
                f"skill prior in {path!r} maps states of shape {tuple(prior.in_shape)} to {prior.out_dim}-d skills, "
                f"but the env observes shape {tuple(obs_shape)} and has a {act_dim}-d skill action space"
            )
        prior.eval().requires_grad_(False)
        return prior

    def _init_policy_from(self, prior: nn.Module) -> None:
        """Copy the prior's weights (incl. BatchNorm running stats) into the frozen-BN policy (appendix F)."""
        src = freeze_batch_norm(copy.deepcopy(prior))
        try:
            self.pi.load_state_dict(src.state_dict())
        except RuntimeError as e:
            raise ValueError(
                "policy architecture (model_config policy_hidden/policy_layers/policy_batch_norm) does not match "
                f"the skill prior's: {e}"
            ) from None

    # ---- RLlib hooks ---------------------------------------------------------------------
    @override(DefaultSACTorchRLModule)
    def get_inference_action_dist_cls(self):
        """Squashed Gaussian whose deterministic action is 2·tanh(μ/s) (see :class:`SquashedGaussianSquashedMode`)."""
        return SquashedGaussianSquashedMode

    @override(DefaultSACTorchRLModule)
    def get_exploration_action_dist_cls(self):
        return SquashedGaussianSquashedMode

    @override(DefaultSACTorchRLModule)
    def get_non_inference_attributes(self) -> List[str]:
        return super().get_non_inference_attributes() + ["skill_prior"]

    def train(self, mode: bool = True):
        """Keep the frozen prior in eval mode whatever mode the module is put in."""
        super().train(mode)
        for prior in (getattr(self, "skill_prior", None), getattr(self, "sampling_prior", None)):
            if prior is not None:
                prior.eval()
        return self

    def set_prior_sample_prob(self, omega: float) -> None:
        """Set ω in [0, 1] (appendix F); a no-op unless built with ``prior_sampling``."""
        if self.sampling_prior is not None:
            self.prior_sample_prob.fill_(float(min(max(omega, 0.0), 1.0)))

    @override(DefaultSACTorchRLModule)
    def _forward_exploration(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        """The policy's (B, 2Z) dist inputs; with prior sampling, row-wise replaced by the prior's w.p. ω."""
        out = self._forward_inference(batch)
        omega = float(self.prior_sample_prob)
        if self.sampling_prior is not None and omega > 0.0:
            obs = batch[Columns.OBS].float()
            with torch.no_grad():
                prior = to_squash_space(self.sampling_prior(obs), self.squash_scale)
            use_prior = torch.rand(obs.shape[0], 1, device=obs.device) < omega
            out[Columns.ACTION_DIST_INPUTS] = torch.where(use_prior, prior, out[Columns.ACTION_DIST_INPUTS])
        return out

    def prior_params(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 2Z) [mu, log_sigma] of p(z|s) in the policy's pre-squash space (/ ``squash_scale``), no gradients."""
        with torch.no_grad():
            return to_squash_space(self.skill_prior(obs.float()), self.squash_scale)

    def prior_features(self, obs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """The frozen prior's conv features of image observations, for the replay's feature cache.

        Bit for bit what the fused learner forward computes for the same rows
        of a training batch: the conv is row-independent (no BatchNorm), and
        on this project's CPUs batches of 2 to 1024 rows, on 1 or 2 torch
        threads, gave identical rows (``tests/test_prior_feature_cache.py``
        checks 1 to 33 rows against a batch of 256); a batch of ONE image takes
        another conv kernel (differs by ~1e-7), so a single image is computed
        in a batch of two. Remembers the prior conv's weights: the forward uses
        a batch's cached columns only while the prior still holds them.

        Args:
            obs: (N, C, H, W) uint8 images (or float in [0, 255]), N >= 1.
            chunk: rows per conv call (bounds the float copy: chunk x C x H x W x 4 bytes).

        Returns:
            (N, F) float32, F = the prior conv's ``out_dim`` (paper sizes: 512), no gradient.

        Raises:
            ValueError: the module has no image skill prior (vector states, ``use_skill_prior=False``,
                or an ``inference_only`` module).
        """
        prior = getattr(self, "skill_prior", None)
        if not self._image or prior is None:
            raise ValueError("prior_features needs image observations and the skill prior loaded on the learner "
                             "(use_skill_prior=True, skill_model_path set, not inference_only)")
        obs = torch.as_tensor(obs)
        n = int(obs.shape[0])
        params = list(prior.encoder.parameters())
        if self._prior_feature_weights is None or not _same_tensors(params, self._prior_feature_weights):
            self._prior_feature_weights = [p.detach().clone() for p in params]
        with torch.no_grad():
            out = []
            for start in range(0, n, chunk):
                part = obs[start:start + chunk]
                one = len(part) == 1  # a chunk of one row runs as two copies of it
                f = prior.encoder.features(ConvEncoder.prepare(part.expand(2, *part.shape[1:]) if one else part))
                out.append(f[:1] if one else f)
            return torch.cat(out) if len(out) > 1 else out[0]

    def prior_features_key(self) -> str:
        """Fingerprint (hex SHA-256) of the prior conv's weights: equal keys, equal features.

        Raises:
            ValueError: as :meth:`prior_features`.
        """
        prior = getattr(self, "skill_prior", None)
        if not self._image or prior is None:
            raise ValueError("prior_features_key needs image observations and the skill prior loaded on the learner")
        h = hashlib.sha256()
        for name, p in prior.encoder.state_dict().items():
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _cached_prior_features(self, batch: Dict[str, Any]):
        """(features at s, at s') from the batch's cache columns, or None when absent or not the prior's any more."""
        f, f_next = batch.get(PRIOR_FEATURES), batch.get(PRIOR_FEATURES_NEXT)
        if f is None or f_next is None or self._prior_feature_weights is None:
            return None
        if not _same_tensors(list(self.skill_prior.encoder.parameters()), self._prior_feature_weights):
            return None
        return f.float(), f_next.float()

    @override(DefaultSACTorchRLModule)
    def _forward_train_continuous(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        if self._image and self._cfg("fused_image_forward"):
            return self._forward_train_image(batch)
        out = super()._forward_train_continuous(batch)
        if getattr(self, "skill_prior", None) is not None:
            out[PRIOR_DIST_INPUTS] = self.prior_params(batch[Columns.OBS])
            out[PRIOR_DIST_INPUTS_NEXT] = self.prior_params(batch[Columns.NEXT_OBS])
        return out

    def _forward_train_image(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """RLlib's SAC ``_forward_train_continuous`` (+ the prior's params) for image observations, fewer conv passes.

        Same outputs, same random draws in the same order (an ``rsample`` at s,
        then a ``sample`` at s'), same gradients; replaced for speed
        (``python -m benchmarks.bench_image_learner``: "today" vs
        "fused forward" rows). The differences, none of which changes a number:

        * ``obs`` / ``next_obs`` are converted uint8 -> float / 255
          (channels-last) once per batch, not once per network
          (:meth:`ConvEncoder.prepare`);
        * ``q_curr`` (critics at s and the resampled skill, critic parameters
          frozen) reuses the critics' conv features at s, detached, instead of
          running both conv encoders again: with frozen critic parameters and
          uint8 input no gradient reached those convs anyway. It even reuses
          the features' product with the first critic layer: that layer is
          computed as W_f·f + (W_a·a + b) (W = [W_f, W_a] split at the feature
          width) instead of W·[f, a] + b, and W_f·f is the same at (s, a) and
          (s, ã) -- the same sum in another order, equal to float rounding
          (~1e-7 relative);
        * the policy at s' runs without autograd (only detached / no-grad
          values are read from it);
        * with ``shared_image_encoder`` the shared (target) conv runs once for
          both (target) critics; with ``freeze_policy_encoder`` and the prior
          loaded, the policy reuses the prior's conv features (checked every
          step to be the same weights: a frozen policy encoder restored from
          elsewhere runs on its own);
        * with ``critic_prior_encoder`` the critics and target critics take the
          prior's conv features (no conv of their own); with ``critic_state_dim``
          they take the batch's ``critic_state`` / ``critic_state_next`` columns;
        * ``obs`` / ``next_obs`` are not converted at all when no conv reads them
          (every conv's features cached or shared);
        * with the batch columns ``prior_features`` / ``prior_features_next``
          (the replay's cache, ``cache_prior_features``), the prior's conv
          does not run at all: its features were computed once when the
          transition entered the replay, by :meth:`prior_features`, bit for
          bit what it would compute here. Used only while the prior's conv
          holds the weights of the last :meth:`prior_features` call (checked
          every step); otherwise the columns are ignored.

        Args:
            batch: ``obs`` / ``next_obs`` (B, C, H, W) uint8 (or float in [0, 255]),
                ``actions`` (B, Z); optionally ``prior_features`` / ``prior_features_next`` (B, F) float32;
                with ``critic_state_dim`` = D, ``critic_state`` / ``critic_state_next`` (B, D) float32.

        Returns:
            The generic forward's keys: ``action_dist_inputs`` / ``action_dist_inputs_next``
            (B, 2Z), ``qf_preds`` / ``qf_twin_preds`` (B,), ``logp_resampled`` /
            ``logp_next_resampled`` (B,), ``q_curr`` (B,), ``q_target_next`` (B,, detached),
            and with the prior ``prior_dist_inputs`` / ``prior_dist_inputs_next`` (B, 2Z).
        """
        out: Dict[str, Any] = {}
        prepared: Dict[str, torch.Tensor] = {}

        def images(key: str) -> torch.Tensor:  # uint8 -> float / 255, once per batch and only if a conv reads it
            if key not in prepared:
                prepared[key] = ConvEncoder.prepare(batch[key])
            return prepared[key]

        prior = getattr(self, "skill_prior", None)
        if prior is not None:
            with torch.no_grad():
                cached = self._cached_prior_features(batch)
                if cached is not None:
                    prior_f, prior_f_next = cached
                else:
                    prior_f = prior.encoder.features(images(Columns.OBS))
                    prior_f_next = prior.encoder.features(images(Columns.NEXT_OBS))
                out[PRIOR_DIST_INPUTS] = to_squash_space(prior.head(prior_f), self.squash_scale)
                out[PRIOR_DIST_INPUTS_NEXT] = to_squash_space(prior.head(prior_f_next), self.squash_scale)

        # Policy at s (gradient) and s' (values only); the squash-space map that pi's forward hook applies.
        if self._pi_reads_prior_features and _same_weights(self.pi.encoder, prior.encoder):
            pi_f, pi_f_next = prior_f, prior_f_next
        else:
            pi_f = self.pi.encoder.features(images(Columns.OBS))
            with torch.no_grad():
                pi_f_next = self.pi.encoder.features(images(Columns.NEXT_OBS))
        logits = to_squash_space(self.pi.head(pi_f), self.squash_scale)
        with torch.no_grad():
            logits_next = to_squash_space(self.pi.head(pi_f_next), self.squash_scale)
        out[Columns.ACTION_DIST_INPUTS] = logits
        out[ACTION_DIST_INPUTS_NEXT] = logits_next

        # Critics at (s, a): each conv once (once for both when shared). The first linear layer is
        # split, W [f, a] + b = W_f f + (W_a a + b): W_f f is the same at (s, a) and (s, ã).
        actions = batch[Columns.ACTIONS].float()
        state_critic = self._critic_state_dim is not None
        if state_critic:
            q_f = _critic_state(batch, CRITIC_STATE)
        else:
            q_f = prior_f if self._critic_prior_encoder else self.qf_encoder.conv.features(images(Columns.OBS))
        heads = [(self.qf, _first_layer_feature_part(self.qf, q_f))]
        out[QF_PREDS] = _critic_rest(self.qf, heads[0][1], actions)
        if self.twin_q:
            q2_f = (q_f if self._shared_encoder or self._critic_prior_encoder or state_critic
                    else self.qf_twin_encoder.conv.features(images(Columns.OBS)))
            heads.append((self.qf_twin, _first_layer_feature_part(self.qf_twin, q2_f)))
            out[QF_TWIN_PREDS] = _critic_rest(self.qf_twin, heads[1][1], actions)

        dist_cls = self.get_train_action_dist_cls()
        dist, dist_next = dist_cls.from_logits(logits), dist_cls.from_logits(logits_next)
        actions_resampled, out["logp_resampled"] = dist.rsample_and_logp()
        actions_next, logp_next = dist_next.sample_and_logp()
        actions_next = actions_next.detach()
        out["logp_next_resampled"] = logp_next.detach()

        # q_curr: min of the critics at (s, ã), gradient into ã only (critic heads frozen, W_f f detached).
        head_params = [p for head, _ in heads for p in head.parameters()]
        for p in head_params:
            p.requires_grad_(False)
        try:
            q_curr = [_critic_rest(head, wf.detach(), actions_resampled) for head, wf in heads]
        finally:
            for p in head_params:
                p.requires_grad_(True)
        out["q_curr"] = torch.min(*q_curr) if len(q_curr) == 2 else q_curr[0]

        # Target critics at (s', a'): each target conv once (once for both when shared).
        with torch.no_grad():
            if state_critic:
                t_f = _critic_state(batch, CRITIC_STATE_NEXT)
            else:
                t_f = (prior_f_next if self._critic_prior_encoder
                       else self.target_qf_encoder.conv.features(images(Columns.NEXT_OBS)))
            q_t = self.target_qf(torch.cat([t_f, actions_next], dim=-1)).squeeze(-1)
            if self.twin_q:
                t2_f = (t_f if self._shared_encoder or self._critic_prior_encoder or state_critic
                        else self.target_qf_twin_encoder.conv.features(images(Columns.NEXT_OBS)))
                q_t = torch.min(q_t, self.target_qf_twin(torch.cat([t2_f, actions_next], dim=-1)).squeeze(-1))
        out["q_target_next"] = q_t.detach()
        return out


def _first_layer_feature_part(head: nn.Sequential, feats: torch.Tensor) -> torch.Tensor:
    """W_f·f of a critic MLP's first layer: feats (B, F) -> (B, hidden), W_f = its first F input columns."""
    return feats @ head[0].weight[:, : feats.shape[1]].t()


def _critic_rest(head: nn.Sequential, wf: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Critic MLP on [f, a] given W_f·f (B, hidden) and a (B, Z): W_f·f + W_a·a + b, then the remaining layers -> (B,)."""
    first = head[0]
    h = wf + torch.addmm(first.bias, actions, first.weight[:, -actions.shape[1]:].t())
    for layer in list(head)[1:]:
        h = layer(h)
    return h.squeeze(-1)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules of the same architecture hold equal parameters (a few small conv tensors: ~µs)."""
    return _same_tensors(list(a.parameters()), list(b.parameters()))


def _same_tensors(a: List[torch.Tensor], b: List[torch.Tensor]) -> bool:
    """Whether two lists of tensors are equal element by element (same length, shapes and values)."""
    return len(a) == len(b) and all(p.shape == q.shape and torch.equal(p, q) for p, q in zip(a, b))
