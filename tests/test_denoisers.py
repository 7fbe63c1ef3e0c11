import copy
import hashlib
import json

import pytest
import torch
from torch import nn

from phasediff.denoisers import (KINDS, Denoiser, LocalDenoiser, UNet, build, convert, load, read_info, save,
                                 target, to_x0, valid_output_mask)
from phasediff.denoisers.checkpoint import checkpoint_paths
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise

RADII = range(1, 13)
SIZE = 29


PIXELS = ((14, 14), (0, 9), (28, 28))  # interior, edge, corner of a 29 x 29 image


def locality_violations(model, radius, pixels=PIXELS, size=SIZE, t=0.5, **inputs):
    """Gradient of output pixels w.r.t. every input pixel, in float64, split by Chebyshev distance.

    Pixel k is the output of batch sample k (samples never mix), so one backward pass covers all pixels.
    Returns, per pixel, the number of input pixels farther than ``radius`` with a nonzero gradient (0 for
    a local model), the largest such gradient, and the number of pixels at distance exactly ``radius``
    with a nonzero gradient.
    """
    model = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(len(pixels), model.channels, size, size, dtype=torch.float64, generator=generator,
                   requires_grad=True)
    out = model(x, t, **inputs)
    sum(out[k, :, y, x_].sum() for k, (y, x_) in enumerate(pixels)).backward()
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    found = {}
    for k, (y, x_) in enumerate(pixels):
        grad = x.grad[k].abs().sum(0)
        distance = torch.maximum((rows - y).abs(), (cols - x_).abs())
        outside = grad[distance > radius]
        found[y, x_] = {"outside": int((outside != 0).sum()),
                        "max_outside": float(outside.max()) if outside.numel() else 0.0,
                        "at_radius": int((grad[distance == radius] != 0).sum())}
    return found


# --- targets -----------------------------------------------------------------------------------------

def _path_sample(batch=6, t=None):
    g = torch.Generator().manual_seed(1)
    x0, z = torch.rand(batch, 1, 5, 5, generator=g, dtype=torch.float64), torch.randn(batch, 1, 5, 5, generator=g,
                                                                                     dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, batch, dtype=torch.float64) if t is None else t
    return x0, z, t, add_noise(x0, t.reshape(-1, 1, 1, 1) if torch.is_tensor(t) else t, z)


@pytest.mark.parametrize("t", [None, 0.3])
def test_every_conversion_agrees_with_the_path_and_round_trips(t):
    x0, z, t, x_t = _path_sample(t=t)
    for kind in KINDS:
        assert torch.allclose(to_x0(target(kind, x0, z), kind, x_t, t), x0)
        for new_kind in KINDS:
            converted = convert(target(kind, x0, z), kind, new_kind, x_t, t)
            assert torch.allclose(converted, target(new_kind, x0, z))
            assert torch.allclose(convert(converted, new_kind, kind, x_t, t), target(kind, x0, z))


def test_velocity_is_dx_dt_and_conversions_stay_finite_at_the_ends():
    x0, z, _, _ = _path_sample()
    assert torch.allclose(target("v", x0, z), (add_noise(x0, 0.61, z) - add_noise(x0, 0.6, z)) / 0.01)
    for t in (0.0, 1.0):
        x_t = add_noise(x0, t, z)
        assert torch.equal(to_x0(target("v", x0, z), "v", x_t, t), x_t - t * (z - x0))
        for kind in KINDS:
            assert torch.isfinite(to_x0(torch.randn_like(x0), kind, x_t, t)).all()
    with pytest.raises(PhasediffError):
        target("score", x0, z)


# --- locality ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("position_channels", [False, True])
@pytest.mark.parametrize("radius", RADII)
def test_local_denoiser_is_exactly_local(radius, position_channels):
    torch.manual_seed(radius)
    model = LocalDenoiser(radius, width=16, position_channels=position_channels, image_size=SIZE)
    for pixel, found in locality_violations(model, radius).items():
        assert found["outside"] == 0, (pixel, found)
        assert found["at_radius"] > 0, (pixel, found)


def test_locality_holds_on_a_crop_with_true_positions_and_class_labels():
    model = LocalDenoiser(4, width=16, position_channels=True, image_size=48, num_classes=10)
    for found in locality_violations(model, 4, origin=(7, 11), label=torch.tensor([3, 0, 9])).values():
        assert found["outside"] == 0 and found["at_radius"] > 0


def _leaky_groupnorm(model):
    model.stem = nn.Sequential(model.stem, nn.GroupNorm(4, model.stem.out_channels))
    return model


class _PlusSpatialMean(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, h, emb):
        return self.block(h, emb) + h.mean(dim=(2, 3), keepdim=True)


def _leaky_mean(model):
    model.blocks[0] = _PlusSpatialMean(model.blocks[0])
    return model


def _one_wider_kernel(model):
    width = model.blocks[0].conv.in_channels
    model.blocks[0].conv = nn.Conv2d(width, width, 5, padding=2)
    return model


@pytest.mark.parametrize("leak", [_leaky_groupnorm, _leaky_mean, _one_wider_kernel])
@pytest.mark.parametrize("radius", [1, 5, 12])
def test_locality_check_catches_a_global_layer(radius, leak):
    torch.manual_seed(0)
    for found in locality_violations(leak(LocalDenoiser(radius, width=16)), radius).values():
        assert found["outside"] > 0 and found["max_outside"] > 0


def test_unet_is_global():
    assert all(found["outside"] > 0 for found in locality_violations(UNet(base=16), 12).values())


def test_time_and_label_change_the_raw_output():
    model = LocalDenoiser(2, width=16, num_classes=3).eval()
    x = torch.rand(2, 1, 9, 9)
    t = torch.full((2,), 0.5)
    raw = model.predict(x, t, None)
    assert not torch.allclose(raw, model.predict(x, t + 0.2, None))
    assert not torch.allclose(raw, model.predict(x, t, torch.tensor([0, 1])))


# --- crops -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("position_channels", [False, True])
@pytest.mark.parametrize("box", [(2, 5, 12, 10), (0, 0, 10, 12), (8, 6, 12, 14), (0, 3, 20, 9)])
def test_crop_outputs_match_the_full_image_exactly_where_the_mask_says(box, position_channels):
    radius, size = 3, 20
    torch.manual_seed(0)
    model = LocalDenoiser(radius, width=16, position_channels=position_channels, image_size=size).double()
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    y0, x0, h, w = box
    with torch.no_grad():
        full = model(x, t)[..., y0:y0 + h, x0:x0 + w]
        crop = model(x[..., y0:y0 + h, x0:x0 + w].contiguous(), t, origin=(y0, x0))
    same = torch.isclose(crop, full, rtol=0, atol=1e-12).all(dim=(0, 1))
    assert torch.equal(same, valid_output_mask(box, size, model.radius))


def test_per_sample_origins_and_origin_errors():
    model = LocalDenoiser(2, width=8, position_channels=True, image_size=(12, 16)).eval()
    x = torch.rand(2, 1, 12, 16)
    with torch.no_grad():
        full = model(x, 0.4)
        crops = torch.stack([x[0, :, 0:6, 0:6], x[1, :, 6:12, 10:16]])
        out = model(crops, 0.4, origin=torch.tensor([[0, 0], [6, 10]]))
    assert torch.allclose(out[0, :, :4, :4], full[0, :, :4, :4], atol=1e-6)
    assert torch.allclose(out[1, :, 2:, 2:], full[1, :, 8:, 12:], atol=1e-6)
    with pytest.raises(PhasediffError, match="origin"):
        model(crops, 0.4)
    with pytest.raises(PhasediffError, match="does not fit"):
        model(crops, 0.4, origin=(7, 0))
    with pytest.raises(PhasediffError, match="image_size"):
        LocalDenoiser(2, position_channels=True)
    with pytest.raises(PhasediffError, match="does not fit"):
        valid_output_mask((10, 0, 5, 5), 12, 2)


# --- shapes, validation, U-Net -----------------------------------------------------------------------

def test_shapes_protocol_and_input_validation():
    local, unet = LocalDenoiser(3, channels=2, width=16), UNet(channels=2, base=16)
    x = torch.rand(3, 2, 27, 27)
    for model in (local, unet):
        assert isinstance(model, Denoiser)
        assert model(x, 0.5).shape == x.shape and model(x, torch.rand(3)).shape == x.shape
        with pytest.raises(PhasediffError, match="shape"):
            model(torch.rand(3, 1, 27, 27), 0.5)
        with pytest.raises(PhasediffError, match=r"\[0, 1\]"):
            model(x, 1.5)
        with pytest.raises(PhasediffError, match="shape"):
            model(x, torch.rand(2))
        with pytest.raises(PhasediffError, match="unconditional"):
            model(x, 0.5, torch.zeros(3, dtype=torch.long))
    assert (local.radius, unet.radius) == (3, None)
    with pytest.raises(PhasediffError, match="radius"):
        LocalDenoiser(0)


@pytest.mark.parametrize("size", [28, 27, 13])
def test_unet_parameter_count_and_odd_sizes(size):
    model = UNet()
    count = sum(p.numel() for p in model.parameters())
    print(f"UNet parameters: {count:,}")
    assert 1_000_000 <= count <= 3_000_000
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        assert model(x, torch.tensor([0.2, 0.9])).shape == x.shape


def test_labels_and_the_null_label():
    torch.manual_seed(0)
    model = UNet(base=16, num_classes=10).eval()
    x, t, label = torch.rand(4, 1, 28, 28), torch.rand(4), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        uncond, cond = model(x, t), model(x, t, label)
        assert torch.equal(uncond, model(x, t, torch.full((4,), 10)))
        assert not torch.allclose(uncond, cond)
    with pytest.raises(PhasediffError, match="labels"):
        model(x, t, torch.tensor([1, 2, 3, 11]))
    with pytest.raises(PhasediffError, match="unconditional"):
        UNet(base=16)(x, t, label)


def test_bf16_autocast_runs():
    x = torch.rand(2, 1, 28, 28)
    for model in (LocalDenoiser(3, width=16), UNet(base=16, num_classes=10)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, 0.5)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()


# --- config and checkpoints --------------------------------------------------------------------------

MODELS = [lambda: LocalDenoiser(3, width=16, position_channels=True, image_size=28, num_classes=10),
          lambda: LocalDenoiser(5, width=8, depth_1x1=2, prediction="eps"),
          lambda: UNet(base=16, mults=(1, 2), num_classes=10, prediction="x0")]


@pytest.mark.parametrize("make", MODELS)
def test_build_from_config_rebuilds_an_identical_network(make):
    torch.manual_seed(0)
    model = make().eval()
    config = json.loads(json.dumps(model.config()))
    rebuilt = build(config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x, 0.4), rebuilt(x, 0.4))
    with pytest.raises(PhasediffError, match="unknown network architecture"):
        build({**config, "arch": "resnet"})
    with pytest.raises(PhasediffError, match="configuration"):
        build({**config, "colour": True})


@pytest.mark.parametrize("make", MODELS)
def test_checkpoint_round_trip(tmp_path, make):
    model = make()
    path = save(tmp_path / "net", model, {"step": 7, "data": "mnist"}, weights="ema")
    assert path.name == "net.safetensors" and (tmp_path / "net.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]
    loaded = load(tmp_path / "net.json")
    assert not loaded.training and type(loaded) is type(model)
    info = read_info(path)
    assert info["step"] == 7 and info["weights"] == "ema" and info["model"] == model.config()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.7), model.eval()(x, 0.7))


def _edit_sidecar(path, **changes):
    sidecar = checkpoint_paths(path)[1]
    info = json.loads(sidecar.read_text())
    for key, value in changes.items():
        if key == "model":
            info["model"].update(value)
        else:
            info[key] = value
    sidecar.write_text(json.dumps(info))


def test_checkpoint_refusals(tmp_path):
    path = tmp_path / "local"
    weights, sidecar = checkpoint_paths(path)
    save(path, LocalDenoiser(3, width=16))
    with pytest.raises(PhasediffError, match="not found"):
        load(tmp_path / "absent")
    with pytest.raises(PhasediffError, match="override"):
        save(path, LocalDenoiser(3, width=16), {"model": {}})
    cases = {"unknown network architecture": dict(model={"arch": "transformer"}),
             "does not fit its architecture.*missing": dict(model={"radius": 4}),
             r"does not fit its architecture.*\(16, 16, 3, 3\) vs \(32, 32, 3, 3\)": dict(model={"width": 32}),
             "bad configuration": dict(model={"kernel": 5}),
             "not a phasediff checkpoint": dict(format="someone-else"),
             "version": dict(version=2)}
    original = sidecar.read_text()
    for message, change in cases.items():
        _edit_sidecar(path, **change)
        with pytest.raises(PhasediffError, match=message):
            load(path)
        sidecar.write_text(original)
    sidecar.write_text("not json")
    with pytest.raises(PhasediffError, match="not JSON"):
        load(path)
    sidecar.write_text(original)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(PhasediffError, match="does not match its sidecar"):
        load(path)
    _edit_sidecar(path, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(PhasediffError, match="not a readable safetensors") as err:
        load(path)
    assert "\n" not in str(err.value)


def test_a_periodic_local_denoiser_is_strictly_local_on_the_torus():
    """Gradient of the output at a corner pixel: nonzero exactly within torus (wrap-around) Chebyshev distance r."""
    torch.manual_seed(0)
    radius, size = 2, 11
    model = LocalDenoiser(radius, width=8, periodic=True).double()
    x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    model(x, torch.tensor([0.4], dtype=torch.float64))[0, 0, 0, 0].backward()
    d = torch.arange(size)
    torus = torch.minimum(d, size - d)
    near = (torus[:, None] <= radius) & (torus[None, :] <= radius)
    grad = x.grad[0, 0].abs()
    assert bool((grad[~near] == 0).all()) and bool((grad[near] > 0).all())
    assert model.config()["periodic"] is True and "periodic" not in LocalDenoiser(1).config()


def test_a_periodic_unet_commutes_with_rolls_of_the_torus():
    torch.manual_seed(0)
    model = UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, periodic=True).eval()
    x, t = torch.rand(2, 1, 8, 8), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        rolled = model(torch.roll(x, (2, 4), dims=(2, 3)), t)
        torch.testing.assert_close(rolled, torch.roll(model(x, t), (2, 4), dims=(2, 3)), rtol=1e-4, atol=1e-5)
        with pytest.raises(PhasediffError, match="multiples"):
            model(torch.rand(1, 1, 7, 8), 0.5)
