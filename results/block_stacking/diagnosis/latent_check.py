"""How much the skill latent z controls the closed-loop decoder, and how much of it the prior predicts.

    python results/block_stacking/diagnosis/latent_check.py runs/prior_cache/<key>/skill_model.pt [...] \
        [--dataset runs/datasets/scripted_block_stacking_5000ep_seed0_image.hdf5] [--episodes 200]

For each skill model, on H-step crops (every H-th start) of the dataset's last ``--episodes``
episodes (read straight from the hdf5 file, so the ~7 GB of images are not loaded; with the
pipeline's 10 % validation split these are mostly, not only, validation episodes), prints the
action MSE per element of the decoded H-step skill against the data's actions when the decoder
is given

* ``posterior``: the posterior mean of q(z | a, s) (the reconstruction);
* ``prior mean``: the prior's mean skill μ_p(s_0) (what a policy sitting on the prior's mean decodes);
* ``prior sample``: one z ~ p(z | s_0) per crop;
* ``z = 0`` and ``z ~ N(0, I)``;

plus KL(q ‖ N(0, I)) and KL(q ‖ p), summed over the latent dims (nats; the training log's
per-dim means × |Z|), the latter also with the prior's BatchNorm layers on each batch's own
statistics (``KL(q‖p) batch BN``; as in training) instead of the stored running averages (eval
mode, as in RL): a large gap means stale running statistics
(``prior_training.bn_recalibration_batches``). A decoder whose MSE barely changes between
``posterior`` and ``z ~ N(0, I)`` ignores z (RL cannot steer it); a prior whose ``prior mean``
MSE is far above ``posterior`` does not know which skill the data took. A diagnosis tool for
closed-loop image models, not a test.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="skill_model.pt files (closed-loop decoder)")
    p.add_argument("--dataset", default="runs/datasets/scripted_block_stacking_5000ep_seed0_image.hdf5")
    p.add_argument("--episodes", type=int, default=200, help="episodes read from the end of the file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import h5py

    from spirl_ray.skills.checkpoint import load_skill_model

    torch.set_num_threads(1)
    models = [(path, load_skill_model(path).eval()) for path in args.models]
    for path, m in models:
        if m.config.decoder != "closed_loop" or m.config.image_shape is None:
            raise SystemExit(f"{path}: a {m.config.decoder} model on {'images' if m.config.image_shape else 'state vectors'}; "
                             "this check reads closed-loop image models")
    horizon = models[0][1].config.horizon
    with h5py.File(args.dataset, "r") as f:
        ends = np.flatnonzero(np.asarray(f["terminals"]) | np.asarray(f["timeouts"]))
        first = int(ends[-args.episodes - 1]) + 1 if len(ends) > args.episodes else 0
        images = np.asarray(f["images"][first:])
        actions = np.asarray(f["actions"][first:], dtype=np.float32)
    ends = ends[ends >= first] - first
    starts = []
    for lo, hi in zip(np.r_[0, ends[:-1] + 1], ends + 1):  # episode [lo, hi)
        starts.extend(range(lo, hi - horizon, horizon))  # H + 1 states inside the episode
    starts = np.asarray(starts)
    idx = starts[:, None] + np.arange(horizon + 1)
    batches = [dict(states=images[idx[i:i + 256]], actions=actions[idx[i:i + 256, :-1]]) for i in range(0, len(idx), 256)]
    print(f"{len(ends)} episodes, {len(starts)} crops; data action variance per element "
          f"{actions[idx[:, :-1]].var():.4f}")
    print("| model | β | KL(q‖N(0,I)) | KL(q‖p) | KL(q‖p) batch BN | MSE posterior | prior mean | prior sample | z = 0 | z ~ N(0, I) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(args.seed)
    for path, m in models:
        batch_bn_prior = copy.deepcopy(m.prior).train()
        for bn in batch_bn_prior.modules():
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                bn.momentum = 0.0  # normalise with the batch's statistics, leave the stored ones alone
        sums = dict(kl=0.0, prior_kl=0.0, batch_bn_kl=0.0, post=0.0, prior_mean=0.0, prior_sample=0.0, zero=0.0, unit=0.0)
        n = 0
        with torch.no_grad():
            for b in batches:
                states = torch.as_tensor(b["states"])
                actions = torch.as_tensor(b["actions"]).float()
                feats = m.state_input(states[:, :horizon]).float()
                q = m.posterior(actions, state_features=feats)
                prior = m.prior.dist(states[:, 0])
                unit = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
                k = len(actions)
                sums["kl"] += float(kl_divergence(q, unit).sum(-1).sum())
                sums["prior_kl"] += float(kl_divergence(q, prior).sum(-1).sum())
                sums["batch_bn_kl"] += float(kl_divergence(q, batch_bn_prior.dist(states[:, 0])).sum(-1).sum())
                zs = dict(post=q.loc, prior_mean=prior.loc,
                          prior_sample=prior.loc + prior.scale * torch.randn(prior.loc.shape, generator=gen),
                          zero=torch.zeros_like(q.loc), unit=torch.randn(q.loc.shape, generator=gen))
                for name, z in zs.items():
                    a_hat = m.reconstruct(z, states, state_features=feats)
                    sums[name] += float((a_hat - actions).pow(2).mean(dim=(1, 2)).sum())
                n += k
        r = {k: v / n for k, v in sums.items()}
        print(f"| {Path(path).parent.name} | {m.config.beta:g} | {r['kl']:.1f} | {r['prior_kl']:.1f} | {r['batch_bn_kl']:.1f} | {r['post']:.4f} | "
              f"{r['prior_mean']:.4f} | {r['prior_sample']:.4f} | {r['zero']:.4f} | {r['unit']:.4f} |")


if __name__ == "__main__":
    main()
