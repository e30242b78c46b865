"""Environment errors a user causes are one line on stderr and exit 2, never a traceback; anything
else keeps its traceback, and PREFKIT_DEBUG=1 always shows it."""

import pytest
import torch

from prefkit.cli import main as cli_main
from prefkit.cli.main import main
from prefkit.data import write_jsonl
from tests.engine.conftest import make_pairs

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32",
        "train.steps=1", "train.threads=1"]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(8), path)
    return path


def train(pairs_file, out, *args):
    options = [a for a in args if "=" not in a]
    return main(["train", "--method", "dpo", "--data", str(pairs_file), "--out", str(out), *options, *TINY,
                 *[a for a in args if "=" in a]])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train.threads=-1"], "train.threads: must be null (torch's default) or >= 1, got -1"),
        (["train.device=tpu"], "train.device: 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
        (["trust_remote_code=yes"], "write true/false"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(pairs_file, tmp_path, capsys, args, expected):
    assert train(pairs_file, tmp_path / "run", *args) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_config_that_is_a_directory_is_one_line(pairs_file, tmp_path, capsys):
    assert train(pairs_file, tmp_path / "run", "--config", str(tmp_path)) == 2
    assert f"{tmp_path}: is a directory; --config takes a YAML file" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_naming_the_key(pairs_file, tmp_path, capsys):
    assert train(pairs_file, tmp_path / "run", "train.device=cuda") == 2
    err = one_line_error(capsys)
    assert "[train.device]: cuda was asked for but" in err and "use auto or cpu" in err


def test_a_bin_only_model_directory_is_refused_with_how_to_convert(pairs_file, tmp_path, capsys):
    from prefkit.config import TinyConfig
    from prefkit.policy import Policy

    model_dir = tmp_path / "pickled"
    policy = Policy.tiny(["a b c"], TinyConfig(hidden_size=16, layers=1, heads=2))
    policy.save(model_dir)
    (model_dir / "model.safetensors").unlink()
    torch.save(policy.model.state_dict(), model_dir / "pytorch_model.bin")
    assert train(pairs_file, tmp_path / "run", "--model", str(model_dir)) == 2
    err = one_line_error(capsys)
    assert f"{model_dir}: only pickled weights here (pytorch_model.bin)" in err
    assert "save_pretrained(OUT)" in err


def _raiser(error):
    def run(args):
        raise error
    return run


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(13, "Permission denied", "/data/in.jsonl"), "/data/in.jsonl: Permission denied (PermissionError"),
        (IsADirectoryError(21, "Is a directory", "/tmp/.tmp-x", None, "/out/dir"), "/out/dir: Is a directory"),
        (FileNotFoundError(2, "No such file or directory", "/nope"), "/nope: No such file or directory"),
        (OSError(28, "No space left on device", "/out/run/metrics.json"), "/out/run/metrics.json: No space left"),
    ],
)
def test_filesystem_errors_on_a_path_are_one_line(monkeypatch, capsys, error, expected):
    monkeypatch.setattr(cli_main.importlib.import_module("prefkit.cli.env"), "run", _raiser(error))
    assert main(["env"]) == 2
    err = one_line_error(capsys)
    assert expected in err and "PREFKIT_DEBUG=1 shows the traceback" in err


def test_programming_errors_keep_their_traceback(monkeypatch):
    monkeypatch.setattr(cli_main.importlib.import_module("prefkit.cli.env"), "run", _raiser(OSError("no path")))
    with pytest.raises(OSError, match="no path"):
        main(["env"])
    monkeypatch.setattr(cli_main.importlib.import_module("prefkit.cli.env"), "run", _raiser(TypeError("bug")))
    with pytest.raises(TypeError, match="bug"):
        main(["env"])


def test_prefkit_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("PREFKIT_DEBUG", "1")
    monkeypatch.setattr(cli_main.importlib.import_module("prefkit.cli.env"), "run",
                        _raiser(PermissionError(13, "Permission denied", "/x")))
    with pytest.raises(PermissionError):
        main(["env"])
