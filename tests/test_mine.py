import numpy as np
import pytest

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.info.mine import MineSettings, dv_bound, mine_cmi, mine_information, mine_pair

import torch


def test_dv_bound_is_the_formula():
    joint, marginal = torch.tensor([1.0, 2.0]), torch.tensor([0.0, np.log(3.0)])
    assert float(dv_bound(joint, marginal)) == pytest.approx(1.5 - np.log(2.0))


def test_mine_on_a_correlated_gaussian_pair():
    rng = np.random.default_rng(0)
    rho = 0.8
    x = rng.standard_normal((20000, 1))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((20000, 1))
    exact = -0.5 * np.log(1 - rho**2)  # 0.511 nats
    estimate = mine_pair(x, y, MineSettings(steps=500, batch_size=512, lr=3e-3, width=16), seed=0)["mi"]
    assert estimate == pytest.approx(exact, abs=0.08)
    independent = mine_pair(x, rng.standard_normal((20000, 1)), MineSettings(steps=150, batch_size=512, width=16), seed=1)
    assert abs(independent["mi"]) < 0.05


def _copy_dataset(n=1500, size=7, seed=0):
    """The centre pixel is a noisy copy of its left neighbour; everything else is independent noise."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, size, size)).astype(np.float32)
    c = size // 2
    x[:, 0, c, c] = np.clip(x[:, 0, c, c - 1] + 0.05 * rng.standard_normal(n), 0, 1)
    return Dataset(x, None, "copy")


def test_mine_sees_information_in_the_buffer_and_none_beyond():
    data = _copy_dataset()
    settings = MineSettings(steps=150, batch_size=128, held_out=500, eval_batches=5, eval_batch_size=400, width=8)
    near, near_err = mine_information(data, 0.1, None, 1, 1, settings)
    assert near > 0.3 and near_err > 0
    values, errors, details = mine_cmi(data, [0.1], [1], None, 1, settings)
    assert abs(values[0, 0]) < 0.15 and errors.shape == (1, 1)
    paper = MineSettings(protocol="paper", steps=40, batch_size=64, held_out=500, runs=2, width=8)
    values, errors, details = mine_cmi(data, [0.5], [1], None, 1, paper)
    assert errors is None and values[0, 0] >= 0 and details["mine"]["protocol"] == "paper"


def test_bad_mine_settings():
    with pytest.raises(PhasediffError):
        MineSettings(protocol="magic").check()
    with pytest.raises(PhasediffError):
        mine_information(_copy_dataset(n=100), 0.3, None, 1, 1, MineSettings(batch_size=256))


def test_mine_through_the_command(cli_json):
    result = cli_json("cmi", "digits", "--estimator", "mine", "--t", "0.3,1", "--r", "1", "--mine-steps", "20")
    assert result["estimator"] == "mine" and len(result["stderr"]) == 2
    assert result["cmi"][1] == [0.0] and result["details"]["mine"]["protocol"] == "sound"
    paper = cli_json("cmi", "digits", "--estimator", "mine", "--t", "0.3", "--r", "1", "--mine-steps", "20",
                     "--mine-protocol", "paper", "--mine-runs", "2", "--mine-batch", "100")
    assert paper["stderr"] is None and paper["cmi"][0][0] >= 0
    assert paper["details"]["mine"] == {"protocol": "paper", "steps": 20, "batch_size": 100, "runs": 2}
