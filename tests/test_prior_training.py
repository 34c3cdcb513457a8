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


def test_bn_recalibration_sets_exact_batch_averages_and_keeps_the_weights(tmp_path):
    from spirl_ray.data.sequence_dataset import to_torch
    from spirl_ray.skills.models import SkillModel
    from spirl_ray.skills.train import recalibrate_batch_norm

    _, ds = _data(tmp_path)
    mc, _ = _cfgs(decoder="closed_loop")
    torch.manual_seed(0)
    model = SkillModel(mc).eval()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) >= 2  # the prior's and the closed-loop decoder's
    for bn in bns:  # stale statistics, as a momentum average can leave them
        bn.running_mean.fill_(5.0)
        bn.running_var.fill_(9.0)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}

    # expected: the mean over the batches of each layer's per-batch input mean, recorded on a copy
    seen = {id(bn): [] for bn in bns}
    twin = SkillModel(mc)
    twin.load_state_dict(model.state_dict())
    twin_bns = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    hooks = [tb.register_forward_hook(lambda mod, inp, out, key=id(bn): seen[key].append(inp[0].mean(0)))
             for bn, tb in zip(bns, twin_bns)]
    twin.train()
    rng = np.random.default_rng(3)
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            b = to_torch(ds.sample(16, "train", rng), torch.device("cpu"))
            twin.loss(b["states"], b["actions"])
    for h in hooks:
        h.remove()

    torch.manual_seed(1)
    recalibrate_batch_norm(model, ds, 16, 4, np.random.default_rng(3), torch.device("cpu"))
    assert not model.training  # mode restored
    for bn in bns:
        assert torch.allclose(bn.running_mean, torch.stack(seen[id(bn)]).mean(0), atol=1e-5)
        assert bn.momentum == 0.1  # restored after the cumulative average
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k


def test_bn_recalibration_is_wired_into_training_and_the_cache_key(tmp_path):
    from spirl_ray.skills.train import prior_cache_key

    path, ds = _data(tmp_path)
    mc, tc = _cfgs(steps=30)
    tc_bn = tc.model_copy(update={"bn_recalibration_batches": 50})
    assert prior_cache_key(path, {}, mc, tc) != prior_cache_key(path, {}, mc, tc_bn)
    plain = load_skill_model(train_skill_prior(ds, mc, tc, tmp_path / "a", show_progress=False).path)
    recal = load_skill_model(train_skill_prior(ds, mc, tc_bn, tmp_path / "b", show_progress=False).path)
    bn_plain = next(m for m in plain.prior.modules() if isinstance(m, torch.nn.BatchNorm1d))
    bn_recal = next(m for m in recal.prior.modules() if isinstance(m, torch.nn.BatchNorm1d))
    # same seed, same weights; only the statistics differ (50 batches counted, not a momentum average)
    for (k, v), (_, w) in zip(plain.prior.state_dict().items(), recal.prior.state_dict().items()):
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, w), k
    assert int(bn_recal.num_batches_tracked) == 50
    assert not torch.allclose(bn_plain.running_mean, bn_recal.running_mean)
