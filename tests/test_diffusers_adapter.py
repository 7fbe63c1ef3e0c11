"""The diffusers adapter, its time conversions (paths) and the local-attention probe, on tiny random models.

The model tests skip when diffusers is absent (pip install 'phasediff[diffusers]'); the conversions and the
mask geometry run without it.
"""

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from phasediff import paths
from phasediff.adapters.local_attention import (LocalAttentionProbe, chebyshev_mask, check_radii, measured_radius,
                                                pixel_radius, strict_radii)
from phasediff.errors import PhasediffError
from phasediff.sampling import euler, time_grid

# --- time conversions (paths) ------------------------------------------------------------------------------

TIMES = np.linspace(0.0, 1.0, 11)


def test_vp_alpha_bar_has_our_noise_to_signal_ratio_and_round_trips():
    t = TIMES[1:-1]
    alpha_bar = paths.vp_alpha_bar(t)
    assert np.allclose(np.sqrt((1 - alpha_bar) / alpha_bar), t / (1 - t))
    assert np.allclose(paths.time_from_vp_alpha_bar(paths.vp_alpha_bar(TIMES)), TIMES)
    assert paths.vp_alpha_bar(0.0) == 1.0 and paths.vp_alpha_bar(1.0) == 0.0


def test_vp_input_scale_puts_x_t_on_the_vp_path_with_the_same_noise():
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(5, 1, 3, 3, generator=g, dtype=torch.float64), torch.randn(5, 1, 3, 3, generator=g,
                                                                                   dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64).reshape(-1, 1, 1, 1)
    alpha_bar = paths.vp_alpha_bar(t)
    vp = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * z
    assert torch.allclose(paths.vp_input_scale(t) * paths.add_noise(x0, t, z), vp)


def test_linear_beta_table_is_ddpm_and_its_timesteps_round_trip():
    table = paths.linear_beta_alpha_bars()
    assert len(table) == 1000 and table[0] == pytest.approx(1 - 1e-4) and table[-1] == pytest.approx(4.04e-5, rel=0.01)
    entries = paths.time_from_vp_alpha_bar(table)
    assert np.allclose(paths.vp_timestep(entries, table), np.arange(1000))  # table entries: whole timesteps
    steps = np.array([0.0, 0.25, 17.5, 998.9, 999.0])
    assert np.allclose(paths.vp_timestep(paths.time_from_vp_timestep(steps, table), table), steps)
    t = np.linspace(entries[0], entries[-1], 7)
    assert np.allclose(paths.time_from_vp_timestep(paths.vp_timestep(t, table), table), t)
    assert paths.vp_timestep([0.0, 1.0], table).tolist() == [0.0, 999.0]  # beyond the table: its ends


def test_flow_timestep_round_trips():
    assert np.allclose(paths.flow_timestep(TIMES), 1000 * TIMES)
    assert np.allclose(paths.time_from_flow_timestep(paths.flow_timestep(TIMES, 50), 50), TIMES)


@pytest.mark.parametrize("table", [[0.5], [0.9, 0.95], [0.9, 0.0], [[0.9, 0.5]], [0.9, np.nan]])
def test_bad_vp_tables_are_refused(table):
    with pytest.raises(PhasediffError, match="alpha_bars"):
        paths.vp_timestep(0.5, table)


def test_bad_schedule_arguments_are_refused():
    with pytest.raises(PhasediffError, match="steps"):
        paths.linear_beta_alpha_bars(1)
    with pytest.raises(PhasediffError, match="timestep"):
        paths.time_from_vp_timestep(1000.0, paths.linear_beta_alpha_bars())
    with pytest.raises(PhasediffError, match="t must"):
        paths.vp_timestep(1.5, paths.linear_beta_alpha_bars())


# --- mask geometry -----------------------------------------------------------------------------------------

def test_chebyshev_mask_on_a_small_grid():
    mask = chebyshev_mask((3, 4), 1)
    centre = mask[1 * 4 + 1].reshape(3, 4)
    assert centre.tolist() == [[True, True, True, False]] * 3
    corner = mask[0].reshape(3, 4)
    assert corner.sum() == 4 and corner[:2, :2].all()
    assert torch.equal(mask, mask.T) and chebyshev_mask((3, 4), 3).all()


def test_strict_radii_sum_to_the_radius_and_the_pixel_radius():
    assert strict_radii(5, 3) == [2, 2, 1] and strict_radii(2, 3) == [1, 1, 0] and strict_radii(0, 2) == [0, 0]
    assert all(sum(strict_radii(r, n)) == r for r in range(10) for n in range(1, 5))
    assert pixel_radius(0, 2) == 1 and pixel_radius(3, 2) == 7 and pixel_radius(3, 1) == 3
    assert check_radii(2, 3) == [2, 2, 2]
    for bad in ([1, 2], [1, -1, 0], 1.5):
        with pytest.raises(PhasediffError, match="radii"):
            check_radii(bad, 3)
    with pytest.raises(PhasediffError):
        strict_radii(-1, 2)


def test_without_diffusers_the_adapter_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now fails
    monkeypatch.delitem(sys.modules, "phasediff.adapters.diffusers", raising=False)
    with pytest.raises(PhasediffError, match=r"pip install 'phasediff\[diffusers\]'"):
        importlib.import_module("phasediff.adapters.diffusers")


# --- tiny models ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers", reason="the diffusers extra is not installed")


def tiny_dit(diffusers, layers=2, size=8, patch=2, channels=1, classes=3, seed=0):
    """A random DiT in float64 with learned variance (2 C output channels), like DiT-XL/2."""
    torch.manual_seed(seed)
    return diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=4, in_channels=channels, out_channels=2 * channels,
        num_layers=layers, sample_size=size, patch_size=patch, num_embeds_ada_norm=classes, norm_num_groups=1,
    ).double().eval()


def adapter(model, **options):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    return DiffusersDenoiser(model, "vp-eps", **options)


def image(size, channels=1, batch=1, seed=1):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_every_layer_at_r_sees_depth_times_r_tokens(diffusers, r, depth):
    """The concurrence paper's probe: each layer masked to r; the measured receptive field is N r, as stated."""
    model = tiny_dit(diffusers, layers=depth, size=19, patch=1)
    local, whole = adapter(model, radii=r), adapter(model)
    x = image(19)
    assert local.token_radius == depth * r == local.radius
    assert measured_radius(local, x, 0.5, (9, 9)) == depth * r
    assert measured_radius(whole, x, 0.5, (9, 9)) == 9  # unmasked: the whole grid


def test_strict_radii_give_the_stated_token_and_pixel_radius(diffusers):
    """Patches of 2 x 2, three layers with radii summing to 2: 2 tokens, (2 + 1) 2 - 1 = 5 pixels."""
    model = tiny_dit(diffusers, layers=3, size=16, patch=2)
    local = adapter(model, radii=strict_radii(2, 3))
    x = image(16)
    assert local.radii == [1, 1, 0] and local.token_radius == 2 and local.radius == 5
    assert measured_radius(local, x, 0.5, (4, 4), cell=2) == 2
    assert measured_radius(local, x, 0.5, (8, 8)) == 5  # pixel (8, 8) is the corner of token (4, 4)
    with pytest.raises(PhasediffError, match="outside"):
        measured_radius(local, x, 0.5, (8, 0), cell=2)
    with pytest.raises(PhasediffError, match="one image"):
        measured_radius(local, image(15), 0.5, (0, 0), cell=2)


def test_a_radius_of_the_grid_size_is_the_unmasked_model(diffusers):
    model = tiny_dit(diffusers, layers=2, size=8, patch=2)
    x, t = image(8, batch=3), torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    label = torch.tensor([0, 2, 3])
    with torch.no_grad():
        whole = adapter(model)(x, t, label)
        for r in (4, 7):  # a 4 x 4 token grid
            assert torch.allclose(adapter(model, radii=r)(x, t, label), whole, rtol=0, atol=1e-12)
        assert not torch.allclose(adapter(model, radii=2)(x, t, label), whole, atol=1e-3)  # the mask acts


def test_the_mask_acts_only_inside_the_window_per_sample(diffusers):
    model = tiny_dit(diffusers, layers=2, size=8, patch=2)
    x, t = image(8, batch=2), torch.tensor([0.3, 0.7], dtype=torch.float64)
    windowed, always = adapter(model, radii=1, window=(0.5, 1.0)), adapter(model, radii=1)
    assert windowed.radius is None and windowed.token_radius == 2 and always.radius == 5
    with torch.no_grad():
        out, whole, local = windowed(x, t), adapter(model)(x, t), always(x, t)
    assert torch.equal(out[0], whole[0]) and torch.equal(out[1], local[1])
    assert not torch.allclose(local[0], whole[0], atol=1e-3)


def test_the_probe_is_installed_once_and_leaves_the_model_unchanged_when_idle(diffusers):
    model = tiny_dit(diffusers)
    x = image(8, batch=2)
    with torch.no_grad():
        before = adapter(model)(x, 0.4)
        first, second = adapter(model, radii=1), adapter(model, radii=2)
        assert first.probe is second.probe is LocalAttentionProbe.on(model) and len(first.probe.layers) == 2
        assert torch.equal(adapter(model)(x, 0.4), before)
        assert not torch.equal(first(x, 0.4), second(x, 0.4))
        with first.probe.restricted([1, 1], (3, 3), torch.ones(2, dtype=torch.bool)):  # the grid is 4 x 4
            with pytest.raises(PhasediffError, match="3 x 3 token grid"):
                model(x, timestep=torch.ones(2), class_labels=torch.zeros(2, dtype=torch.long))
        assert first.probe.radii is None  # the call's state is cleared


def test_dit_labels_learned_variance_and_errors(diffusers):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    model = tiny_dit(diffusers, classes=3)
    dit, x = adapter(model), image(8, batch=2)
    assert dit.num_classes == 3 and dit.radius is None
    with torch.no_grad():
        assert torch.equal(dit(x, 0.5), dit(x, 0.5, torch.tensor([3, 3])))  # no label: the null label
        assert not torch.allclose(dit(x, 0.5, torch.tensor([0, 0])), dit(x, 0.5, torch.tensor([1, 1])))
        assert dit(x, 0.5).shape == x.shape  # the variance half is dropped
    with pytest.raises(PhasediffError, match="labels must lie"):
        dit(x, 0.5, torch.tensor([0, 4]))
    with pytest.raises(PhasediffError, match="shape"):
        dit(image(8, channels=2), 0.5)
    with pytest.raises(PhasediffError, match="patches"):
        adapter(tiny_dit(diffusers, size=9, patch=2), radii=1)(image(9), 0.5)
    with pytest.raises(PhasediffError, match="parameterisation"):
        DiffusersDenoiser(model, "x0")
    with pytest.raises(PhasediffError, match="radii"):
        adapter(model, radii=[1, 1, 1])


# --- parameterisations: exact models of a single image ---------------------------------------------------

class PointMass(nn.Module):
    """A diffusers-like model whose data is the one image ``a``: it answers the exact eps (VP, at whole timesteps
    of ``table``, refusing others) or the exact velocity (flow, N = 1000), plus a junk variance half."""

    def __init__(self, a, table=None):
        super().__init__()
        self.a, self.table = a, table
        self.config = SimpleNamespace(in_channels=a.shape[1])

    def forward(self, x, timestep, return_dict=True):
        shape = (-1, 1, 1, 1)
        if self.table is None:
            sigma = (timestep / 1000).reshape(shape)
            prediction = (x - self.a) / sigma  # v = z - x0 with x = (1 - sigma) a + sigma z
        else:
            assert torch.allclose(timestep, timestep.round(), atol=1e-6)
            alpha_bar = torch.as_tensor(self.table)[timestep.round().long()].reshape(shape)
            prediction = (x - alpha_bar.sqrt() * self.a) / (1 - alpha_bar).sqrt()
        return (torch.cat([prediction, torch.full_like(prediction, 7.0)], 1),)


def test_vp_eps_model_recovers_its_image_at_every_table_time(diffusers):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    table = paths.linear_beta_alpha_bars()
    a = image(4, channels=2)
    t = torch.as_tensor(paths.time_from_vp_alpha_bar(table[[0, 10, 300, 700, 999]]))
    x_t = paths.add_noise(a, t.reshape(-1, 1, 1, 1), image(4, channels=2, batch=5, seed=2))
    out = DiffusersDenoiser(PointMass(a, table), "vp-eps", alpha_bars=table)(x_t, t)
    assert torch.allclose(out, a.expand_as(out), atol=1e-9)


def test_flow_model_recovers_its_image(diffusers):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    a, t = image(4, channels=2), torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    x_t = paths.add_noise(a, t.reshape(-1, 1, 1, 1), image(4, channels=2, batch=4, seed=2))
    flow = DiffusersDenoiser(PointMass(a), "flow")
    out = flow(x_t, t)
    assert torch.allclose(out, a.expand_as(out), atol=1e-12) and flow.t_max == 1.0
    with pytest.raises(PhasediffError, match="alpha_bars"):
        DiffusersDenoiser(PointMass(a), "flow", alpha_bars=paths.linear_beta_alpha_bars())


# --- other diffusers models -------------------------------------------------------------------------------

def test_sd3_flow_adapter_broadcasts_its_prompt_and_refuses_local_attention(diffusers):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    torch.manual_seed(0)
    model = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=2, out_channels=2, num_layers=2, attention_head_dim=4,
        num_attention_heads=2, joint_attention_dim=8, caption_projection_dim=8, pooled_projection_dim=4,
        pos_embed_max_size=8).double().eval()
    prompt = {"encoder_hidden_states": torch.randn(1, 5, 8, dtype=torch.float64),
              "pooled_projections": torch.randn(1, 4, dtype=torch.float64)}
    sd3, x, t = DiffusersDenoiser(model, "flow", inputs=prompt), image(8, channels=2, batch=2), 0.4
    with torch.no_grad():
        out = sd3(x, t)
        velocity = model(x, timestep=torch.full((2,), 400.0, dtype=torch.float64), return_dict=False,
                         **{k: v.expand(2, *v.shape[1:]) for k, v in prompt.items()})[0]
        assert torch.allclose(out, x - t * velocity) and torch.allclose(out[1:], sd3(x[1:], t))
    with pytest.raises(PhasediffError, match="attn1"):
        DiffusersDenoiser(model, "flow", inputs=prompt, radii=1)
    with pytest.raises(PhasediffError, match="batch"):
        DiffusersDenoiser(model, "flow", inputs={**prompt, "pooled_projections": torch.randn(3, 4)})(x, t)


def test_unet_adapter_samples_and_takes_no_label(diffusers):
    from phasediff.adapters.diffusers import DiffusersDenoiser
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4).eval()
    unet = DiffusersDenoiser(model, "vp-eps")
    assert unet.t_max == pytest.approx(0.99368, abs=1e-5)  # the noisiest step of the DDPM schedule: start there
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = euler(unet, unet.t_max * noise, time_grid(4, t_max=unet.t_max))
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(PhasediffError, match="unconditional"):
        unet(torch.rand(2, 1, 8, 8), 0.5, torch.tensor([0, 1]))
    with pytest.raises(PhasediffError, match="attn1"):
        DiffusersDenoiser(model, "vp-eps", radii=1)
