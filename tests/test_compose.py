"""Composite denoisers (Piecewise, Guided, Conditioned, Unconditional) and schedules written as text."""

import numpy as np
import pytest
import torch

from phasediff.denoisers.compose import Conditioned, Guided, Piecewise, Unconditional
from phasediff.denoisers.local import LocalDenoiser
from phasediff.denoisers.schedule import Schedule, parse_windows
from phasediff.denoisers.unet import UNet
from phasediff.errors import PhasediffError
from phasediff.sampling import sample, time_grid

SHAPE = (1, 8, 8)


class Constant(torch.nn.Module):
    """Answers a constant (plus the label, when one is given), and records the labels it saw."""

    def __init__(self, value, radius=None, num_classes=None):
        super().__init__()
        self.value, self.radius, self.num_classes, self.seen = value, radius, num_classes, []

    def forward(self, x, t, label=None):
        self.seen.append(None if label is None else label.tolist())
        out = torch.full_like(x, self.value)
        return out if label is None else out + label.to(x.dtype)[:, None, None, None]


@pytest.fixture(scope="module")
def conditional():
    torch.manual_seed(0)
    return UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, num_classes=3).eval()


def test_piecewise_runs_each_member_at_its_times_and_counts():
    a, b, c = Constant(1.0, 1), Constant(2.0, 2), Constant(3.0, 3)
    model = Piecewise([(0.0, 0.1, a), (0.1, 0.8, b)], default=c, names={"a": a, "b": b, "c": c})
    t = torch.tensor([0.0, 0.05, 0.1, 0.5, 0.8, 0.9, 1.0])
    out = model(torch.zeros(7, *SHAPE), t)
    # at the shared end t = 0.1 the piece listed first runs
    assert out[:, 0, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert model.evaluations == {"a": 3, "b": 2, "c": 2}
    model(torch.zeros(4, *SHAPE), 0.3)
    assert model.evaluations == {"a": 3, "b": 6, "c": 2}
    assert model.radius == 3


def test_composite_equals_its_member_at_each_time():
    torch.manual_seed(1)
    local, global_ = LocalDenoiser(1, width=4).eval(), UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8).eval()
    model = Piecewise([(0.2, 0.5, global_)], default=local)
    x = torch.randn(5, *SHAPE)
    t = torch.tensor([0.1, 0.2, 0.35, 0.5, 0.9])
    with torch.no_grad():
        out = model(x, t)
        for i in range(5):
            member = global_ if 0.2 <= t[i] <= 0.5 else local
            torch.testing.assert_close(out[i:i + 1], member(x[i:i + 1], t[i:i + 1]), rtol=1e-5, atol=1e-6)
    assert model.radius is None


def test_overlapping_pieces_are_refused():
    with pytest.raises(PhasediffError, match="overlap"):
        Piecewise([(0.0, 0.5, Constant(0.0)), (0.4, 1.0, Constant(1.0))], default=Constant(2.0))


def test_piecewise_of_local_members_is_strictly_local():
    """Gradient of the output at one pixel w.r.t. the input: exactly zero beyond the largest member radius."""
    torch.manual_seed(2)
    one, three = LocalDenoiser(1, width=4), LocalDenoiser(3, width=4)
    model = Piecewise([(0.0, 0.5, one)], default=three)
    assert model.radius == 3
    for t, radius in ((0.3, 1), (0.7, 3)):
        x = torch.randn(1, 1, 15, 15, requires_grad=True)
        model(x, t)[0, 0, 7, 7].backward()
        grad = x.grad[0, 0].abs()
        far = torch.ones_like(grad, dtype=torch.bool)
        far[7 - radius:8 + radius, 7 - radius:8 + radius] = False
        assert bool((grad[far] == 0).all()) and float(grad[~far].sum()) > 0


def test_guided_conditioned_and_unconditional(conditional):
    x, t = torch.randn(4, *SHAPE), torch.full((4,), 0.4)
    label = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        uncond, cond = conditional(x, t), conditional(x, t, label)
        torch.testing.assert_close(Guided(conditional, 0.0)(x, t, label), uncond)
        torch.testing.assert_close(Guided(conditional, 3.0)(x, t, label), uncond + 3 * (cond - uncond))
        torch.testing.assert_close(Guided(conditional, 3.0)(x, t), uncond)
        torch.testing.assert_close(Unconditional(conditional)(x, t, label), uncond)
        torch.testing.assert_close(Conditioned(conditional, 2)(x, t), conditional(x, t, torch.full((4,), 2)))
    with pytest.raises(PhasediffError, match="class-conditional"):
        Guided(LocalDenoiser(1, width=4), 2.0)
    with pytest.raises(PhasediffError, match="label 5"):
        Conditioned(conditional, 5)


def test_label_only_inside_a_window():
    """'the label only inside [0.4, 0.5]': the label reaches the model exactly at the times of the window."""
    g = Constant(0.0, num_classes=3)
    model = Piecewise([(0.4, 0.5, Conditioned(g, 2))], default=Unconditional(g))
    out = model(torch.zeros(3, *SHAPE), torch.tensor([0.3, 0.45, 0.6]), torch.tensor([1, 1, 1]))
    assert out[:, 0, 0, 0].tolist() == [0.0, 2.0, 0.0]


def test_schedule_text_round_trip_and_steps():
    schedule = Schedule.parse("0:0.1=local,0.1:0.8=global,0.8:1=cheap")
    assert Schedule.parse(schedule.text()) == schedule
    assert schedule.models() == ["local", "global", "cheap"]
    # 10 Euler steps evaluate at t = 1, 0.9, ..., 0.1
    assert schedule.steps(time_grid(10)[:-1].tolist()) == {"local": 1, "global": 7, "cheap": 2}
    assert Schedule.parse("0.2:0.5=global,local") == Schedule.hybrid([(0.2, 0.5)])
    assert Schedule.hybrid(parse_windows("0.6:1, 0:0.2")).text() == "0:0.2=global,0.6:1=global,local"


@pytest.mark.parametrize("text", ["", "0:0.5=a", "0:0.5=a,b,c", "a,0:1=b", "0.5=a,b", "x:1=a", "0:1=1a",
                                  "0:1=a*x", "0:1=a*inf", "0:0.6=a,0.5:1=b", "0:1.5=a", "0.5:0.2=a,b"])
def test_bad_schedules_are_refused(text):
    with pytest.raises(PhasediffError):
        Schedule.parse(text)


def test_schedule_builds_nested_composites(conditional):
    """A guided hybrid: g guided inside [0.1, 0.9], a local model (unconditional) outside."""
    torch.manual_seed(3)
    local = LocalDenoiser(1, width=4).eval()
    models = {"g": conditional, "local": local}
    denoiser = Schedule.parse("0.1:0.9=g*2,local").build(models)
    x, label = torch.randn(2, *SHAPE), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(denoiser(x, 0.5, label), Guided(conditional, 2.0)(x, 0.5, label))
        torch.testing.assert_close(denoiser(x, 0.95, label), local(x, 0.95))
    assert denoiser.evaluations == {"g*2": 2, "local": 2}
    with pytest.raises(PhasediffError, match="uses cheap"):
        Schedule.parse("0:0.5=g,cheap").build(models)
    with pytest.raises(PhasediffError, match="class-conditional"):
        Schedule.parse("0:1=local*2").build(models)


def test_hybrid_equals_sampling_each_member_by_hand():
    """All-global through the hybrid is bit-identical to sampling the global model; the paper's window runs
    the global model 10 of 32 steps."""
    torch.manual_seed(4)
    local, global_ = LocalDenoiser(1, width=4).eval(), UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8).eval()
    models = {"local": local, "global": global_}
    np.testing.assert_array_equal(sample(Schedule.hybrid([(0, 1)]).build(models), 3, SHAPE, steps=4, seed=1).numpy(),
                                  sample(global_, 3, SHAPE, steps=4, seed=1).numpy())
    model = Schedule.hybrid([(0.2, 0.5)]).build(models)
    sample(model, 2, SHAPE, steps=32, seed=1)
    assert model.evaluations == {"global": 20, "local": 44}


def test_sampler_callback_sees_every_step():
    seen = []
    model = Constant(0.25)
    sample(model, 2, SHAPE, steps=5, callback=lambda step, t, x, x0: seen.append((step, round(t, 6), x0.shape)))
    assert [s for s, _, _ in seen] == [0, 1, 2, 3, 4]
    assert [t for _, t, _ in seen] == [1.0, 0.8, 0.6, 0.4, 0.2]


def test_sample_to_file_cycles_labels(tmp_path):
    """label "cycle": sample i gets class i mod classes, and only the guided member sees it."""
    from phasediff.report.samples import SampleOptions, sample_to_file

    model = Constant(0.0, num_classes=3)
    sample_to_file({"m": model}, SHAPE, Schedule.parse("m*1"), tmp_path / "s.npz",
                   SampleOptions(n=5, steps=2, clip=False), label="cycle")
    assert model.seen == [[0, 1, 2, 0, 1]] * 2
    with pytest.raises(PhasediffError, match="label 3"):
        sample_to_file({"m": model}, SHAPE, Schedule.parse("m*1"), tmp_path / "t.npz", SampleOptions(n=2), label=3)
