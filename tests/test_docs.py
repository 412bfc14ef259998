"""README and CI stay in sync: CI runs exactly the test command README gives a new user."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_command() -> str:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert len(lines) == 1, "`.ci/run` should run the tests in one command line"
    return lines[0].strip()


def test_readme_gives_the_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{_ci_command()}\n```" in readme


def test_readme_opens_with_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:3]]
    assert blocks[0].startswith("python3 -m venv .venv") and "datagen " in blocks[0]
    assert blocks[1] == _ci_command()
