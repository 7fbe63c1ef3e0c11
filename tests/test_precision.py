import pytest
import torch

from phasediff import precision
from phasediff.errors import PhasediffError
from phasediff.precision import autocast, resolve_precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": native)
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    with autocast("auto"):
        assert torch.is_autocast_enabled("cpu") == native
    with autocast("fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(PhasediffError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16")


def test_native_bf16_is_false_without_the_device():
    if not torch.cuda.is_available():
        assert not precision.native_bf16("cuda")
    assert not precision.native_bf16("meta")


def test_emulated_bf16_is_kept_with_a_warning(monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": False)
    assert resolve_precision("bf16", warn=True) == "bf16"
    assert "bf16 is emulated" in capsys.readouterr().err
    assert resolve_precision("bf16") == "bf16" and capsys.readouterr().err == ""
