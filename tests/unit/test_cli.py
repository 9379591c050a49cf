"""The operator's command line without the development package: `dev` and `demo` explain what is missing."""

from __future__ import annotations

import pytest

from eventpipeline import cli


def test_dev_commands_come_from_the_development_package() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["dev", "status"])
    assert args.handler.__module__ == "eventpipeline_devenv.cli"


def test_without_the_development_package_dev_commands_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.main(["dev", "up", "--only", "kafka"]) == 2
    assert cli.main(["demo"]) == 2
    message = capsys.readouterr().err
    assert "eventpipeline-devenv" in message
    assert "make venv" in message
