"""SPiRL learner: RLlib's SAC learner with the entropy term replaced by D_KL(π ‖ p) (Algorithm 1).

Only ``_compute_loss_for_module_continuous`` differs from ``SACTorchLearner``;
the loss terms themselves are the pure functions of
:mod:`spirl_ray.rl.spirl.losses`. Switches (from the algorithm config):

* ``use_skill_prior=True``  — SPiRL: KL to the learned prior, α tuned towards δ.
* ``use_skill_prior=False`` — entropy-regularised SAC in skill space (SSP w/o
  prior; with ``init_policy_from_prior`` also "PriorInit + SAC"): the KL is
  replaced by log π(z|s) of the squashed action and α is tuned towards
  RLlib's ``target_entropy`` (default −|Z|).

Also: α (``curr_log_alpha``) is saved/restored with the learner state,
which RLlib's SAC learner does not do; with ``alpha_min`` set, log α is clamped
to ≥ log(alpha_min) after every gradient step (both paths below).

Fast path (``learner_fast_path=True``, the default): ``update()`` called with a
batch of K x ``minibatch_size`` transitions and ``num_epochs=1`` (what
:meth:`SPiRL.training_step <spirl_ray.rl.spirl.spirl.SPiRL.training_step>`
sends) takes K gradient steps on the consecutive minibatches in one call, each
step exactly Algorithm 1 lines 8-12 including the target-network polyak
update (τ per gradient step, not once per call as RLlib's minibatch loop
would). Per step it skips only bookkeeping that does not change the result:

* the module's forward pass (``_forward_train``; the train mode that
  ``forward_train`` re-applies per call is set once) and the loss function above
  run as in RLlib's path (same random draws in the same order);
* one ``backward()`` of the summed losses instead of one per optimizer: every
  loss reaches only its own optimizer's parameters (critic targets, α in the
  actor/critic terms and the KL in the α loss are detached; ``q_curr`` runs
  with frozen critic parameters), so each parameter receives the same gradient;
* the non-finite-gradient check is one fused norm instead of one per
  parameter; RLlib's per-parameter handling runs only when it fails;
* the polyak update works in place on the parameter tensors (same formula,
  τ·θ + (1 − τ)·θ̄) instead of building and loading a new state dict;
* loss statistics are logged for the last step only (RLlib logs them with
  window 1, i.e. keeps the last value anyway); step counters count all K steps;
* the four Adam optimizers use torch's fused kernel (same update, float
  rounding differs at ~1e-8).

``tests/test_fast_path.py`` checks that both paths compute the same losses and
parameters. Anything the fast path does not cover (gradient clipping,
grad scalers, torch LR schedulers, several modules, episodes input, several
epochs) falls back to RLlib's ``Learner.update``.

Threads: a local learner (``num_learners=0``) sets torch's intra-op thread
count to ``learner_torch_threads`` (default: the CPUs reserved for the main
process, ``num_cpus_for_main_process``, i.e. 1) when it is built.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from ray.rllib.algorithms.dqn.dqn_learner import LAST_TARGET_UPDATE_TS, NUM_TARGET_UPDATES, DQNLearner
from ray.rllib.algorithms.sac.sac_learner import QF_LOSS_KEY, QF_PREDS, QF_TWIN_LOSS_KEY, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.sac_torch_learner import SACTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.policy.sample_batch import MultiAgentBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    MODULE_TRAIN_BATCH_SIZE_MEAN,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.typing import ModuleID, ResultDict, StateDict, TensorType

from spirl_ray.rl.spirl import losses
from spirl_ray.rl.spirl.rl_module import (
    CRITIC_STATE,
    CRITIC_STATE_NEXT,
    PRIOR_DIST_INPUTS,
    PRIOR_DIST_INPUTS_NEXT,
    PRIOR_FEATURES,
    PRIOR_FEATURES_NEXT,
)

#: learner-state key holding {module_id: log α}.
LOG_ALPHA_STATE_KEY = "curr_log_alpha"

logger = logging.getLogger(__name__)


class SPiRLTorchLearner(SACTorchLearner):
    """SAC learner regularising towards the learned skill prior (Pertsch et al. 2020, Algorithm 1)."""

    #: log the loss statistics in ``_compute_loss_for_module_continuous`` (the fast path sets it
    #: for the last gradient step of a call only).
    _log_loss_stats: bool = True

    @override(SACTorchLearner)
    def build(self) -> None:
        threads = _learner_torch_threads(self.config)
        if threads:
            torch.set_num_threads(threads)
        super().build()

    @override(SACTorchLearner)
    def configure_optimizers_for_module(self, module_id: ModuleID, config: Any = None) -> None:
        """SAC's four Adam optimizers; with the fast path they use torch's fused Adam kernel.

        Fused Adam does the same update in one kernel per parameter tensor instead of
        ~10 small ops (measured 0.8 vs 2.7 ms per step for SPiRL's nets on one core);
        results agree with the for-loop kernel to float rounding (~1e-8).
        """
        super().configure_optimizers_for_module(module_id, config)
        if getattr(self.config, "learner_fast_path", False):
            for _, opt in self.get_optimizers_for_module(module_id):
                _use_fused_adam(opt)

    @override(SACTorchLearner)
    def _compute_loss_for_module_continuous(
        self,
        *,
        module_id: ModuleID,
        config: Any,
        batch: Dict[str, Any],
        fwd_out: Dict[str, TensorType],
    ) -> TensorType:
        log_alpha = self.curr_log_alpha[module_id]
        alpha = log_alpha.exp()

        if config.use_skill_prior:
            # D_KL(π(·|s) ‖ p(·|s)) with gradient into π; at s' for the target (no gradient).
            est = dict(estimator=config.kl_estimator, n_samples=config.kl_samples, reduction=config.kl_reduction)
            kl = losses.kl_to_prior(fwd_out[Columns.ACTION_DIST_INPUTS], fwd_out[PRIOR_DIST_INPUTS], **est)
            with torch.no_grad():
                kl_next = losses.kl_to_prior(fwd_out["action_dist_inputs_next"], fwd_out[PRIOR_DIST_INPUTS_NEXT], **est)
            delta = float(config.target_divergence)
        else:
            # Uniform prior: the KL becomes log π(z|s) of the squashed sample (standard SAC entropy).
            kl, kl_next = fwd_out["logp_resampled"], fwd_out["logp_next_resampled"].detach()
            delta = -float(self.target_entropy[module_id])

        # Algorithm 1 line 8: Q̄ = r + γ(1−d)[min Q̄(s', z') − α KL(s')]  (q_target_next is already the twin min).
        gamma = config.gamma ** batch["n_step"] if "n_step" in batch else config.gamma
        q_target = losses.critic_target(
            batch[Columns.REWARDS], batch[Columns.TERMINATEDS], gamma, fwd_out["q_target_next"], alpha, kl_next
        )
        # Line 10: ½(Q_φ − Q̄)² for each critic.
        weights = batch.get("weights")
        q_pred = fwd_out[QF_PREDS]
        qf_loss = losses.critic_loss(q_pred, q_target, weights)
        if config.twin_q:
            q_twin = fwd_out[QF_TWIN_PREDS]
            qf_twin_loss = losses.critic_loss(q_twin, q_target, weights)
        # Line 9: α KL(s) − min Q(s, z̃), z̃ ~ π reparameterised ("q_curr": critics frozen, min of twins).
        pi_loss = losses.actor_loss(fwd_out["q_curr"], alpha, kl)
        # Line 11: log α · (δ − KL).
        a_loss = losses.alpha_loss(log_alpha, kl, delta)

        total = pi_loss + qf_loss + a_loss
        self._temp_losses[(module_id, POLICY_LOSS_KEY)] = pi_loss
        self._temp_losses[(module_id, QF_LOSS_KEY)] = qf_loss
        self._temp_losses[(module_id, "alpha_loss")] = a_loss
        if config.twin_q:
            self._temp_losses[(module_id, QF_TWIN_LOSS_KEY)] = qf_twin_loss
            total = total + qf_twin_loss

        if not self._log_loss_stats:
            return total
        with torch.no_grad():
            td_error = (q_pred - q_target).abs()
            if config.twin_q:
                td_error = 0.5 * (td_error + (q_twin - q_target).abs())
        stats = {
            POLICY_LOSS_KEY: pi_loss,
            QF_LOSS_KEY: qf_loss,
            "alpha_loss": a_loss,
            "alpha_value": alpha[0],
            "log_alpha_value": log_alpha[0],
            "kl_to_prior" if config.use_skill_prior else "logps": kl.mean(),
            "target_divergence": torch.tensor(delta),
            "qf_mean": fwd_out["q_curr"].mean(),
            "qf_target_mean": q_target.mean(),
            "td_error_mean": td_error.mean(),
        }
        if config.twin_q:
            stats[QF_TWIN_LOSS_KEY] = qf_twin_loss
        self.metrics.log_dict({k: v.detach() for k, v in stats.items()}, key=module_id, window=1)
        return total

    # ---- α floor -------------------------------------------------------------------------
    @override(SACTorchLearner)
    def apply_gradients(self, gradients_dict) -> None:
        super().apply_gradients(gradients_dict)
        self._clamp_log_alpha()

    def _clamp_log_alpha(self) -> None:
        """log α ← max(log α, log alpha_min) in place (the α optimizer holds this tensor); no-op without a floor."""
        floor = getattr(self.config, "alpha_min", None)
        if floor is None:
            return
        with torch.no_grad():
            for log_alpha in self.curr_log_alpha.values():
                log_alpha.clamp_(min=float(np.log(floor)))

    # ---- α in checkpoints ---------------------------------------------------------------
    @override(SACTorchLearner)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> StateDict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(LOG_ALPHA_STATE_KEY, components, not_components):
            state[LOG_ALPHA_STATE_KEY] = {
                mid: float(t.detach().cpu().reshape(-1)[0]) for mid, t in self.curr_log_alpha.items()
            }
        return state

    @override(SACTorchLearner)
    def set_state(self, state: StateDict) -> None:
        self._fast_lists_cache = None
        super().set_state(state)
        for mid, value in (state.get(LOG_ALPHA_STATE_KEY) or {}).items():
            # In place: the alpha optimizer holds a reference to this very tensor.
            with torch.no_grad():
                self.curr_log_alpha[mid].fill_(float(value))

    # ---- fast path: K gradient steps per update() call ------------------------------------
    @override(SACTorchLearner)
    def update(
        self,
        batch: Optional[MultiAgentBatch] = None,
        batches=None,
        batch_refs=None,
        episodes=None,
        episodes_refs=None,
        data_iterators=None,
        training_data: Optional[TrainingData] = None,
        *,
        timesteps: Optional[Dict[str, Any]] = None,
        num_total_minibatches: int = 0,
        num_epochs: int = 1,
        minibatch_size: Optional[int] = None,
        shuffle_batch_per_epoch: bool = False,
        _no_metrics_reduce: bool = False,
        **kwargs,
    ) -> ResultDict:
        """RLlib's ``Learner.update``; K sequential Algorithm-1 steps when the fast path applies.

        The fast path runs for ``minibatch_size`` set, ``num_epochs == 1`` and a
        single-module batch of exactly K x ``minibatch_size`` rows: minibatch k is
        rows [k·B, (k+1)·B) (the rows are uniform replay samples, so no shuffling).
        """
        if training_data is None:
            training_data = TrainingData(
                batch=batch, batches=batches, batch_refs=batch_refs, episodes=episodes,
                episodes_refs=episodes_refs, data_iterators=data_iterators,
            )
        split = (
            getattr(self.config, "learner_fast_path", False)
            and minibatch_size
            and num_epochs == 1
            and not kwargs
            and training_data.episodes is None
            and training_data.episodes_refs is None
            and training_data.data_iterators is None
        )
        if split:
            training_data.validate()
            training_data.solve_refs()
            ma_batch = training_data.batch
            split = _is_multiple_of(ma_batch, minibatch_size)
        if not split:
            return super().update(
                training_data=training_data, timesteps=timesteps, num_total_minibatches=num_total_minibatches,
                num_epochs=num_epochs, minibatch_size=minibatch_size,
                shuffle_batch_per_epoch=shuffle_batch_per_epoch, _no_metrics_reduce=_no_metrics_reduce, **kwargs,
            )
        if self._fast_path_applies(ma_batch):
            self._fast_update(ma_batch, timesteps or {}, int(minibatch_size))
        else:
            # Not covered by the fast path (gradient clipping, grad scalers, LR schedulers, DDP):
            # RLlib's own update() once per minibatch, so the target update still follows every step.
            (mid, module_batch), = ma_batch.policy_batches.items()
            for start in range(0, len(module_batch), minibatch_size):
                mb = MultiAgentBatch({mid: module_batch.slice(start, start + minibatch_size)}, env_steps=minibatch_size)
                super().update(batch=mb, timesteps=timesteps, _no_metrics_reduce=True)
        if not _no_metrics_reduce:
            return self.metrics.reduce()

    def _fast_path_applies(self, ma_batch: MultiAgentBatch) -> bool:
        (mid, _), = ma_batch.policy_batches.items()
        return (
            mid in self.module.keys()
            and self.config.grad_clip is None
            and self._grad_scalers is None
            and not self._lr_scheduler_classes
            and self.config.num_learners <= 1
        )

    def _fast_update(self, ma_batch: MultiAgentBatch, timesteps: Dict[str, Any], minibatch_size: int) -> None:
        self._check_is_built()
        self.before_gradient_based_update(timesteps=timesteps)
        (mid, module_batch), = ma_batch.policy_batches.items()
        if not self.should_module_be_updated(mid, ma_batch):
            return
        self._weights_seq_no += 1
        module = self.module[mid]
        config = self.config.get_config_for_module(mid)
        cols = {k: _as_tensor(v, self._device) for k, v in module_batch.items() if k in _TRAIN_COLUMNS}
        n_steps = len(module_batch) // minibatch_size
        if module.inference_only:
            raise RuntimeError("SPiRL learner: cannot train an inference_only module")
        if not (module.training and module.pi.training and module.qf.training):
            module.train()  # what RLModule.forward_train does on every call; nothing switches it back in the loop
        optims, params, targets, mains = self._fast_lists(mid, module)
        timestep = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        n_target_updates = 0
        loss = None
        try:
            for k in range(n_steps):
                self._log_loss_stats = k == n_steps - 1
                mb = {c: t[k * minibatch_size:(k + 1) * minibatch_size] for c, t in cols.items()}
                fwd_out = module._forward_train(mb)  # = forward_train() minus its per-call train()
                loss = self.compute_loss_for_module(module_id=mid, config=config, batch=mb, fwd_out=fwd_out)
                self._temp_losses.clear()
                for opt in optims:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                self._check_finite_gradients(params)
                for opt in optims:
                    opt.step()
                self._clamp_log_alpha()
                if timestep - self.last_update_ts_by_mid[mid] >= config.target_network_update_freq:
                    _polyak(targets, mains, config.tau)
                    n_target_updates += 1
                    self.last_update_ts_by_mid[mid] = timestep
        finally:
            self._log_loss_stats = True
        # ---- once per call: the bookkeeping RLlib does per update() / minibatch ----
        self.metrics.log_value((mid, self.TOTAL_LOSS_KEY), loss.detach(), window=1)
        if n_target_updates:
            self.metrics.log_value((mid, NUM_TARGET_UPDATES), n_target_updates, reduce="lifetime_sum")
            self.metrics.log_value((mid, LAST_TARGET_UPDATE_TS), timestep, reduce="max")
        self._log_fast_steps_trained(mid, minibatch_size, n_steps, ma_batch.env_steps())
        self._log_metrics(batch=ma_batch)
        # Learner/TorchLearner part of after_gradient_based_update (LR schedules, LR logging);
        # DQNLearner's once-per-call target update is skipped: it ran after every step above.
        super(DQNLearner, self).after_gradient_based_update(timesteps=timesteps)

    def _check_finite_gradients(self, params: List[torch.nn.Parameter]) -> None:
        """RLlib's non-finite gradient handling (``apply_gradients``) behind one fused check."""
        if self.config.torch_skip_nan_gradients:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
            return
        for p in params:  # rare: same per-parameter handling as TorchLearner.apply_gradients
            if p.grad is not None and not torch.isfinite(p.grad).all():
                logger.warning("Gradients contain `nan/inf` values; setting them to zero.")
                p.grad = torch.nan_to_num(p.grad)

    def _fast_lists(self, mid: ModuleID, module) -> Tuple[list, list, list, list]:
        """(optimizers, their parameters, target tensors, main tensors) of ``mid``, cached.

        The target/main tensors are the state-dict views of the target-network pairs; the
        polyak update writes into them in place. ``set_state`` loads weights in place as
        well, so the views stay valid; the cache is dropped whenever the module object or
        the optimizers change.
        """
        key = (mid, id(module), tuple(id(o) for _, o in self.get_optimizers_for_module(mid)))
        cache = getattr(self, "_fast_lists_cache", None)
        if cache is None or cache[0] != key:
            optims = [opt for _, opt in self.get_optimizers_for_module(mid)]
            params = [p for opt in optims for g in opt.param_groups for p in g["params"]]
            targets, mains = [], []
            for main_net, target_net in module.get_target_network_pairs():
                main_sd, target_sd = main_net.state_dict(), target_net.state_dict()
                for name, t in target_sd.items():
                    targets.append(t)
                    mains.append(main_sd[name])
            cache = self._fast_lists_cache = (key, (optims, params, targets, mains))
        return cache[1]

    def _log_fast_steps_trained(self, mid: ModuleID, minibatch_size: int, n_steps: int, env_steps: int) -> None:
        """``Learner._log_steps_trained_metrics`` for n_steps minibatches of ``minibatch_size`` rows."""
        n = minibatch_size * n_steps
        self.metrics.log_value((mid, WEIGHTS_SEQ_NO), self._weights_seq_no, window=1)
        self.metrics.log_value(key=(mid, MODULE_TRAIN_BATCH_SIZE_MEAN), value=minibatch_size, reduce="mean")
        self.metrics.log_value(key=(mid, NUM_MODULE_STEPS_TRAINED), value=n, reduce="sum")
        self.metrics.log_value(key=(mid, NUM_MODULE_STEPS_TRAINED_LIFETIME), value=n, reduce="lifetime_sum",
                               with_throughput=True)
        self.metrics.log_value(key=(ALL_MODULES, NUM_MODULE_STEPS_TRAINED), value=n, reduce="sum", with_throughput=True)
        self.metrics.log_value(key=(ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), value=n, reduce="lifetime_sum",
                               with_throughput=True)
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED), env_steps, reduce="sum", with_throughput=True)
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), env_steps, reduce="lifetime_sum",
                               with_throughput=True)


def _is_multiple_of(ma_batch: Any, minibatch_size: int) -> bool:
    """A single-module ``MultiAgentBatch`` of K x ``minibatch_size`` rows (K >= 1)."""
    if not isinstance(ma_batch, MultiAgentBatch) or len(ma_batch.policy_batches) != 1:
        return False
    n = len(next(iter(ma_batch.policy_batches.values())))
    return n > 0 and n % minibatch_size == 0


#: batch columns the SPiRL forward and loss read (the prior features: the replay's cache, when on; the critic
#: state: the asymmetric critic's input, when on).
_TRAIN_COLUMNS = (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.NEXT_OBS, Columns.TERMINATEDS, "weights",
                  "n_step", PRIOR_FEATURES, PRIOR_FEATURES_NEXT, CRITIC_STATE, CRITIC_STATE_NEXT)


def _use_fused_adam(opt: torch.optim.Optimizer) -> None:
    """Switch a (not yet stepped) ``torch.optim.Adam`` to the fused kernel when its device supports it."""
    if not isinstance(opt, torch.optim.Adam) or opt.state:
        return
    params = [p for g in opt.param_groups for p in g["params"]]
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        supported = _get_fused_kernels_supported_devices()
    except ImportError:  # pragma: no cover - torch versions without fused CPU Adam
        return
    if not params or any(p.device.type not in supported or not p.is_floating_point() for p in params):
        return
    for group in (opt.defaults, *opt.param_groups):
        group["fused"], group["foreach"] = True, False
    opt._step_supports_amp_scaling = True


def _as_tensor(value: Any, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return torch.from_numpy(np.ascontiguousarray(value)).to(device)


@torch.no_grad()
def _polyak(targets: List[torch.Tensor], mains: List[torch.Tensor], tau: float) -> None:
    """θ̄ ← τ·θ + (1 − τ)·θ̄ in place; the same float ops as RLlib's ``update_target_network``."""
    floats = [i for i, t in enumerate(targets) if t.is_floating_point()]
    if len(floats) == len(targets):
        torch._foreach_mul_(targets, 1 - tau)
        torch._foreach_add_(targets, torch._foreach_mul(mains, tau))
        return
    for t, m in zip(targets, mains):
        t.copy_(tau * m + (1 - tau) * t)


def _learner_torch_threads(config: Any) -> Optional[int]:
    """Intra-op threads a local learner sets: ``learner_torch_threads`` or the main process's CPUs."""
    if config.num_learners > 0:  # remote learner actors: Ray sets OMP_NUM_THREADS per actor
        return None
    threads = getattr(config, "learner_torch_threads", 0)
    if threads is None:
        threads = max(1, int(getattr(config, "num_cpus_for_main_process", 1) or 1))
    return int(threads) or None
