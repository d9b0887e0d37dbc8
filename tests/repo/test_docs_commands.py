"""Every command the docs show is one the code accepts.

Why: a README whose commands drifted from the CLI is the first thing a user trips over, and nothing else
notices. This test extracts every ``goverse-harness …``, ``scripts/…`` and ``pytest …`` command from the
fenced code blocks of README.md and docs/*.md (and the flags of ``goverse-harness …`` in inline code
spans) and checks it without deploying anything:

- ``goverse-harness run ARGS`` and ``pytest ARGS`` run for real with ``--collect-only``: pytest and the
  harness plugin parse every option and validate every setting (platform, seeded bug names, …) exactly
  as in a real run, and the selection must collect at least one test. The run directory that collection
  creates goes to a temporary ``GVH_ARTIFACTS``, never to ./artifacts. A command with a placeholder
  (``RUN_DIR``, ``/path/to/…``, ``<name>``) cannot run as written; its flags are checked against the
  option table (``--help``) instead.
- other ``goverse-harness`` subcommands (``up`` deploys, ``report`` needs a run) must exist and every
  flag shown must be in their ``--help``.
- ``scripts/X ARGS``: the script must exist and be executable; a shell script's ``"$@"`` line says where
  its arguments go (scripts/main → ``goverse-harness run``, scripts/test → ``pytest tests``), and that
  command is checked as above; a Python script's flags must be in its ``--help``.

Commands run in parallel (each is ~1 s of interpreter start-up), keeping the whole file well under 60 s.
The same checker is run on a deliberately wrong document and must report every mistake in it.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_INFOS = {"", "bash", "sh", "shell", "console", "shell-session", "zsh"}
SEPARATORS = {"&&", "||", ";", "|", "&"}
PREFIXES = {"sudo", "env", "time", "exec", "$"}
TIMEOUT_S = 60


@dataclass(frozen=True)
class Command:
    """One documented command: where it is written and its words (after shell-style splitting)."""

    source: str
    line: int
    argv: tuple[str, ...]
    inline: bool = False  # from an inline code span: flags are checked, nothing is run

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}:{shlex.join(self.argv)}"[:150]


# ---- extraction ---------------------------------------------------------------------------------------
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def _code_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, info string, lines) of each fenced block; prose lines are yielded as info None."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).lower(), i + 2
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        yield start, info, body


def _prose(text: str) -> Iterator[tuple[int, str]]:
    inside = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and (inside is None or line.strip().startswith(inside)):
            inside = None if inside else m.group(1)
            continue
        if inside is None:
            yield n, line


def _split(line: str) -> list[list[str]]:
    """Shell-style words of one logical line, split into simple commands at ``&& || ; | &``."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        words = list(lex)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    out: list[list[str]] = [[]]
    for w in words:
        if w in SEPARATORS:
            out.append([])
        else:
            out[-1].append(w)
    return [c for c in out if c]


def _ours(words: list[str]) -> tuple[str, ...] | None:
    """The command if it is one of ours (goverse-harness, pytest, scripts/…), normalised; else None."""
    while words and (words[0] in PREFIXES or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    if not words:
        return None
    head = words[0]
    if (head in ("python", "python3") or head.endswith("/bin/python")) and len(words) > 2 and words[1] == "-m":
        if words[2] == "harness.cli":
            return ("goverse-harness", *words[3:])
        if words[2] == "pytest":
            return ("pytest", *words[3:])
        return None
    if head in ("goverse-harness", "pytest"):
        return tuple(words)
    if head.startswith(("scripts/", "./scripts/")):
        return (head.removeprefix("./"), *words[1:])
    return None


def extract(text: str, source: str) -> list[Command]:
    """Every command of ours in the fenced shell blocks (all checked) and inline spans (flags only)."""
    cmds: list[Command] = []
    for start, info, body in _code_blocks(text):
        if info not in SHELL_INFOS:
            continue
        logical, first = "", start
        for offset, raw in enumerate(body):
            if not logical:
                first = start + offset
            stripped = raw.strip()
            if stripped.endswith("\\"):
                logical += stripped[:-1] + " "
                continue
            logical += stripped
            for words in _split(logical.removeprefix("$ ")):
                argv = _ours(words)
                if argv is not None:
                    cmds.append(Command(source, first, argv))
            logical = ""
    for n, line in _prose(text):
        for m in INLINE.finditer(line):
            span = m.group(1).replace("[", " ").replace("]", " ").replace("…", " ")
            for words in _split(span):
                argv = _ours(words)
                if argv is not None and argv[0] == "goverse-harness":
                    cmds.append(Command(source, n, argv, inline=True))
    return cmds


def documented_commands() -> list[Command]:
    out: list[Command] = []
    for path in DOCS:
        out += extract(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return out


# ---- checking -----------------------------------------------------------------------------------------
def _proc(argv: list[str], artifacts: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GVH_ARTIFACTS": str(artifacts), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("GVH_RUN_DIR", None)  # never write into the run directory of an enclosing harness run
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=TIMEOUT_S, check=False)


def _expand(args: tuple[str, ...]) -> list[str]:
    """Globs expanded relative to the repository root, as the shell would (no match: left as written)."""
    out: list[str] = []
    for a in args:
        matches = sorted(glob.glob(a, root_dir=ROOT)) if any(c in a for c in "*?[") else []
        out += matches or [a]
    return out


PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]{2,}$|/path/to/|<[^>]+>|\.\.\.|…")


def has_placeholder(args: tuple[str, ...]) -> bool:
    """``RUN_DIR``, ``BASELINE``, ``/path/to/goverse-node``, ``<context>``: words a reader substitutes."""
    return any(PLACEHOLDER.search(a) for a in args)


PYTEST_HELP = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider")


def _flags(args: tuple[str, ...]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if re.match(r"^--?[A-Za-z]", a)]


@functools.cache
def _help(argv: tuple[str, ...]) -> tuple[int, str]:
    res = _proc([*argv, "--help"], Path(tempfile.gettempdir()) / "gvh-docs-help")
    return res.returncode, res.stdout + res.stderr


def _flags_in_help(label: str, argv: tuple[str, ...], args: tuple[str, ...]) -> list[str]:
    code, text = _help(argv)
    if code != 0:
        return [f"`{label} --help` exited {code}: {text.strip()[-300:]}"]
    return [f"`{label}` has no option {f}" for f in _flags(args)
            if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]


def _collect(label: str, argv: list[str], artifacts: Path) -> list[str]:
    return list(_collect_cached(label, tuple(argv), artifacts))


@functools.cache
def _collect_cached(label: str, argv: tuple[str, ...], artifacts: Path) -> list[str]:
    """Collection of one command line (cached: the same command is often shown on several pages)."""
    res = _proc([*argv, "--collect-only", "-q"], artifacts)
    if res.returncode == 0:
        return []
    tail = (res.stdout + res.stderr).strip()[-600:]
    if res.returncode == 5:
        return [f"`{label}` selects no test (pytest exit 5): {tail}"]
    return [f"`{label}` is rejected (exit {res.returncode}): {tail}"]


def _check_cli(args: tuple[str, ...], inline: bool, artifacts: Path) -> list[str]:
    from harness.cli import COMMANDS

    if not args or args[0].startswith("-"):
        return _flags_in_help("goverse-harness", (sys.executable, "-m", "harness.cli"), args)
    sub, rest = args[0], args[1:]
    if sub not in COMMANDS:
        return [f"`goverse-harness {sub}`: no such subcommand (known: {', '.join(COMMANDS)})"]
    if sub == "run" and not inline and not has_placeholder(rest):
        return _collect(f"goverse-harness run {shlex.join(rest)}",
                        [sys.executable, "-m", "harness.cli", "run", *_expand(rest)], artifacts)
    if sub == "run":  # placeholders (or an inline span): the options are checked, nothing runs
        return _flags_in_help("goverse-harness run", PYTEST_HELP, rest)
    return _flags_in_help(f"goverse-harness {sub}", (sys.executable, "-m", "harness.cli", sub), rest)


def _forwarded(script: Path, args: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The commands of a shell script's lines that pass its arguments on (``"$@"``), with ours filled in."""
    out = []
    for line in script.read_text(encoding="utf-8").splitlines():
        if '"$@"' not in line or line.lstrip().startswith("#"):
            continue
        for words in _split(line):
            if '"$@"' in words or "$@" in words:
                words = [w for w in words if w not in ('"$@"', "$@")] + list(args)
                argv = _ours(words)
                if argv is not None:
                    out.append(argv)
    return out


def _check_script(argv: tuple[str, ...], artifacts: Path) -> list[str]:
    path = ROOT / argv[0]
    if not path.is_file():
        return [f"`{argv[0]}` does not exist"]
    if not os.access(path, os.X_OK):
        return [f"`{argv[0]}` is not executable"]
    head = path.read_text(encoding="utf-8").split("\n", 1)[0]
    if "python" in head:
        return _flags_in_help(argv[0], (sys.executable, str(path)), argv[1:])
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    if syntax.returncode != 0:
        return [f"`{argv[0]}` has a shell syntax error: {syntax.stderr.strip()}"]
    if len(argv) == 1:
        return []
    targets = _forwarded(path, argv[1:])
    if not targets:
        return [f"`{argv[0]}` takes no arguments (no \"$@\" line we can check), but the docs pass {argv[1:]}"]
    problems: list[str] = []
    for t in targets:
        problems += check(Command(argv[0], 0, t), artifacts)
    return problems


def check(cmd: Command, artifacts: Path) -> list[str]:
    """What is wrong with one documented command (empty: the code accepts it)."""
    head, args = cmd.argv[0], cmd.argv[1:]
    if head == "goverse-harness":
        return _check_cli(args, cmd.inline, artifacts)
    if head == "pytest" and has_placeholder(args):
        return _flags_in_help("pytest", PYTEST_HELP, args)
    if head == "pytest":
        return _collect(shlex.join(cmd.argv), [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                               *_expand(args)], artifacts)
    return _check_script(cmd.argv, artifacts)


def check_all(cmds: list[Command], artifacts: Path) -> dict[Command, list[str]]:
    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) * 2))) as pool:
        return dict(zip(cmds, pool.map(lambda c: check(c, artifacts), cmds), strict=True))


# ---- the tests ----------------------------------------------------------------------------------------
COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[Command, list[str]]:
    return check_all(COMMANDS, tmp_path_factory.mktemp("artifacts"))


def test_the_docs_show_the_commands_we_expect() -> None:
    """Guards the extraction itself: an empty list would make every other test here vacuous."""
    shown = {c.argv[0] if c.argv[0] != "goverse-harness" else " ".join(c.argv[:2]) for c in COMMANDS}
    assert {"scripts/main", "scripts/test", "goverse-harness run", "goverse-harness report"} <= shown, shown
    assert any(c.source == "README.md" and not c.inline for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.id)
def test_documented_command_is_accepted(cmd: Command, results: dict[Command, list[str]]) -> None:
    assert results[cmd] == [], f"{cmd.source}:{cmd.line}: " + "\n".join(results[cmd])


WRONG_DOC = """\
Some prose with `goverse-harness doctor --verbose` and `goverse-harness report RUN [--compare BASELINE]`.

```bash
goverse-harness run -m e2e --no-such-flag
goverse-harness frobnicate --now
goverse-harness report latest --no-such-option
pytest tests/report/test_job_summary.py --nope
scripts/does-not-exist
scripts/main -k sigkill --bug no-such-bug
goverse-harness run -m e2e -k zz_no_scenario_has_this_name
FOO=1 goverse-harness run -m e2e -k sigkill && kubectl get pods   # fine: and kubectl is not ours
python3 -m pytest tests/report/test_job_summary.py \\
    -k cells
goverse-harness run --stack goverse --goverse-node-bin /path/to/goverse-node -m e2e
goverse-harness run --stack goverse --goverse-node-bin /path/to/goverse-node --goverse-nodes-bin X -m e2e
```

```python
goverse-harness run --not-a-shell-block
```
"""


def test_the_checker_reports_every_mistake_of_a_wrong_document(tmp_path: Path) -> None:
    cmds = extract(WRONG_DOC, "wrong.md")
    assert [" ".join(c.argv) for c in cmds] == [
        "goverse-harness run -m e2e --no-such-flag",
        "goverse-harness frobnicate --now",
        "goverse-harness report latest --no-such-option",
        "pytest tests/report/test_job_summary.py --nope",
        "scripts/does-not-exist",
        "scripts/main -k sigkill --bug no-such-bug",
        "goverse-harness run -m e2e -k zz_no_scenario_has_this_name",
        "goverse-harness run -m e2e -k sigkill",
        "pytest tests/report/test_job_summary.py -k cells",
        "goverse-harness run --stack goverse --goverse-node-bin /path/to/goverse-node -m e2e",
        "goverse-harness run --stack goverse --goverse-node-bin /path/to/goverse-node --goverse-nodes-bin X -m e2e",
        "goverse-harness doctor --verbose",
        "goverse-harness report RUN --compare BASELINE",
    ]
    assert [c.line for c in cmds[:2]] == [4, 5] and cmds[-1].inline
    results = check_all(cmds, tmp_path)
    verdicts = {" ".join(c.argv): problems for c, problems in results.items()}
    assert "unrecognized arguments: --no-such-flag" in verdicts["goverse-harness run -m e2e --no-such-flag"][0]
    assert "no such subcommand" in verdicts["goverse-harness frobnicate --now"][0]
    assert verdicts["goverse-harness report latest --no-such-option"] == [
        "`goverse-harness report` has no option --no-such-option"]
    assert "unrecognized arguments: --nope" in verdicts["pytest tests/report/test_job_summary.py --nope"][0]
    assert verdicts["scripts/does-not-exist"] == ["`scripts/does-not-exist` does not exist"]
    assert "unknown seeded bug no-such-bug" in verdicts["scripts/main -k sigkill --bug no-such-bug"][0]
    assert "selects no test" in verdicts["goverse-harness run -m e2e -k zz_no_scenario_has_this_name"][0]
    assert verdicts["goverse-harness doctor --verbose"] == ["`goverse-harness doctor` has no option --verbose"]
    # and what is right stays right
    assert verdicts["goverse-harness run -m e2e -k sigkill"] == []
    assert verdicts["pytest tests/report/test_job_summary.py -k cells"] == []
    assert verdicts["goverse-harness report RUN --compare BASELINE"] == []
    placeholder = "goverse-harness run --stack goverse --goverse-node-bin /path/to/goverse-node"
    assert verdicts[placeholder + " -m e2e"] == []
    assert verdicts[placeholder + " --goverse-nodes-bin X -m e2e"] == [
        "`goverse-harness run` has no option --goverse-nodes-bin"]
    assert not list(Path(tmp_path).glob("runs/*/scenarios")), "collection must not deploy anything"


def test_a_script_that_drops_its_arguments_is_reported(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "setup.sh"
    problems = check(Command("x.md", 1, ("scripts/setup.sh", "--fast")), tmp_path)
    assert script.is_file() and problems == [
        "`scripts/setup.sh` takes no arguments (no \"$@\" line we can check), but the docs pass ('--fast',)"]
