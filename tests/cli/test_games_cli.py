"""``prefkit games``: JSON output, the plot, and bad settings."""

import json

import numpy as np
import pytest

from prefkit.cli.main import main


def run_json(capsys, *argv):
    assert main(["games", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_preset_rps_egpo_json_has_the_expected_keys(capsys):
    report = run_json(capsys, "--preset", "rps", "--method", "egpo")
    assert set(report) >= {"game", "iters", "eta", "schedule", "samples", "nash", "methods", "skipped"}
    assert set(report["methods"]) == {"egpo"}
    egpo = report["methods"]["egpo"]
    assert set(egpo) >= {"final_gap", "iters_to_1e-6", "time_s", "policy"}
    assert report["game"]["n_actions"] == 3 and report["game"]["beta"] == 0.1
    assert np.allclose(report["nash"]["policy"], 1 / 3)


def test_random_batch_all_methods_with_the_repository_learning_rate(capsys):
    report = run_json(capsys, "--random", "6", "--games", "3", "--ref", "random", "--lr", "0.1",
                      "--method", "all", "--iters", "300")
    assert report["eta"] == pytest.approx(4 * 0.1 / (6 * 0.1))
    assert set(report["methods"]) == {"omd", "online_ipo2", "nash_md", "nash_md_pg", "egpo", "mwu"}
    egpo = report["methods"]["egpo"]
    assert len(egpo["final_gap"]) == 3 and max(egpo["final_gap"]) < 1e-6
    assert report["game"]["games"] == 3


def test_all_methods_at_beta_zero_reports_the_skipped_one(capsys):
    report = run_json(capsys, "--preset", "rps", "--beta", "0", "--method", "all",
                      "--init", "random", "--iters", "50")
    assert "nash_md_pg" not in report["methods"] and "nash_md_pg" in report["skipped"]
    assert report["methods"]["mwu"]["final_gap"] > 0


def test_sampled_run_reports_samples(capsys):
    report = run_json(capsys, "--preset", "cycle3", "--method", "omd", "--samples", "20",
                      "--iters", "50")
    assert report["samples"] == 20


def test_plot_writes_a_png(tmp_path, capsys):
    path = tmp_path / "gaps.png"
    assert main(["games", "--random", "5", "--method", "all", "--iters", "100",
                 "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "rps", "--method", "nash_md", "--beta", "0", "--schedule", "decay"],
        ["--preset", "rps", "--method", "omd", "--eta", "50"],
        ["--random", "1", "--method", "omd"],
        ["--preset", "cycle3", "--eps", "0.9", "--method", "omd"],
    ],
)
def test_bad_settings_exit_2_with_a_message(argv, capsys):
    assert main(["games", *argv]) == 2
    assert "error" in capsys.readouterr().err
