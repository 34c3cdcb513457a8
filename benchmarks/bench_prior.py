"""(5) skill-prior training samples/s vs the model's forward/backward on preloaded tensors.

``train_skill_prior`` (the real training loop: crop sampling, numpy -> torch,
eq. 4 loss, backward, RAdam, TensorBoard every 50 steps, validation at the end)
runs on a synthetic kitchen-sized dataset (600 episodes x 280 steps, 30-d
states, 9-d actions). The reference loop does the same forward/backward/RAdam
steps on batches gathered into tensors beforehand. The data-loading share is
the loop's own ``data_time_fraction`` metric (time in ``dataset.sample`` +
``to_torch`` over loop wall time).

Both run with one torch thread (``PriorTrainingConfig(num_threads=1)``); the
preloaded loop is also timed with one thread per core, because on a shared
2-core machine two intra-op threads can collapse (every op waits for a thread
that another job has descheduled).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Dict

import numpy as np

from benchmarks.common import ACT_DIM, HORIZON, LATENT_DIM, OBS_DIM, run_for


def run(quick: bool = False) -> Dict[str, Any]:
    import torch

    from spirl_ray.data.readers import EpisodeData
    from spirl_ray.data.sequence_dataset import SequenceDataset, to_torch
    from spirl_ray.skills.models import SkillModel, SkillModelConfig
    from spirl_ray.skills.train import PriorTrainingConfig, train_skill_prior

    rng = np.random.default_rng(0)
    episodes = [
        EpisodeData(rng.normal(size=(280, OBS_DIM)).astype(np.float32), rng.uniform(-1, 1, (280, ACT_DIM)).astype(np.float32))
        for _ in range(600)
    ]
    dataset = SequenceDataset(episodes, HORIZON, val_fraction=0.1, seed=0)
    model_cfg = SkillModelConfig(obs_dim=OBS_DIM, action_dim=ACT_DIM, horizon=HORIZON, latent_dim=LATENT_DIM)
    batch_size = 128
    steps = 100 if quick else 400
    seconds = 3.0 if quick else 8.0

    # Reference: forward/backward/step on preloaded tensors (no sampling, no logging).
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SkillModel(model_cfg).train()
    opt = torch.optim.RAdam(model.parameters(), lr=1e-3)
    preloaded = [to_torch(dataset.sample(batch_size, "train", rng)) for _ in range(16)]
    i = [0]

    def ref_step() -> int:
        b = preloaded[i[0] % len(preloaded)]
        i[0] += 1
        out = model.loss(b["states"], b["actions"])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return batch_size

    for _ in range(5):
        ref_step()
    ref_rates = []
    n, dt = run_for(ref_step, seconds / 2)
    ref_rates.append(n / dt)

    with tempfile.TemporaryDirectory() as tmp:
        train_cfg = PriorTrainingConfig(num_steps=steps, batch_size=batch_size, val_every=steps, device="cpu",
                                        num_threads=1)
        result = train_skill_prior(dataset, model_cfg, train_cfg, tmp, show_progress=False)
    n, dt = run_for(ref_step, seconds / 2)
    ref_rates.append(n / dt)

    all_threads = os.cpu_count() or 1
    torch.set_num_threads(all_threads)
    n, dt = run_for(ref_step, 2.0)
    all_threads_rate = n / dt
    torch.set_num_threads(default_threads)

    m = result.metrics
    train_rate = steps * batch_size / m["wall_time_s"]
    ref_rate = float(np.mean(ref_rates))
    return {
        "train_samples_per_s": train_rate,
        "preloaded_samples_per_s": ref_rate,
        "preloaded_rounds": ref_rates,
        "ratio_train_vs_preloaded": train_rate / ref_rate,
        "data_time_fraction": m["data_time_fraction"],
        "steps": steps,
        "batch_size": batch_size,
        "torch_threads": 1,
        "preloaded_all_threads": {"threads": all_threads, "samples_per_s": all_threads_rate},
    }
