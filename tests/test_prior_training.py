"""Skill-prior training: the loss goes down, checkpoints and the content-hash cache behave."""

import json

import numpy as np
import torch

from spirl_ray.data.sequence_dataset import make_sequence_dataset
from spirl_ray.skills.checkpoint import load_skill_model
from spirl_ray.skills.models import SkillModelConfig
from spirl_ray.skills.train import PriorTrainingConfig, cached_skill_prior, train_skill_prior

from conftest import structured_episodes, write_d4rl

H = 5


def _data(tmp_path):
    path = tmp_path / "d.hdf5"
    write_d4rl(path, structured_episodes())
    return path, make_sequence_dataset(path, horizon=H, seed=0)


def _cfgs(steps=150, decoder="open_loop"):
    mc = SkillModelConfig(obs_dim=4, action_dim=2, horizon=H, latent_dim=3, decoder=decoder,
                          lstm_hidden=32, prior_hidden=32, prior_layers=3, decoder_hidden=32, decoder_layers=2)
    tc = PriorTrainingConfig(num_steps=steps, batch_size=32, val_every=steps, val_batches=4, early_clip_steps=5)
    return mc, tc


def test_training_reduces_reconstruction_and_prior_loss(tmp_path):
    path, ds = _data(tmp_path)
    mc, tc = _cfgs(steps=1)
    first = train_skill_prior(ds, mc, tc, tmp_path / "a", show_progress=False).metrics
    mc, tc = _cfgs(steps=300)
    res = train_skill_prior(ds, mc, tc, tmp_path / "b", show_progress=False)
    assert res.metrics["val_mse"] < 0.5 * first["val_mse"]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["val_mse"] == res.metrics["val_mse"]
    assert any((tmp_path / "b" / "tb").iterdir())  # TensorBoard event file
    # the saved model reproduces the training model's reconstruction quality
    model = load_skill_model(res.path)
    batch = ds.sample(64, "val", np.random.default_rng(0))
    out = model.loss(torch.as_tensor(batch["states"]), torch.as_tensor(batch["actions"]))
    assert float(out["mse"]) < 0.5 * first["val_mse"]
    # the trained prior explains the trained posterior better than an untrained prior does
    from spirl_ray.skills.models import GaussianMLP
    from torch.distributions import kl_divergence

    s0 = torch.as_tensor(batch["states"][:, 0])
    q = model.posterior(torch.as_tensor(batch["actions"]))
    torch.manual_seed(0)
    fresh = GaussianMLP(4, 3, hidden=32, n_layers=3).eval()
    kl_trained = kl_divergence(q, model.prior.dist(s0)).mean()
    kl_fresh = kl_divergence(q, fresh.dist(s0)).mean()
    assert kl_trained < 0.5 * kl_fresh


def test_closed_loop_trains(tmp_path):
    path, ds = _data(tmp_path)
    mc, tc = _cfgs(steps=200, decoder="closed_loop")
    first = train_skill_prior(ds, mc, _cfgs(steps=1, decoder="closed_loop")[1], tmp_path / "a", show_progress=False)
    res = train_skill_prior(ds, mc, tc, tmp_path / "b", show_progress=False)
    assert res.metrics["val_mse"] < first.metrics["val_mse"]


def test_cache_hit_skips_training_and_corruption_retrains(tmp_path):
    path, ds = _data(tmp_path)
    mc, tc = _cfgs(steps=20)
    settings = {"state_layout": None}
    r1 = cached_skill_prior(path, ds, settings, mc, tc, tmp_path / "cache", show_progress=False)
    assert not r1.cached
    calls = []
    r2 = cached_skill_prior(path, None, settings, mc, tc, tmp_path / "cache", show_progress=False,
                            dataset_factory=lambda: calls.append(1) or ds)
    assert r2.cached and r2.path == r1.path and calls == []
    # another model config -> another entry
    mc2 = mc.model_copy(update={"latent_dim": 2})
    r3 = cached_skill_prior(path, ds, settings, mc2, tc, tmp_path / "cache", show_progress=False)
    assert not r3.cached and r3.path != r1.path
    # a truncated cache entry is not trusted
    r1.path.write_bytes(r1.path.read_bytes()[:100])
    r4 = cached_skill_prior(path, ds, settings, mc, tc, tmp_path / "cache", show_progress=False)
    assert not r4.cached and load_skill_model(r4.path).config == mc
