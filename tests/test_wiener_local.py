import numpy as np
import pytest
import torch

from phasediff.denoisers import load
from phasediff.denoisers.analytic import WienerDenoiser
from phasediff.denoisers.wiener_local import WienerPlusLocalDenoiser
from phasediff.errors import PhasediffError
from test_denoisers import locality_violations


def _images(n=400, size=10, seed=0):
    """Smooth random images: long-range correlations, some pixels of zero variance."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1, size // 2, size // 2)).repeat(2, 2).repeat(2, 3)
    base[:, :, 0, 0] = 0.3
    return base.astype(np.float32)


@pytest.mark.parametrize("t", [0.0, 1e-3, 0.3, 0.8, 1.0])
def test_with_no_local_correction_it_is_the_wiener_denoiser(t):
    images = _images()
    net = WienerPlusLocalDenoiser(2, 10, width=8).fit_linear(images)
    torch.nn.init.zeros_(net.local.head.weight)
    torch.nn.init.zeros_(net.local.head.bias)
    x0 = torch.from_numpy(images[:6])
    x_t = (1 - t) * x0 + t * torch.randn_like(x0)
    with torch.no_grad():
        got, want = net(x_t, t), WienerDenoiser.fit(images)(x_t.double(), t).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_the_correction_is_strictly_local_and_the_sum_is_not():
    torch.manual_seed(0)
    net = WienerPlusLocalDenoiser(3, 29, width=8, position_channels=True).fit_linear(
        np.random.default_rng(1).random((200, 1, 29, 29)))
    x, t = torch.rand(3, 1, 29, 29), torch.full((3,), 0.4)
    torch.testing.assert_close(net.predict(x, t, None), net.local.predict(x, t, None) + net.linear_velocity(x, t),
                               atol=0, rtol=0)
    for found in locality_violations(net.local, 3).values():
        assert found["outside"] == 0 and found["at_radius"] > 0
    outside = [found["outside"] for found in locality_violations(net, 3).values()]
    assert all(n > 0 for n in outside)
    with pytest.raises(PhasediffError, match="whole 29 x 29"):
        net(torch.rand(2, 1, 16, 16), 0.5)
    with pytest.raises(PhasediffError, match="shape"):
        net.fit_linear(np.zeros((10, 1, 28, 28)))


def test_trains_from_the_command_line_and_loads_with_its_linear_part(cli, tmp_path):
    run = tmp_path / "run"
    status, _, err = cli("train", "digits", "--model", "wiener-local", "--radius", "1", "--width", "8",
                         "--position-channels", "--batch-size", "16", "--steps", "3", "--out", run, "--quiet")
    assert status == 0, err
    net = load(run / "model")
    assert isinstance(net, WienerPlusLocalDenoiser) and net.local.radius == 1
    from phasediff.data.registry import load_dataset

    fitted = WienerPlusLocalDenoiser(1, net.image_size).fit_linear(load_dataset("digits", split="train").images)
    torch.testing.assert_close(net.mean, fitted.mean)
    torch.testing.assert_close(net.eigenvalues, fitted.eigenvalues)
    status, _, err = cli("train", "digits", "--model", "wiener-local", "--radius", "1", "--crop", "6",
                         "--steps", "2", "--out", tmp_path / "x", "--quiet")
    assert status == 2 and "whole images" in err and not (tmp_path / "x").exists()
