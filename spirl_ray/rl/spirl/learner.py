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
which RLlib's SAC learner does not do.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from ray.rllib.algorithms.sac.sac_learner import QF_LOSS_KEY, QF_PREDS, QF_TWIN_LOSS_KEY, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.sac_torch_learner import SACTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import ModuleID, StateDict, TensorType

from spirl_ray.rl.spirl import losses
from spirl_ray.rl.spirl.rl_module import PRIOR_DIST_INPUTS, PRIOR_DIST_INPUTS_NEXT

#: learner-state key holding {module_id: log α}.
LOG_ALPHA_STATE_KEY = "curr_log_alpha"


class SPiRLTorchLearner(SACTorchLearner):
    """SAC learner regularising towards the learned skill prior (Pertsch et al. 2020, Algorithm 1)."""

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
        td_error = (q_pred - q_target).abs()
        if config.twin_q:
            q_twin = fwd_out[QF_TWIN_PREDS]
            qf_twin_loss = losses.critic_loss(q_twin, q_target, weights)
            td_error = 0.5 * (td_error + (q_twin - q_target).abs())
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
        super().set_state(state)
        for mid, value in (state.get(LOG_ALPHA_STATE_KEY) or {}).items():
            # In place: the alpha optimizer holds a reference to this very tensor.
            with torch.no_grad():
                self.curr_log_alpha[mid].fill_(float(value))
