"""CURL-SAC agent: optimiser layout, one encoder step per loss, actor/critic maths, CURL options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from curl_moco.contrastive.augment import random_crop
from curl_moco.rl.agent import CurlSacAgent
from curl_moco.rl.networks import Actor
from curl_moco.rl.replay import ReplayBatch

SMALL = dict(feature_dim=16, hidden_dim=32, num_layers=2, num_filters=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_agent(**kw) -> CurlSacAgent:
    torch.manual_seed(0)
    return CurlSacAgent(9, 32, 2, **{**SMALL, **kw})


def smooth_images(batch: int, seed: int = 0, size: int = 40) -> torch.Tensor:
    """Low-frequency random uint8 images (B, 9, size, size): crops of one image look alike."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(batch, 9, 5, 5, generator=g), size=(size, size),
                      mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def make_batch(batch: int = 16, seed: int = 0) -> ReplayBatch:
    g = torch.Generator().manual_seed(seed + 1)
    return ReplayBatch(obs=smooth_images(batch, seed), action=torch.rand(batch, 2, generator=g)
                       * 2 - 1, reward=torch.rand(batch, 1, generator=g),
                       next_obs=smooth_images(batch, seed + 7),
                       not_done=torch.ones(batch, 1))


def param_ids(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in opt.param_groups for p in group["params"]}


def test_optimiser_layout_and_tied_convolutions() -> None:
    agent = make_agent()
    encoder = {id(p) for p in agent.critic.encoder.parameters()}
    convs = {id(p) for p in agent.critic.encoder.convs.parameters()}
    # actor convs ARE the critic's Parameter objects
    assert {id(p) for p in agent.actor.encoder.convs.parameters()} == convs
    assert encoder <= param_ids(agent.critic_optimizer)
    assert encoder <= param_ids(agent.curl_optimizer)
    assert not convs & param_ids(agent.actor_optimizer)
    assert id(agent.info_nce.W) in param_ids(agent.curl_optimizer)
    assert param_ids(agent.alpha_optimizer) == {id(agent.log_alpha)}
    # nothing trained by gradients in the target / key networks
    assert all(not p.requires_grad for p in agent.key_encoder.parameters())
    assert all(not p.requires_grad for p in agent.target_heads.parameters())
    assert float(agent.alpha.detach()) == pytest.approx(0.1)
    assert agent.target_entropy == -2.0


def test_each_optimiser_steps_once_per_update_on_schedule() -> None:
    agent = make_agent()
    steps = {name: 0 for name in agent.optimizers()}
    for name, opt in agent.optimizers().items():
        opt.register_step_post_hook(lambda *_, n=name: steps.__setitem__(n, steps[n] + 1))
    agent.update(make_batch())  # update 0: critic, actor, alpha, targets, CURL
    assert steps == {"critic": 1, "actor": 1, "alpha": 1, "curl": 1}
    agent.update(make_batch(seed=1))  # update 1: actor skipped (actor_update_freq=2)
    assert steps == {"critic": 2, "actor": 1, "alpha": 1, "curl": 2}


def test_encoder_moves_one_adam_step_per_loss() -> None:
    """Adam's first step moves every parameter with a non-zero gradient by lr (x g/(|g|+eps)).
    CURL's reference code steps two optimisers after the CURL loss: that would move 2 x lr."""
    lr = 1e-3
    agent = make_agent(lr=lr)
    obs = random_crop(make_batch().obs, 32, generator=torch.Generator().manual_seed(0))
    pos = random_crop(make_batch().obs, 32, generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in agent.critic.encoder.parameters()]
    agent.update_curl(obs, pos)
    moved = torch.cat([(p.detach() - b).abs().flatten()
                       for p, b in zip(agent.critic.encoder.parameters(), before)])
    assert moved.max() <= lr * 1.001
    assert (moved > 0.9 * lr).float().mean() > 0.5

    batch = make_batch()
    before = [p.detach().clone() for p in agent.critic.encoder.parameters()]
    agent.update_critic(obs, batch.action, batch.reward, obs, batch.not_done)
    moved = torch.cat([(p.detach() - b).abs().flatten()
                       for p, b in zip(agent.critic.encoder.parameters(), before)])
    assert moved.max() <= lr * 1.001 and (moved > 0.9 * lr).float().mean() > 0.5


def test_actor_update_leaves_critic_and_convolutions_unchanged() -> None:
    agent = make_agent()
    obs = random_crop(make_batch().obs, 32, generator=torch.Generator().manual_seed(0))
    critic_before = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    head_before = agent.actor.encoder.fc.weight.detach().clone()
    alpha_before = float(agent.log_alpha.detach())
    metrics = agent.update_actor_and_alpha(obs)
    for key, value in agent.critic.state_dict().items():
        assert torch.equal(value, critic_before[key]), key
    assert not torch.equal(agent.actor.encoder.fc.weight, head_before)  # actor head trains
    assert float(agent.log_alpha.detach()) != alpha_before
    assert set(metrics) >= {"actor_loss", "alpha_loss", "alpha", "entropy"}


def test_actor_log_prob_matches_tanh_transformed_gaussian() -> None:
    torch.manual_seed(0)
    agent = make_agent()
    actor: Actor = agent.actor
    conv = agent.critic.encoder.forward_conv(make_batch(8).obs[:, :, :32, :32]).detach()
    g = torch.Generator().manual_seed(3)
    action, log_prob, log_std = actor.from_conv(conv, generator=g)
    mu, log_std2 = actor.distribution_params(actor.encoder.head(conv))
    assert torch.equal(log_std, log_std2)
    assert (log_std >= -10).all() and (log_std <= 2).all()
    assert (action.abs() < 1).all()
    dist = D.TransformedDistribution(D.Normal(mu, log_std.exp()), [D.TanhTransform()])
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1, keepdim=True)
    assert torch.allclose(log_prob, expected, atol=1e-3)
    det, _, _ = actor.from_conv(conv, deterministic=True)
    assert torch.allclose(det, torch.tanh(mu))


def test_critic_target_uses_soft_bellman_backup() -> None:
    agent = make_agent(discount=0.9)
    batch = make_batch()
    obs = batch.obs[:, :, 4:36, 4:36]
    state = agent.generator.get_state()
    agent.update_critic(obs, batch.action, batch.reward, obs, batch.not_done * 0)
    # with not_done = 0 the target is the reward: Q regresses towards r
    agent.generator.set_state(state)
    metrics = agent.update_critic(obs, batch.action, batch.reward, obs, batch.not_done * 0)
    assert float(metrics["target_q"]) == pytest.approx(float(batch.reward.mean()), rel=1e-6)


def test_target_networks_follow_ema() -> None:
    agent = make_agent(critic_tau=0.25, encoder_tau=0.5)
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)
    old_head = agent.target_heads.q1[0].weight.clone()
    old_key = agent.key_encoder.encoder.fc.weight.clone()
    agent.update_targets()
    src_head = agent.critic.heads.q1[0].weight
    assert torch.allclose(agent.target_heads.q1[0].weight, 0.25 * src_head + 0.75 * old_head)
    src_key = agent.critic.encoder.fc.weight
    assert torch.allclose(agent.key_encoder.encoder.fc.weight, 0.5 * src_key + 0.5 * old_key)


@pytest.mark.parametrize("similarity", ["bilinear", "cosine"])
def test_curl_loss_learns_to_match_crops(similarity: str) -> None:
    agent = make_agent(similarity=similarity,
                       curl_temperature=1.0 if similarity == "bilinear" else 0.1)
    x = smooth_images(32)
    g = torch.Generator().manual_seed(0)
    first = None
    for i in range(120):
        m = agent.update_curl(random_crop(x, 32, generator=g), random_crop(x, 32, generator=g))
        if i % 2 == 0:
            agent.update_targets()
        first = float(m["curl_loss"]) if first is None else first
    assert first > math.log(32) * 0.8  # starts near chance
    assert float(m["curl_loss"]) < 0.6 * first
    assert float(m["curl_accuracy"]) > 0.3  # chance is 1/32


def test_curl_latent_dim_takes_effect() -> None:
    plain = make_agent()
    assert plain.query_projection is None and plain.info_nce.W.shape == (16, 16)
    projected = make_agent(curl_latent_dim=8)
    assert projected.info_nce.W.shape == (8, 8)
    assert {id(p) for p in projected.query_projection.parameters()} <= param_ids(
        projected.curl_optimizer)
    obs = smooth_images(4)[:, :, :32, :32]
    query, key = projected.curl_embeddings(obs, obs)
    assert query.shape == key.shape == (4, 8) and not key.requires_grad
    assert torch.allclose(query, key, atol=1e-5)  # key side starts as an exact copy
    metrics = projected.update(make_batch())
    assert "curl_loss" in metrics


def test_queue_of_negatives() -> None:
    agent = make_agent(similarity="cosine", curl_temperature=0.1, queue_size=32)
    for seed in range(3):
        agent.update(make_batch(16, seed))
    assert int(agent.queue.num_enqueued) == 48 and int(agent.queue.ptr) == 16
    # (queue + bilinear is refused where the config is validated: test_rl_trainer)
    with pytest.raises(ValueError, match="queue_size=24"):
        make_agent(similarity="cosine", queue_size=24).update(make_batch(16))


def test_same_seed_same_updates_and_checkpoint_round_trip() -> None:
    a, b = make_agent(seed=5), make_agent(seed=5)
    for seed in range(3):
        ma = a.update(make_batch(seed=seed))
        mb = b.update(make_batch(seed=seed))
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    state = a.checkpoint_state()
    c = make_agent(seed=99)
    c.load_checkpoint_state(state)
    obs = make_batch(1).obs[0]
    assert (a.act(obs) == c.act(obs)).all()  # same generator state after loading
    ma, mc = a.update(make_batch(seed=9)), c.update(make_batch(seed=9))
    assert all(torch.equal(ma[k], mc[k]) for k in ma)
    for (name, pa), pc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(pa, pc), name


def test_act_uses_centre_crop_and_bounds() -> None:
    agent = make_agent()
    obs = smooth_images(1)[0]  # (9, 40, 40) -> centre 32x32
    det1, det2 = agent.act(obs.numpy(), deterministic=True), agent.act(obs, deterministic=True)
    assert det1.shape == (2,) and (abs(det1) <= 1).all()
    assert (det1 == det2).all()
    sample = agent.act(obs)
    assert not (sample == det1).all()


def test_rl_never_imports_pretrain() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = list((root / "curl_moco" / "rl").glob("*.py")) + [root / "experiments" / "train_dmc.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any("pretrain" in n for n in names), f"{path.name} imports {names}"


def _params_after_updates(agent: CurlSacAgent, updates: int = 4) -> dict[str, torch.Tensor]:
    for i in range(updates):
        agent.update(make_batch(seed=i))
    return {k: v.detach().clone() for k, v in agent.state_dict().items()}


def test_reusing_the_anchor_conv_pass_changes_nothing() -> None:
    """The actor and CURL share one conv pass of the anchor; recomputing it gives the same
    weights bit for bit (neither the actor step nor the EMA touches the encoder)."""
    reused = _params_after_updates(make_agent())
    agent = make_agent()
    agent.reuse_anchor_conv = False
    recomputed = _params_after_updates(agent)
    assert reused.keys() == recomputed.keys()
    for key in reused:
        assert torch.equal(reused[key], recomputed[key]), key


def test_speed_options_keep_the_maths() -> None:
    """channels_last and fused Adam change memory layout and kernels, not the update: after a
    few updates the weights agree with the plain agent to float32 rounding."""
    plain = _params_after_updates(make_agent(channels_last=False, fused_adam=False))
    fast_agent = make_agent(channels_last=True, fused_adam=True)
    conv = fast_agent.critic.encoder.convs[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(g["fused"] for g in fast_agent.critic_optimizer.param_groups)
    fast = _params_after_updates(fast_agent)
    for key in plain:
        torch.testing.assert_close(fast[key], plain[key], rtol=1e-4, atol=1e-5, msg=key)


def _loss_gradients(agent: CurlSacAgent) -> tuple[float, dict[str, torch.Tensor]]:
    """Critic-style regression + CURL loss on one fixed batch, and every parameter gradient."""
    batch = make_batch(32)
    obs, positive = agent.augmented(batch.obs), agent.augmented(batch.obs)
    q1, q2 = agent.critic(obs, batch.action)
    loss = F.mse_loss(q1, batch.reward) + F.mse_loss(q2, batch.reward)
    query, key = agent.curl_embeddings(obs, positive)
    loss = loss + agent.info_nce(query, key).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad for n, p in agent.named_parameters()
                                  if p.grad is not None}


def test_bf16_gradients_and_updates_stay_close_to_float32() -> None:
    """amp='bf16' (bf16 conv stacks) from the same weights and batches as float32.

    Stated tolerances: loss within 0.1 %; every gradient within 10 % relative L2 error (bf16
    keeps 8 mantissa bits; measured at most ~6 %, on the first conv layer); after 5 full updates
    the losses agree within 3 % and the total parameter change points the same way (cosine >
    0.97; measured 0.99). Per-tensor changes differ more: Adam's first steps are ~lr * sign(g),
    so a tiny gradient entry can flip sign."""
    loss32, grads32 = _loss_gradients(make_agent())
    loss16, grads16 = _loss_gradients(make_agent(amp="bf16"))
    assert loss16 == pytest.approx(loss32, rel=1e-3)
    assert grads16.keys() == grads32.keys()
    for name, g in grads32.items():
        assert float((grads16[name] - g).norm() / g.norm()) < 0.10, name

    start = {k: v.clone() for k, v in make_agent().state_dict().items()}
    runs = {}
    for amp in ("off", "bf16"):
        agent = make_agent(amp=amp)
        metrics = [agent.update(make_batch(seed=i)) for i in range(5)][-1]
        change = torch.cat([(v - start[k]).flatten() for k, v in agent.state_dict().items()
                            if v.is_floating_point()])
        runs[amp] = (metrics, change)
    (m32, d32), (m16, d16) = runs["off"], runs["bf16"]
    for key in ("critic_loss", "curl_loss"):
        assert float(m16[key]) == pytest.approx(float(m32[key]), rel=0.03), key
    assert float(F.cosine_similarity(d16, d32, dim=0)) > 0.97


def test_bf16_is_limited_to_the_conv_stacks() -> None:
    """Only the convolutions run in bf16: features, Q values, log-probs, losses, parameters and
    Adam moments stay float32."""
    agent = make_agent(amp="bf16")
    assert agent.amp == "bf16" and "bf16" in agent.amp_reason
    for enc in (agent.critic.encoder, agent.actor.encoder, agent.key_encoder.encoder):
        assert enc.conv_dtype is torch.bfloat16
    batch = make_batch()
    obs = agent.augmented(batch.obs)
    assert agent.critic.encoder.forward_conv(obs).dtype == torch.float32
    q1, _ = agent.critic(obs, batch.action)
    action, log_prob, _ = agent.actor(obs, generator=agent.generator)
    assert q1.dtype == action.dtype == log_prob.dtype == torch.float32
    metrics = agent.update(batch)
    assert all(v.dtype == torch.float32 for v in metrics.values() if v.is_floating_point())
    assert all(p.dtype == torch.float32 for p in agent.parameters())
    for opt in agent.optimizers().values():
        for state in opt.state.values():
            assert state["exp_avg"].dtype == torch.float32
    assert make_agent(amp="off").critic.encoder.conv_dtype is None


def test_amp_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """amp='auto' is bf16 exactly where the CPU reports native bf16 dot products (simulated)."""
    import curl_moco.runtime as runtime

    cpu = torch.device("cpu")
    for flags, expected in ((frozenset({"avx512f", "avx512_bf16"}), "bf16"),
                            (frozenset({"amx_bf16", "amx_tile"}), "bf16"),
                            (frozenset({"avx2", "avx512f"}), "off"), (frozenset(), "off")):
        mode, why = runtime.resolve_amp("auto", cpu, flags)
        assert mode == expected, (flags, why)
        assert ("amp=auto" in why) and (("bf16" in why) if expected == "bf16" else
                                        "float32" in why)
    assert runtime.resolve_amp("off", cpu, frozenset({"avx512_bf16"}))[0] == "off"
    assert runtime.resolve_amp("bf16", cpu, frozenset())[0] == "bf16"  # asked for: honoured
    with pytest.raises(ValueError, match="amp"):
        runtime.resolve_amp("fp16", cpu)

    monkeypatch.setattr(runtime, "cpu_flags", lambda cpuinfo="": frozenset({"avx2"}))
    fallback = make_agent(amp="auto")
    assert fallback.amp == "off" and fallback.critic.encoder.conv_dtype is None
    assert "float32" in fallback.amp_reason
    monkeypatch.setattr(runtime, "cpu_flags", lambda cpuinfo="": frozenset({"avx512_bf16"}))
    native = make_agent(amp="auto")
    assert native.amp == "bf16" and native.critic.encoder.conv_dtype is torch.bfloat16


def test_cpu_flags_reads_proc_cpuinfo(tmp_path) -> None:
    from curl_moco.runtime import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_curl_update_freq_zero_is_pixel_sac() -> None:
    """curl_update_freq=0 switches the contrastive loss off: no CURL step, W never moves, the
    encoder learns from the critic only."""
    agent = make_agent(curl_update_freq=0)
    w0 = agent.info_nce.W.detach().clone()
    for i in range(4):
        metrics = agent.update(make_batch(seed=i))
        assert "curl_loss" not in metrics
    assert torch.equal(agent.info_nce.W, w0)
    assert not agent.curl_optimizer.state
    assert agent.critic_optimizer.state  # the critic still trains the encoder


def test_shift_augmentation_feeds_render_size_views() -> None:
    """augment='shift' (DrQ): the networks see shifted full renders; acting is unchanged."""
    torch.manual_seed(0)
    agent = CurlSacAgent(9, 40, 2, augment="shift", **SMALL)
    batch = make_batch()
    view = agent.augmented(batch.obs)
    assert view.shape == batch.obs.shape and view.dtype == torch.uint8
    metrics = agent.update(batch)
    assert torch.isfinite(metrics["curl_loss"])
    assert agent.act(batch.obs[0].numpy()).shape == (2,)
    with pytest.raises(ValueError, match="augment"):
        make_agent(augment="flip")


def test_invalid_speed_options_are_refused() -> None:
    with pytest.raises(ValueError, match="compile_mode"):
        make_agent(compile_mode="fastest")
    with pytest.raises(ValueError, match="amp"):
        make_agent(amp="fp8")


def test_checkpoint_keeps_the_loading_agents_adam_kind() -> None:
    fused = make_agent(fused_adam=True)
    fused.update(make_batch())
    plain = make_agent(fused_adam=False)
    plain.load_checkpoint_state(fused.checkpoint_state())
    assert all(not g["fused"] for opt in plain.optimizers().values() for g in opt.param_groups)
    plain.update(make_batch(seed=1))  # and it still steps


def test_compiled_conv_stacks_keep_the_maths() -> None:
    """compile_mode='default' (the CURL presets' setting) compiles the conv stacks with
    inductor; after a few updates the weights equal the eager agent's to float32 rounding, and
    the bf16 path compiles and runs too."""
    eager = _params_after_updates(make_agent(), updates=3)
    compiled_agent = make_agent(compile_mode="default")
    compiled = _params_after_updates(compiled_agent, updates=3)
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)
    bf16 = make_agent(compile_mode="default", amp="bf16")
    assert all(torch.isfinite(v).all() for v in bf16.update(make_batch()).values())


def test_agent_is_built_from_its_config_in_one_call() -> None:
    """Every agent knob is a config field of the same name with the same default, and
    from_config passes each one on (a new knob touches the config and the agent only)."""
    import dataclasses
    import inspect

    from curl_moco.rl.config import CurlSacConfig

    fields = {f.name: f for f in dataclasses.fields(CurlSacConfig)}
    params = inspect.signature(CurlSacAgent.__init__).parameters
    for name in CurlSacAgent.knob_names():
        assert name in fields, name
        if fields[name].default is not None and name != "amp":  # None: CURL's per-task value
            assert fields[name].default == params[name].default, name
    cfg = CurlSacConfig(lr=3e-4, hidden_dim=24, feature_dim=12, num_layers=2, num_filters=4,
                        crop_size=32, curl_latent_dim=8, similarity="cosine",
                        actor_log_std_min=-5.0, amp="off", channels_last=False)
    agent = CurlSacAgent.from_config(cfg, 9, 2, seed=3)
    assert agent.critic_optimizer.param_groups[0]["lr"] == 3e-4
    assert agent.critic.encoder.feature_dim == 12 and agent.curl_latent_dim == 8
    assert agent.info_nce.similarity == "cosine" and agent.actor.log_std_min == -5.0
    assert not agent.channels_last and agent.crop_size == 32


def test_sac_ae_options_tanh_features_and_updates_of_every_part() -> None:
    """SAC+AE's pixel SAC, as knobs: a tanh after the encoder's LayerNorm, and updates that move
    the actor, temperature and targets every time (its burst after seeding)."""
    from curl_moco.rl.config import CurlSacConfig

    agent = make_agent(encoder_output_activation="tanh", curl_update_freq=0)
    obs = random_crop(make_batch().obs, 32, generator=torch.Generator().manual_seed(0))
    for encoder in (agent.critic.encoder, agent.actor.encoder, agent.key_encoder.encoder):
        features = encoder(obs)
        assert features.abs().max() < 1 and torch.equal(
            features, torch.tanh(encoder.ln(encoder.fc(encoder.forward_conv(obs).float()))))
    cfg = CurlSacConfig(encoder_output_activation="tanh", hidden_dim=24, feature_dim=12,
                        num_layers=2, num_filters=4, crop_size=32, image_size=40)
    built = CurlSacAgent.from_config(cfg, 9, 1, device="cpu")
    assert built.critic.encoder.output_activation == "tanh"

    steps = {name: 0 for name in agent.optimizers()}
    for name, opt in agent.optimizers().items():
        opt.register_step_post_hook(lambda *_, n=name: steps.__setitem__(n, steps[n] + 1))
    key_before = [p.clone() for p in agent.key_encoder.parameters()]
    agent.update(make_batch())
    agent.update(make_batch(seed=1), every_part=True)  # update 1: actor and targets anyway
    assert steps == {"critic": 2, "actor": 2, "alpha": 2, "curl": 0}
    key_after_two = [p.clone() for p in agent.key_encoder.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(key_before, key_after_two))
    agent.update(make_batch(seed=2))  # update 2: on schedule again
    agent.update(make_batch(seed=3))  # update 3: actor and targets skipped
    assert steps["actor"] == 3 and agent.num_updates == 4
