"""Skill VAE + prior: shapes, eq. 4 terms, stop-gradient, frozen BatchNorm, checkpoints."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from spirl_ray.skills.checkpoint import SkillModelError, load_skill_model, save_skill_model
from spirl_ray.skills.models import SkillModel, SkillModelConfig, freeze_batch_norm

B, H, S, A, Z = 8, 5, 6, 3, 4


def make(decoder="open_loop", **kw):
    torch.manual_seed(0)
    return SkillModel(SkillModelConfig(obs_dim=S, action_dim=A, horizon=H, latent_dim=Z, decoder=decoder, **kw))


@pytest.mark.parametrize("decoder", ["open_loop", "closed_loop"])
def test_shapes(decoder):
    m = make(decoder)
    states, actions = torch.randn(B, H + 1, S), torch.randn(B, H, A)
    q = m.posterior(actions, states)
    assert q.loc.shape == (B, Z) and q.scale.shape == (B, Z)
    assert m.reconstruct(q.rsample(), states).shape == (B, H, A)
    assert m.prior(states[:, 0]).shape == (B, 2 * Z)
    if decoder == "open_loop":
        assert m.decode(torch.zeros(2, Z)).shape == (2, H, A)
    else:
        assert m.decode_step(torch.zeros(2, Z), torch.zeros(2, S)).shape == (2, A)
    out = m.loss(states, actions)
    assert set(out) == {"loss", "reconstruction", "mse", "kl", "prior_loss"}
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


def test_loss_terms_match_eq4():
    """loss = rec + beta * KL(q||N(0,I)) + KL(sg(q)||p), each with torch.distributions' KL."""
    m = make(beta=0.3)
    states, actions = torch.randn(B, H + 1, S), torch.randn(B, H, A)
    torch.manual_seed(1)
    out = m.loss(states, actions)
    q = m.posterior(actions, states)
    expect_kl = kl_divergence(q, Normal(0.0, 1.0)).mean()
    expect_prior = kl_divergence(q, m.prior.dist(states[:, 0])).mean()
    assert torch.allclose(out["kl"], expect_kl, atol=1e-5)
    assert torch.allclose(out["prior_loss"], expect_prior, atol=1e-5)
    assert torch.allclose(out["reconstruction"], 0.5 * out["mse"])
    assert torch.allclose(out["loss"], out["reconstruction"] + 0.3 * out["kl"] + out["prior_loss"], atol=1e-4)


@pytest.mark.parametrize("images", [False, True])
def test_closed_loop_loss_decodes_action_t_from_state_t(images):
    """Closed loop (vectors and images): eq. 4's posterior reads [a_t, s_t] and the decoder action t reads s_t,
    recomputed here step by step, independently of the loss's batched path."""
    from spirl_ray.skills.models import gaussian_from_params

    torch.manual_seed(0)
    kw = dict(image_shape=(2, 8, 8), conv_channels=(4, 8)) if images else {}
    m = SkillModel(SkillModelConfig(obs_dim=2 * 8 * 8 if images else S, action_dim=A, horizon=H, latent_dim=Z,
                                    decoder="closed_loop", lstm_hidden=16, decoder_hidden=16, **kw)).eval()
    if images:
        states = torch.randint(0, 256, (B, H + 1, 2, 8, 8), dtype=torch.uint8)
    else:
        states = torch.randn(B, H + 1, S)
    actions = torch.randn(B, H, A)
    with torch.no_grad():
        feats = torch.stack([m.state_input(states[:, t]).float() for t in range(H)], dim=1)
        _, (h, _) = m.encoder(torch.cat([actions, feats], dim=-1))
        q = gaussian_from_params(m.encoder_head(h[-1]))
        torch.manual_seed(1)
        z = q.rsample()
        a_hat = torch.stack([m.decode_step(z, states[:, t]) for t in range(H)], dim=1)
        torch.manual_seed(1)
        out = m.loss(states, actions)
    torch.testing.assert_close(out["mse"], (a_hat - actions).pow(2).mean())
    torch.testing.assert_close(out["kl"], kl_divergence(q, Normal(0.0, 1.0)).mean())


def test_prior_loss_does_not_reach_encoder():
    """Stop-gradient (eq. 4): encoder gradients of the full loss do not depend on the prior."""
    m = make()
    states, actions = torch.randn(B, H + 1, S), torch.randn(B, H, A)

    def encoder_grads():
        m.zero_grad()
        torch.manual_seed(3)
        m.loss(states, actions)["loss"].backward()
        return [p.grad.clone() for p in m.encoder.parameters()]

    before = encoder_grads()
    with torch.no_grad():
        for p in m.prior.parameters():
            p.add_(torch.randn_like(p))
    after = encoder_grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, after))
    assert any(p.grad.abs().sum() > 0 for p in m.prior.parameters())


def test_freeze_batch_norm_matches_eval_and_ignores_batch():
    m = make()
    m.train()
    for _ in range(5):  # populate running stats
        m.prior(torch.randn(64, S) * 3 + 1)
    m.eval()
    x = torch.randn(16, S)
    expected = m.prior(x)
    frozen = freeze_batch_norm(m.prior)
    frozen.train()  # even in train mode the statistics are fixed
    assert torch.allclose(frozen(x), expected, atol=1e-5)
    assert torch.allclose(frozen(x[:1]), expected[:1], atol=1e-5)
    assert not any(isinstance(mod, torch.nn.BatchNorm1d) for mod in frozen.modules())


def test_checkpoint_roundtrip_and_truncation(tmp_path):
    m = make("closed_loop")
    path = save_skill_model(tmp_path / "m.pt", m, extra={"note": 1})
    m2 = load_skill_model(path)
    assert m2.config == m.config and m2.extra == {"note": 1}
    x = torch.randn(3, S)
    m.eval()
    assert torch.equal(m.prior(x), m2.prior(x))
    assert not any(p.requires_grad for p in m2.parameters())
    # truncate the file: the checksum sidecar no longer matches
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SkillModelError, match="m.pt.*checksum"):
        load_skill_model(path)
    with pytest.raises(SkillModelError, match="does not exist"):
        load_skill_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(SkillModelError, match="junk.pt.*unreadable"):
        load_skill_model(tmp_path / "junk.pt")
