"""Skill embedding model and state-conditioned skill prior (paper §3.2, appendix B.1).

Shapes use B = batch, H = skill horizon (env steps), S = state dim, A = action
dim, Z = latent (skill) dim.

Two decoders:

* ``open_loop`` (the paper's model): an LSTM encoder over the H actions gives
  the posterior q(z | a_{0:H-1}); an LSTM decoder, fed z at every step, is
  unrolled for H steps and outputs the whole action sequence at once.
* ``closed_loop`` (the reference README's "SPiRL v2"): the encoder reads
  [a_t, s_t]; the decoder is a per-step MLP on [s_t, z], so z is held for H
  steps while the state is fed back every step.
* ``flat`` (the "Flat Prior" and "BC + SAC" baselines, §4.1): no skills, a
  single-step action prior p(a|s). H = 1 and Z = A: the "latent" is the
  pre-tanh action u = atanh(a), the space the policy's squashed Gaussian lives
  in, so the prior and the policy are compared in the same space. Trained by
  maximum likelihood of atanh(a_0) under p(u|s_0); no encoder, no decoder.

``decoder_state_conditioned`` (appendix D, open loop only): an MLP on s_0
predicts the decoder LSTM's initial hidden and cell state, so the same z can
decode to different actions in different states.

The skill prior p(z | s_0) is a Gaussian MLP (6 x 128, BatchNorm + LeakyReLU)
trained against the stop-gradient posterior with the analytic KL of eq. 4.

Image states (``image_shape`` = (C, H, W), maze and block stacking; appendix
B.1: "we first pass the state through a convolutional encoder network with
three layers, a kernel size of three and (8, 16, 32) channels ... The
resulting feature map is flattened to form the input to the skill prior
network"): the prior reads uint8 images through a :class:`ConvEncoder`, then
the same MLP. S is then the flattened size C * H * W. Only the prior reads
states in the open-loop and flat models. The closed-loop model on images (the
reference's ``ImageClSPiRLMdl``, which its authors added when the open-loop
image model did not learn block stacking) has a second conv encoder,
``state_encoder``, of the same architecture as the prior's: its features of
s_t replace s_t in the posterior's input [a_t, f(s_t)] and the decoder's
[f(s_t), z]; it is trained by the reconstruction and posterior terms, the
prior keeps its own conv. The state-conditioned decoder needs state vectors.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_serializer, model_validator
from torch.distributions import Normal, kl_divergence

#: log-sigma range of every Gaussian head (the range RLlib's squashed Gaussian uses).
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -5.0, 2.0
#: |a| bound before atanh for the flat prior (actions at the box edge would map to infinity).
FLAT_ACTION_CLIP = 0.995
#: config fields of image states; left out of a vector-state config's serialised form, so its
#: dump (and the prior cache key hashed from it) is the same as before image states existed.
IMAGE_FIELDS = ("image_shape", "conv_channels", "conv_kernel")


class SkillModelConfig(BaseModel):
    """Architecture and loss weights of the skill model (appendix B.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    obs_dim: PositiveInt = Field(description="state dim S (images: C*H*W) the prior and the closed-loop parts read "
                                             "(closed loop on images: through their own conv encoder)")
    action_dim: PositiveInt = Field(description="low-level action dim A")
    horizon: PositiveInt = Field(10, description="skill horizon H, in env steps")
    latent_dim: PositiveInt = Field(10, description="skill latent dim |Z|")
    decoder: Literal["open_loop", "closed_loop", "flat"] = Field(
        "open_loop", description="decoder type; 'flat' = single-step action prior (H = 1, Z = A)"
    )
    decoder_state_conditioned: bool = Field(
        False, description="open loop only: s_0 sets the decoder LSTM's initial state (appendix D)"
    )
    lstm_hidden: PositiveInt = Field(128, description="width of the one-layer encoder/decoder LSTMs")
    prior_hidden: PositiveInt = Field(128, description="width of the prior MLP")
    prior_layers: PositiveInt = Field(6, description="number of linear layers of the prior MLP")
    decoder_hidden: PositiveInt = Field(128, description="closed-loop decoder MLP width")
    decoder_layers: PositiveInt = Field(5, description="closed-loop decoder MLP linear layers")
    beta: float = Field(5e-4, ge=0, description="weight of KL(q || N(0, I)); kitchen 5e-4, maze/blocks 1e-2, "
                                             "closed-loop blocks 1e-4 (reference configs)")
    image_shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="(C, H, W) of uint8 image states the prior (and the closed-loop encoder and decoder) read "
                          "through conv encoders; None = state vectors"
    )
    conv_channels: tuple[PositiveInt, ...] = Field(
        (8, 16, 32), min_length=1, description="image states: output channels of the conv layers (appendix B.1)"
    )
    conv_kernel: PositiveInt = Field(3, description="image states: conv kernel size (appendix B.1: 3)")

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one state: ``image_shape`` (C, H, W) or ``(obs_dim,)``."""
        return tuple(self.image_shape) if self.image_shape is not None else (self.obs_dim,)

    @model_serializer(mode="wrap")
    def _serialise(self, handler):
        data = handler(self)
        if self.image_shape is None:
            for k in IMAGE_FIELDS:
                data.pop(k, None)
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> "SkillModelConfig":
        if self.decoder == "flat" and (self.horizon != 1 or self.latent_dim != self.action_dim):
            raise ValueError(
                f"decoder='flat' (single-step action prior) needs horizon=1 and latent_dim=action_dim="
                f"{self.action_dim}, got horizon={self.horizon}, latent_dim={self.latent_dim}"
            )
        if self.decoder_state_conditioned and self.decoder != "open_loop":
            raise ValueError("decoder_state_conditioned applies to decoder='open_loop' only (appendix D)")
        if self.image_shape is not None:
            size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
            if self.obs_dim != size:
                raise ValueError(f"image states: obs_dim must be C*H*W = {size} for image_shape={self.image_shape}, "
                                 f"got obs_dim={self.obs_dim}")
            if self.decoder_state_conditioned:
                raise ValueError("decoder_state_conditioned needs state vectors; with image states use "
                                 "decoder='open_loop', 'closed_loop' or 'flat'")
        return self


def build_mlp(
    in_dim: int, out_dim: int, hidden: int, n_layers: int, batch_norm: bool = True, layer_norm: bool = False
) -> nn.Sequential:
    """``n_layers`` linear layers; each but the last followed by [BatchNorm1d | LayerNorm] + LeakyReLU(0.2).

    ``layer_norm``: LayerNorm over the ``hidden`` features of every hidden layer (used for
    critics: it bounds the features a critic can extrapolate to far from its data; Ball et
    al. 2023, "Efficient Online RL with Offline Data"). At most one of the two norms.

    Raises:
        ValueError: both ``batch_norm`` and ``layer_norm``.
    """
    if batch_norm and layer_norm:
        raise ValueError("build_mlp: batch_norm and layer_norm are exclusive")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers - 1):
        layers.append(nn.Linear(d, hidden))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.LeakyReLU(0.2))
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Image states (B, C, H, W) uint8 -> flat features (B, out_dim) float32 (paper appendix B.1).

    ``len(channels)`` conv layers of kernel ``kernel``, stride 2 and padding
    ``kernel // 2`` (each halves H and W, rounding up), each followed by
    LeakyReLU(0.2); the input is divided by 255 first (images are stored and
    replayed as uint8, 4x smaller than float32); the last feature map is
    flattened. Paper: 3 layers, kernel 3, channels (8, 16, 32); a 2 x 32 x 32
    input gives 32 x 4 x 4 = 512 features. No BatchNorm (the input range is
    fixed), so the encoder acts the same on one image as in a batch.

    Args:
        in_shape: (C, H, W) of one image.
        channels: output channels per conv layer.
        kernel: kernel size.

    Raises:
        ValueError: ``in_shape`` not 3 positive ints, empty ``channels`` or ``kernel < 1``.
    """

    def __init__(self, in_shape: tuple[int, int, int], channels: tuple[int, ...] = (8, 16, 32), kernel: int = 3):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise ValueError(f"ConvEncoder: in_shape must be (C, H, W) positive ints, got {in_shape}")
        if not channels or int(kernel) < 1:
            raise ValueError(f"ConvEncoder: needs >= 1 conv layer and kernel >= 1, got channels={channels}, kernel={kernel}")
        self.in_shape = in_shape
        layers: list[nn.Module] = []
        c = in_shape[0]
        for out in channels:
            layers += [nn.Conv2d(c, int(out), int(kernel), stride=2, padding=int(kernel) // 2), nn.LeakyReLU(0.2)]
            c = int(out)
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, *in_shape)).numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), uint8 or float in [0, 255] -> (B, out_dim) float32 (features in C, H, W order).

        The convolutions run on a channels-last copy of the input: the same
        numbers, but faster on CPU for these small channel counts
        (``python -m benchmarks.bench_image_learner``, "conv layout" rows: a
        forward + backward at batch 256 1.2-1.3x faster than channels-first);
        the flattened features keep the logical (C, H, W) order. Equals
        ``features(prepare(x))``.
        """
        return self.features(self.prepare(x))

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """Encoder input: x (B, C, H, W) uint8 or float in [0, 255] -> float32 in [0, 1], channels-last.

        Independent of the weights, so one prepared batch can feed several
        encoders (the SPiRL learner prepares ``obs`` and ``next_obs`` once per
        batch instead of once per network).

        A uint8 batch is reordered to channels-last while still uint8 (a quarter
        of the bytes to move), then converted and scaled in one op: bit for bit
        ``(x.float() / 255)`` made channels-last (``tests/test_image_prior.py``).
        Measured on the closed-loop image prior's training step (batch 128 x H
        = 1280 block-stacking images, 1 thread, 2026-11-30): 201 -> 167 ms;
        no difference on the RL learner's batch of 256.
        """
        if x.dtype == torch.uint8:
            return x.contiguous(memory_format=torch.channels_last) * (1.0 / 255.0)
        return (x.float() * (1.0 / 255.0)).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x from :meth:`prepare` (B, C, H, W) float in [0, 1] -> (B, out_dim) float32 features."""
        return self.net(x).flatten(1)


class GaussianMLP(nn.Module):
    """MLP mapping states (B, in_dim) to diagonal-Gaussian parameters (B, 2 * out_dim) = [mu, log_sigma].

    Used for the skill prior p(z|s) and, as a copy of it, the SPiRL policy
    (appendix B.2: "policy and critic mirror the skill prior"). With
    ``image_shape`` = (C, H, W) the input is uint8 images (B, C, H, W) passed
    through a :class:`ConvEncoder` first (appendix B.1); ``in_dim`` must then
    be C * H * W. Attributes ``in_shape`` (shape of one state) and ``in_dim``.

    Raises:
        ValueError: ``in_dim`` differs from the size of ``image_shape``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, n_layers: int = 6, batch_norm: bool = True,
                 image_shape: tuple[int, int, int] | None = None, conv_channels: tuple[int, ...] = (8, 16, 32),
                 conv_kernel: int = 3):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.encoder = None
        mlp_in = in_dim
        if image_shape is not None:
            image_shape = tuple(int(d) for d in image_shape)
            if in_dim != image_shape[0] * image_shape[1] * image_shape[2]:
                raise ValueError(f"GaussianMLP: in_dim={in_dim} is not the size of image_shape={image_shape}")
            self.encoder = ConvEncoder(image_shape, conv_channels, conv_kernel)
            mlp_in = self.encoder.out_dim
        self.in_shape = image_shape if image_shape is not None else (in_dim,)
        self.net = build_mlp(mlp_in, 2 * out_dim, hidden, n_layers, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            x = self.encoder(x)
        return self.head(x)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """The part after the conv encoder: features (B, encoder.out_dim) -> (B, 2 * out_dim) [mu, log_sigma].

        For vector states ``feats`` are the states (B, in_dim) and ``head`` is
        the whole network. ``forward(x) == head(encoder(x))``; callers that
        already hold the conv features (the SPiRL learner) skip the encoder.
        """
        mu, log_sigma = self.net(feats).chunk(2, dim=-1)
        return torch.cat([mu, log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)], dim=-1)

    def dist(self, x: torch.Tensor) -> Normal:
        """The Gaussian over z, batch shape (B, out_dim)."""
        return gaussian_from_params(self(x))


def gaussian_from_params(params: torch.Tensor) -> Normal:
    """Split (..., 2Z) [mu, log_sigma] into a ``Normal`` of batch shape (..., Z); log_sigma clamped to [-5, 2]."""
    mu, log_sigma = params.chunk(2, dim=-1)
    return Normal(mu, log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp())


class FrozenBatchNorm1d(nn.Module):
    """BatchNorm1d with its running statistics fixed (affine weight/bias stay trainable).

    The SPiRL policy starts as a copy of the prior including its BatchNorm
    layers; RL batches must not change those statistics (reference facts §1:
    "frozen BatchNorm statistics"), and a policy must act the same on a
    single state as in a batch.
    """

    def __init__(self, bn: nn.BatchNorm1d):
        super().__init__()
        self.eps = bn.eps
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return (x - self.running_mean) * scale + self.bias


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d`` inside ``module`` (in place) by ``FrozenBatchNorm1d``; returns it."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm1d):
            setattr(module, name, FrozenBatchNorm1d(child))
        else:
            freeze_batch_norm(child)
    return module


class SkillModel(nn.Module):
    """Skill VAE + skill prior, trained jointly with eq. 4 of the paper.

    Args:
        config: architecture and beta, see :class:`SkillModelConfig`.
    """

    def __init__(self, config: SkillModelConfig):
        super().__init__()
        self.config = c = config
        # closed loop on images: the conv features of s_t stand in for s_t in the encoder and decoder
        self.state_encoder = None
        state_in = c.obs_dim
        if c.decoder == "closed_loop" and c.image_shape is not None:
            self.state_encoder = ConvEncoder(c.image_shape, c.conv_channels, c.conv_kernel)
            state_in = self.state_encoder.out_dim
        if c.decoder != "flat":
            enc_in = c.action_dim + (state_in if c.decoder == "closed_loop" else 0)
            self.encoder = nn.LSTM(enc_in, c.lstm_hidden, batch_first=True)
            self.encoder_head = nn.Linear(c.lstm_hidden, 2 * c.latent_dim)
        if c.decoder == "open_loop":
            self.decoder_lstm = nn.LSTM(c.latent_dim, c.lstm_hidden, batch_first=True)
            self.decoder_head = nn.Linear(c.lstm_hidden, c.action_dim)
            if c.decoder_state_conditioned:
                # s_0 -> (h_0, c_0) of the decoder LSTM (appendix D); no BatchNorm: decoded one state at a time.
                self.decoder_init = build_mlp(c.obs_dim, 2 * c.lstm_hidden, c.decoder_hidden, 3, batch_norm=False)
        elif c.decoder == "closed_loop":
            self.decoder_mlp = build_mlp(state_in + c.latent_dim, c.action_dim, c.decoder_hidden, c.decoder_layers)
        self.prior = GaussianMLP(c.obs_dim, c.latent_dim, c.prior_hidden, c.prior_layers, batch_norm=True,
                                 image_shape=c.image_shape, conv_channels=c.conv_channels, conv_kernel=c.conv_kernel)

    # ---- closed-loop state input -----------------------------------------------------------
    def state_input(self, states: torch.Tensor) -> torch.Tensor:
        """What the closed-loop encoder and decoder read for states: (..., S) -> (..., S) unchanged for
        state vectors; images (..., C, H, W) uint8 (or flattened (..., C*H*W)) -> (..., F) conv features
        of ``state_encoder`` (F = its ``out_dim``, 512 at the paper's sizes).

        Raises:
            ValueError: image states of neither shape (..., C, H, W) nor (..., C*H*W).
        """
        if self.state_encoder is None:
            return states
        shape = tuple(self.config.image_shape)
        if tuple(states.shape[-3:]) == shape:
            lead = states.shape[:-3]
        elif states.shape[-1] == self.config.obs_dim:
            lead = states.shape[:-1]
        else:
            raise ValueError(f"the closed-loop image model reads states of shape (..., {', '.join(map(str, shape))}) "
                             f"or (..., {self.config.obs_dim}), got {tuple(states.shape)}")
        feats = self.state_encoder(states.reshape(-1, *shape))
        return feats.reshape(*lead, feats.shape[-1])

    # ---- posterior q(z | a) -------------------------------------------------------------
    def posterior(self, actions: torch.Tensor, states: torch.Tensor | None = None,
                  state_features: torch.Tensor | None = None) -> Normal:
        """q(z | a_{0:H-1}[, s_{0:H-1}]): actions (B, H, A), states (B, >=H, S) -> Normal, batch (B, Z).

        Closed loop reads the first H states (images: (B, >=H, C, H, W), through ``state_encoder``),
        or their :meth:`state_input` ``state_features`` (B, H, S or F) when given.
        """
        x = actions
        if self.config.decoder == "closed_loop":
            if state_features is None:
                if states is None:
                    raise ValueError("the closed-loop skill encoder needs `states` (B, H, S)")
                state_features = self.state_input(states[:, : actions.shape[1]]).float()
            x = torch.cat([actions, state_features], dim=-1)
        _, (h, _) = self.encoder(x)
        return gaussian_from_params(self.encoder_head(h[-1]))

    # ---- decoder p(a | z[, s]) ----------------------------------------------------------
    def decode(self, z: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """Open loop: z (B, Z) [, s_0 (B, S)] -> actions (B, H, A), all H steps at once.

        ``state`` is required (and only read) with ``decoder_state_conditioned``.
        """
        c = self.config
        if c.decoder != "open_loop":
            raise ValueError("decode() is the open-loop decoder; use decode_step() for closed loop")
        inp = z.unsqueeze(1).expand(-1, c.horizon, -1)
        hc = None
        if c.decoder_state_conditioned:
            if state is None:
                raise ValueError("the state-conditioned decoder needs the skill's first state `state` (B, S)")
            h0, c0 = self.decoder_init(state).unsqueeze(0).chunk(2, dim=-1)
            hc = (h0.contiguous(), c0.contiguous())
        out, _ = self.decoder_lstm(inp, hc)
        return self.decoder_head(out)

    def decode_step(self, z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Closed loop: z (B, Z), state (B, S) (images: (B, C, H, W) uint8) -> action (B, A) for one env step."""
        if self.config.decoder != "closed_loop":
            raise ValueError("decode_step() is the closed-loop decoder; use decode() for open loop")
        return self.decode_features(z, self.state_input(state).float())

    def decode_features(self, z: torch.Tensor, state_features: torch.Tensor) -> torch.Tensor:
        """Closed loop from :meth:`state_input` output: z (B, Z), (B, S or F) -> action (B, A)."""
        return self.decoder_mlp(torch.cat([state_features, z], dim=-1))

    def reconstruct(self, z: torch.Tensor, states: torch.Tensor,
                    state_features: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded actions (B, H, A) for training: closed loop reads the data's states (B, >=H, S)
        (or their :meth:`state_input` ``state_features`` (B, H, S or F) when given)."""
        if self.config.decoder == "open_loop":
            return self.decode(z, states[:, 0])
        b, h = z.shape[0], self.config.horizon
        if state_features is None:
            state_features = self.state_input(states[:, :h]).float()
        f = state_features.reshape(b * h, -1)
        zz = z.unsqueeze(1).expand(-1, h, -1).reshape(b * h, -1)
        return self.decode_features(zz, f).reshape(b, h, -1)

    # ---- loss (eq. 4) ------------------------------------------------------------------
    def loss(self, states: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 4: reconstruction + beta * KL(q || N(0,I)) + KL(stopgrad(q) || p(z|s_0)).

        Every term is a per-element mean, as in the reference implementation
        (so beta = 5e-4 weighs the same as there): the reconstruction is the
        unit-variance Gaussian NLL 0.5 (a - a_hat)^2 (up to a constant)
        averaged over B, H and A; both KLs are averaged over B and the Z latent
        dims.

        Args:
            states: (B, H+1, S) float; states[:, t] is the state action t was taken in.
                With ``image_shape``: (B, H+1, C, H, W) uint8 images (open loop: only
                ``states[:, 0]`` is read, by the prior; closed loop also reads the
                first H through ``state_encoder``).
            actions: (B, H, A) float.

        Returns:
            dict with ``loss`` (scalar to minimise) and the detached terms
            ``reconstruction``, ``mse`` (mean squared error per action element),
            ``kl`` (q vs N(0,I), nats per latent dim) and ``prior_loss``
            (analytic KL of the detached posterior to the prior, nats per latent dim).
            ``decoder='flat'``: ``prior_loss`` = ``loss`` is the NLL of
            atanh(a_0) under p(u|s_0) (nats per action dim), ``mse`` that of
            tanh(prior mean) vs a_0, ``kl`` = ``reconstruction`` = 0.
        """
        if self.config.decoder == "flat":
            return self._flat_loss(states, actions)
        feats = None  # closed loop: the first H states as the encoder and decoder read them, computed once
        if self.config.decoder == "closed_loop":
            feats = self.state_input(states[:, : actions.shape[1]]).float()
        q = self.posterior(actions, states, state_features=feats)
        z = q.rsample()
        a_hat = self.reconstruct(z, states, state_features=feats)
        mse = (a_hat - actions).pow(2).mean()
        rec = 0.5 * mse
        kl = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))).mean()
        q_detached = Normal(q.loc.detach(), q.scale.detach())
        prior_loss = kl_divergence(q_detached, self.prior.dist(states[:, 0])).mean()
        loss = rec + self.config.beta * kl + prior_loss
        return {
            "loss": loss,
            "reconstruction": rec.detach(),
            "mse": mse.detach(),
            "kl": kl.detach(),
            "prior_loss": prior_loss.detach(),
        }

    def _flat_loss(self, states: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maximum likelihood of u = atanh(a_0) under p(u | s_0) (the Flat Prior / BC model)."""
        a0 = actions[:, 0].clamp(-FLAT_ACTION_CLIP, FLAT_ACTION_CLIP)
        p = self.prior.dist(states[:, 0])
        nll = -p.log_prob(torch.atanh(a0)).mean()
        mse = (torch.tanh(p.loc) - actions[:, 0]).pow(2).mean()
        zero = torch.zeros((), device=actions.device)
        return {"loss": nll, "reconstruction": zero, "mse": mse.detach(), "kl": zero, "prior_loss": nll.detach()}
