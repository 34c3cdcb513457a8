"""The skill env: a gymnasium wrapper whose action is a skill z (paper §3.3).

One high-level step = decode z with the frozen skill decoder and execute up to
H low-level env steps, summing their rewards (the H-step reward r~ of Alg. 1).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from spirl_ray.skills.models import SkillModel


def numpy_mlp(mlp: torch.nn.Sequential) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Fold an eval-mode ``build_mlp`` network (Linear [BatchNorm1d] LeakyReLU(0.2) ... Linear) into numpy layers.

    Returns ``[(W (in, out), b (out,), leaky), ...]``; BatchNorm running statistics
    are folded into the preceding linear layer. A single-state forward in numpy
    costs ~30 µs against ~170 µs in torch (closed-loop decoding runs once per env step).

    Raises:
        TypeError: a layer other than Linear, BatchNorm1d or LeakyReLU(0.2).
    """
    layers: list[list] = []
    for mod in mlp:
        if isinstance(mod, torch.nn.Linear):
            layers.append([mod.weight.detach().numpy().T.astype(np.float64), mod.bias.detach().numpy().astype(np.float64), False])
        elif isinstance(mod, torch.nn.BatchNorm1d):
            scale = (mod.weight / torch.sqrt(mod.running_var + mod.eps)).detach().numpy().astype(np.float64)
            shift = (mod.bias - mod.running_mean * mod.weight / torch.sqrt(mod.running_var + mod.eps)).detach().numpy()
            layers[-1][0] = layers[-1][0] * scale
            layers[-1][1] = layers[-1][1] * scale + shift
        elif isinstance(mod, torch.nn.LeakyReLU) and mod.negative_slope == 0.2:
            layers[-1][2] = True
        else:
            raise TypeError(f"numpy_mlp: unsupported layer {mod!r}")
    return [(w.astype(np.float32), b.astype(np.float32), leaky) for w, b, leaky in layers]


def run_numpy_mlp(layers: list[tuple[np.ndarray, np.ndarray, bool]], x: np.ndarray) -> np.ndarray:
    """Forward of :func:`numpy_mlp` layers on x (..., in) -> (..., out)."""
    for w, b, leaky in layers:
        x = x @ w + b
        if leaky:
            x = np.where(x > 0, x, 0.2 * x)
    return x


class SkillEnv(gym.Wrapper):
    """Executes skills z in Box(-z_bound, z_bound, (|Z|,)) on a low-level env.

    Open-loop decoder: the H actions are decoded at once from z. Closed-loop
    decoder: each action is decoded from [s_t, z] on the current state.
    Decoded actions are clipped to the low-level action space.

    Args:
        env: low-level env with a Box observation: a flat state vector, or
            (C, H, W) uint8 images for a model with ``image_shape`` (the
            prior reads them; the open-loop decoder reads no state; the
            closed-loop decoder reads its ``state_encoder``'s conv features of
            each env step's image, one torch conv call per env step).
        skill_model: trained :class:`SkillModel`; used frozen, in eval mode, on CPU.
        z_bound: skill action bound; the paper squashes to [-2, 2] (appendix B.2).

    ``info`` of a step is the last low-level ``info`` plus ``env_steps``: the
    number of low-level env steps executed (H unless the episode ended early).
    Episode length in RLlib counts high-level steps; ``env_steps`` is how
    results are plotted against env steps, the paper's x axis. When the
    low-level env reports a position ``info["xy"]`` (the maze), ``info`` also
    holds ``xy_trace``: (env_steps, 2) float32, the position after every
    low-level step of the skill (exploration maps, paper Fig. 5 / Fig. 13).
    """

    def __init__(self, env: gym.Env, skill_model: SkillModel, z_bound: float = 2.0):
        super().__init__(env)
        cfg = skill_model.config
        if tuple(env.observation_space.shape) != cfg.obs_shape:
            raise ValueError(
                f"skill model expects states of shape {cfg.obs_shape} but the env observes "
                f"{env.observation_space.shape}; check the env's state_layout / state (image or vector) "
                "vs the prior's dataset"
            )
        if env.action_space.shape != (cfg.action_dim,):
            raise ValueError(f"skill model decodes {cfg.action_dim}-d actions but the env takes {env.action_space.shape}")
        if cfg.decoder == "flat":
            raise ValueError("a 'flat' action prior has no skill decoder; use the low-level env directly")
        self.model = skill_model.cpu().eval().requires_grad_(False)
        self.state_conditioned = bool(cfg.decoder_state_conditioned)
        self.horizon = cfg.horizon
        self.closed_loop = cfg.decoder == "closed_loop"
        self.action_space = gym.spaces.Box(-z_bound, z_bound, (cfg.latent_dim,), np.float32)
        self._low = np.asarray(env.action_space.low, np.float32)
        self._high = np.asarray(env.action_space.high, np.float32)
        self._obs: np.ndarray | None = None
        self._decoder_np = numpy_mlp(self.model.decoder_mlp) if self.closed_loop else None
        self._image_states = self.model.state_encoder is not None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        info = dict(info, env_steps=0)
        return obs, info

    @torch.inference_mode()
    def step(self, z: np.ndarray):
        z_np = np.asarray(z, np.float32).reshape(-1)
        if not self.closed_loop:
            s0 = torch.as_tensor(np.asarray(self._obs, np.float32))[None] if self.state_conditioned else None
            actions = np.clip(self.model.decode(torch.as_tensor(z_np)[None], s0)[0].numpy(), self._low, self._high)
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        obs = self._obs
        k = 0
        trace: list | None = None
        for k in range(1, self.horizon + 1):
            if self.closed_loop:  # decode_step(z, s_t) in numpy, BatchNorm folded (same numbers)
                if self._image_states:  # the decoder's own conv features of the image s_t
                    s_t = self.model.state_input(torch.as_tensor(np.asarray(obs))[None])[0].numpy()
                else:
                    s_t = np.asarray(obs, np.float32).reshape(-1)
                x = np.concatenate([s_t, z_np])
                action = np.clip(run_numpy_mlp(self._decoder_np, x), self._low, self._high)
            else:
                action = actions[k - 1]
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if "xy" in info:
                if trace is None:
                    trace = []
                trace.append(info["xy"])
            if terminated or truncated:
                break
        self._obs = obs
        info = dict(info, env_steps=k)
        if trace is not None:
            info["xy_trace"] = np.asarray(trace, np.float32).reshape(-1, 2)
        return obs, total_reward, terminated, truncated, info
