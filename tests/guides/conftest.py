"""The guide-conformance suite: each guide's commands, as literal strings, run from the project's folder.

`tests/guides/text/<project>.txt` are verbatim copies of the user's guides (`shared/seeds/`, mapped in its README);
each test module holds a table of (guide line number, command as the guide writes it, the substitutions of paths
and sizes), checks that the guide really has that command at that line, and runs it with `run_guide_command`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = Path(__file__).resolve().parent / "text"


@dataclass(frozen=True)
class GuideCommand:
    """One command of a guide: `line` is where it starts in the guide, `text` is the guide's command verbatim
    (continuation lines joined), `substitute` the (old, new) replacements of paths and sizes, nothing else."""
    line: int
    text: str
    substitute: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def command(self, **values: str) -> str:
        """The command that runs: the guide's text with the substitutions, `{name}` filled from `values`."""
        command = self.text
        for old, new in self.substitute:
            command = command.replace(old, new.format(**values))
        return command

    def __str__(self) -> str:
        return f"guide line {self.line}: {self.text}"


def guide_lines(project: str) -> list[str]:
    return (GUIDES / f"{project}.txt").read_text().splitlines()


def guide_command_at(project: str, line: int) -> str:
    """The shell command that starts at 1-based `line` of the guide, with backslash continuations joined."""
    lines = guide_lines(project)
    parts, index = [], line - 1
    while True:
        text = lines[index].rstrip()
        if text.endswith("\\"):
            parts.append(text[:-1].strip())
            index += 1
            continue
        parts.append(text.strip())
        return " ".join(part for part in parts if part)


def assert_quotes_guide(project: str, entry: GuideCommand) -> None:
    """The table entry is the guide's own command at the line it names (so the table cannot drift)."""
    found = guide_command_at(project, entry.line)
    assert found == entry.text, f"{project} guide line {entry.line} reads {found!r}, the table says {entry.text!r}"


def guide_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would have after `make setup`: the venv's bin first on PATH (python,
    torchrun, accelerate), the repository importable, one thread per process (the suite runs two workers)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_guide_command(project: str, command: str, *, timeout: float = 600, env: dict[str, str] | None = None,
                      expect_success: bool = True) -> subprocess.CompletedProcess:
    """Run `command` with bash from the project's folder, as a user who copied it from the guide would.

    With `expect_success` a non-zero exit fails the test with the command and the end of its output.
    """
    result = subprocess.run(["bash", "-c", command], cwd=ROOT / project, env=guide_env(env), text=True,
                            capture_output=True, timeout=timeout)
    if expect_success and result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        pytest.fail(f"`{command}` (in {project}/) exited {result.returncode}:\n{output}")
    return result
