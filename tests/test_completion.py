"""Shell completion: the installed script answers the shell's completion requests, `datagen train` completes its
DATASET and --recipe values, and --show-completion/--install-completion give the hook for `datagen`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import shellingham

from datagen.data.sources import dataset_names
from datagen.model import recipes

DATAGEN = Path(sys.executable).with_name("datagen")  # the installed console script, as in conftest


def _bash_request(words: str) -> dict[str, str]:
    """The environment bash's hook (`datagen --show-completion bash`) sets to complete the last word of `words`."""
    return {"_DATAGEN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}


@pytest.fixture
def complete(cli, monkeypatch):
    """complete("datagen train fa") -> what bash offers for the last word (in-process, through datagen's main())."""
    def ask(words: str) -> list[str]:
        for name, value in _bash_request(words).items():
            monkeypatch.setenv(name, value)
        done = cli()
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return done.stdout.split()
    return ask


def test_the_installed_script_completes_command_names(tmp_path):
    done = subprocess.run([str(DATAGEN)], env={**os.environ, **_bash_request("datagen tr")}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "train\n", "")


def test_train_completes_dataset_names_and_recipe_names(complete):
    assert complete("datagen reci") == ["recipes"]
    assert complete("datagen train ") == dataset_names()
    assert complete("datagen train fa") == ["fashion-mnist"]
    assert complete("datagen train ./my-images") == []  # nothing offered: the shell completes the path itself
    assert complete("datagen train digits --recipe ") == recipes.builtin_names()
    assert complete("datagen train digits --recipe tiny") == [n for n in recipes.builtin_names() if n.startswith("tiny")]


def test_zsh_is_shown_each_recipe_s_description(cli, monkeypatch):
    monkeypatch.setenv("_DATAGEN_COMPLETE", "complete_zsh")
    monkeypatch.setenv("_TYPER_COMPLETE_ARGS", "datagen train digits --recipe tiny8")
    done = cli()
    assert done.returncode == 0
    assert f'"tiny8":"{recipes.load("tiny8").description}"' in done.stdout


def test_show_and_install_completion_give_the_hook_for_datagen(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))  # whatever runs the tests
    shown = cli("--show-completion")
    assert shown.returncode == 0
    assert "_DATAGEN_COMPLETE=complete_bash" in shown.stdout and "complete -o default -F _datagen_completion datagen" in shown.stdout

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    installed = cli("--install-completion")
    assert installed.returncode == 0
    hook = tmp_path / "home" / ".bash_completions" / "datagen.sh"
    assert hook.read_text().strip() == shown.stdout.strip()
    assert f"source '{hook}'" in (tmp_path / "home" / ".bashrc").read_text()


def test_bare_datagen_still_prints_help_and_lists_the_completion_options(cli):
    done = cli()
    assert done.returncode == 0
    assert "Usage: datagen" in done.stdout and "--install-completion" in done.stdout and "--show-completion" in done.stdout
