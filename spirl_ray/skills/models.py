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
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch.distributions import Normal, kl_divergence

#: log-sigma range of every Gaussian head (the range RLlib's squashed Gaussian uses).
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -5.0, 2.0
#: |a| bound before atanh for the flat prior (actions at the box edge would map to infinity).
FLAT_ACTION_CLIP = 0.995


class SkillModelConfig(BaseModel):
    """Architecture and loss weights of the skill model (appendix B.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    obs_dim: PositiveInt = Field(description="state dim S the prior (and closed-loop parts) read")
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
    beta: float = Field(5e-4, ge=0, description="weight of KL(q || N(0, I)); kitchen 5e-4, maze/blocks 1e-2")

    @model_validator(mode="after")
    def _check_kind(self) -> "SkillModelConfig":
        if self.decoder == "flat" and (self.horizon != 1 or self.latent_dim != self.action_dim):
            raise ValueError(
                f"decoder='flat' (single-step action prior) needs horizon=1 and latent_dim=action_dim="
                f"{self.action_dim}, got horizon={self.horizon}, latent_dim={self.latent_dim}"
            )
        if self.decoder_state_conditioned and self.decoder != "open_loop":
            raise ValueError("decoder_state_conditioned applies to decoder='open_loop' only (appendix D)")
        return self


def build_mlp(in_dim: int, out_dim: int, hidden: int, n_layers: int, batch_norm: bool = True) -> nn.Sequential:
    """``n_layers`` linear layers; each but the last followed by [BatchNorm1d] + LeakyReLU(0.2)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers - 1):
        layers.append(nn.Linear(d, hidden))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.LeakyReLU(0.2))
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class GaussianMLP(nn.Module):
    """MLP mapping (B, in_dim) to diagonal-Gaussian parameters (B, 2 * out_dim) = [mu, log_sigma].

    Used for the skill prior p(z|s) and, as a copy of it, the SPiRL policy
    (appendix B.2: "policy and critic mirror the skill prior").
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, n_layers: int = 6, batch_norm: bool = True):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = build_mlp(in_dim, 2 * out_dim, hidden, n_layers, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self.net(x).chunk(2, dim=-1)
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
        if c.decoder != "flat":
            enc_in = c.action_dim + (c.obs_dim if c.decoder == "closed_loop" else 0)
            self.encoder = nn.LSTM(enc_in, c.lstm_hidden, batch_first=True)
            self.encoder_head = nn.Linear(c.lstm_hidden, 2 * c.latent_dim)
        if c.decoder == "open_loop":
            self.decoder_lstm = nn.LSTM(c.latent_dim, c.lstm_hidden, batch_first=True)
            self.decoder_head = nn.Linear(c.lstm_hidden, c.action_dim)
            if c.decoder_state_conditioned:
                # s_0 -> (h_0, c_0) of the decoder LSTM (appendix D); no BatchNorm: decoded one state at a time.
                self.decoder_init = build_mlp(c.obs_dim, 2 * c.lstm_hidden, c.decoder_hidden, 3, batch_norm=False)
        elif c.decoder == "closed_loop":
            self.decoder_mlp = build_mlp(c.obs_dim + c.latent_dim, c.action_dim, c.decoder_hidden, c.decoder_layers)
        self.prior = GaussianMLP(c.obs_dim, c.latent_dim, c.prior_hidden, c.prior_layers, batch_norm=True)

    # ---- posterior q(z | a) -------------------------------------------------------------
    def posterior(self, actions: torch.Tensor, states: torch.Tensor | None = None) -> Normal:
        """q(z | a_{0:H-1}[, s_{0:H-1}]): actions (B, H, A), states (B, >=H, S) -> Normal, batch (B, Z)."""
        x = actions
        if self.config.decoder == "closed_loop":
            if states is None:
                raise ValueError("the closed-loop skill encoder needs `states` (B, H, S)")
            x = torch.cat([actions, states[:, : actions.shape[1]]], dim=-1)
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
        """Closed loop: z (B, Z), state (B, S) -> action (B, A) for one env step."""
        if self.config.decoder != "closed_loop":
            raise ValueError("decode_step() is the closed-loop decoder; use decode() for open loop")
        return self.decoder_mlp(torch.cat([state, z], dim=-1))

    def reconstruct(self, z: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Decoded actions (B, H, A) for training: closed loop reads the data's states (B, >=H, S)."""
        if self.config.decoder == "open_loop":
            return self.decode(z, states[:, 0])
        b, h = z.shape[0], self.config.horizon
        s = states[:, :h].reshape(b * h, -1)
        zz = z.unsqueeze(1).expand(-1, h, -1).reshape(b * h, -1)
        return self.decode_step(zz, s).reshape(b, h, -1)

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
        q = self.posterior(actions, states)
        z = q.rsample()
        a_hat = self.reconstruct(z, states)
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
