import json

from prefkit.cli.main import main


def test_env_json_lists_versions_and_devices(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"]
    assert info["devices"]["cpu_count"] >= 1
    assert isinstance(info["devices"]["cuda_available"], bool)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
