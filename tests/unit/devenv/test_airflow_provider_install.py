"""`dev up` reinstalls the provider into Airflow exactly when one of its files changed."""

from __future__ import annotations

from pathlib import Path

from eventpipeline_devenv.airflow import provider_digest, provider_dir


def _provider(tmp_path: Path) -> Path:
    (tmp_path / "eventpipeline_provider").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "eventpipeline_provider" / "hooks.py").write_text("A = 1\n")
    return tmp_path


def test_a_changed_or_added_provider_file_changes_the_digest(tmp_path: Path) -> None:
    folder = _provider(tmp_path)
    before = provider_digest(folder)
    assert provider_digest(folder) == before
    (folder / "eventpipeline_provider" / "hooks.py").write_text("A = 2\n")
    changed = provider_digest(folder)
    assert changed != before
    (folder / "eventpipeline_provider" / "new.py").write_text("")
    assert provider_digest(folder) != changed


def test_build_leftovers_do_not_change_the_digest(tmp_path: Path) -> None:
    folder = _provider(tmp_path)
    before = provider_digest(folder)
    for leftover in ("build/lib/x.py", "p.egg-info/PKG-INFO", "eventpipeline_provider/__pycache__/hooks.pyc"):
        path = folder / leftover
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("built")
    assert provider_digest(folder) == before


def test_the_repository_provider_is_found_beside_the_dev_package() -> None:
    folder = provider_dir()
    assert folder is not None
    assert (folder / "eventpipeline_provider" / "get_provider_info.py").exists()
