"""Device names are checked against this machine before anything is loaded on them."""

import pytest
import torch

from prefkit.errors import InputError
from prefkit.policy import check_device, resolve_device


def test_auto_and_cpu_resolve():
    assert check_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:3", "gpu", ""])
def test_unknown_names_are_input_errors_naming_the_field(name):
    with pytest.raises(InputError, match=r"\[train\.device\]: unknown device"):
        check_device(name)


def test_cuda_without_cuda_names_the_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"\[train\.device\]: cuda was asked for but .*use auto or cpu"):
        check_device("cuda")
    with pytest.raises(InputError, match=r"\[device\]: cuda:0 was asked for"):
        resolve_device("cuda:0", field="device")


def test_a_cuda_index_past_the_last_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"cuda:2 was asked for but this machine has 2 CUDA device\(s\) \(cuda:0\.\.cuda:1\)"):
        check_device("cuda:2")


def test_mps_must_be_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match="MPS backend is not available"):
        check_device("mps")
