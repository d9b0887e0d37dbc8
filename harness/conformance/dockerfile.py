"""Seed §1.1/§1.2 checks over a Dockerfile and its .dockerignore (pure: text in, judgement out).

Why parse rather than grep: "is the *runtime* stage non-root" depends on which FROM is last, on ARG
substitution in FROM lines and on line continuations; a grep for ``USER`` anywhere would pass a
Dockerfile whose build stage drops privileges and whose runtime stage runs as root. The parser
understands exactly what these checks need (stages, instructions, flags) and nothing more.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.conformance.model import Judgement, failed, passed, unknown

MINIMAL_BASES = re.compile(r"(^|/)(scratch$|distroless|chainguard|wolfi|busybox)|alpine|[-:.]slim\b|-micro\b|"
                           r"-minimal\b", re.I)
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|golang|go build|cargo|rustc|"
                         r"apt-get install|apk add|yum install|dnf install|pip install|npm (ci|install))\b", re.I)
ROOT_USERS = {"root", "0"}
#: paths that must not reach the build context (seed §1.2's example .dockerignore)
MUST_EXCLUDE = (".git/HEAD", ".github/workflows/ci.yml", "tests/test_example.py", "docs/index.md")


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str
    line: int


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with comments dropped and ``\\`` continuations joined."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continuation are skipped by Docker too
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        out.append((start, " ".join(p for p in buf if p)))
        buf = []
    if buf:
        out.append((start, " ".join(p for p in buf if p)))
    return out


def _substitute(text: str, args: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return args.get(name, m.group(0))
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile. ARGs declared before the first FROM are substituted in FROM lines."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for n, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
            continue
        if keyword == "FROM":
            words = [w for w in _substitute(rest, global_args).split() if not w.startswith("--platform")]
            base = words[0] if words else ""
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(len(stages), base, alias, n))
            continue
        if stages:
            stages[-1].instructions.append(Instruction(keyword, rest, n))
    return stages


def _copy_from(ins: Instruction) -> str | None:
    for word in ins.args.split():
        if word.startswith("--from="):
            return word.split("=", 1)[1]
    return None


def check_multi_stage(text: str) -> Judgement:
    stages = parse(text)
    if not stages:
        return unknown("no FROM instruction: not a Dockerfile")
    final = stages[-1]
    if len(stages) < 2:
        return failed(f"single stage FROM {final.base}: build tools end up in the runtime image")
    earlier = {s.name for s in stages[:-1] if s.name} | {str(s.index) for s in stages[:-1]}
    copies = [c for c in final.of("COPY") if _copy_from(c) in earlier]
    if not copies:
        return failed(f"runtime stage (FROM {final.base}, line {final.line}) copies nothing from a build stage")
    builds = [f"line {i.line}: {i.keyword} {i.args[:80]}" for i in final.of("RUN") if BUILD_TOOLS.search(i.args)]
    if builds:
        return failed("runtime stage installs or builds: " + "; ".join(builds), stages=len(stages))
    return passed(f"{len(stages)} stages; runtime stage FROM {final.base} copies from stage "
                  f"{', '.join(sorted({str(_copy_from(c)) for c in copies}))} and builds nothing",
                  stages=len(stages), runtime_base=final.base)


def check_non_root(text: str) -> Judgement:
    stages = parse(text)
    if not stages:
        return unknown("no FROM instruction: not a Dockerfile")
    final = stages[-1]
    users = final.of("USER")
    if not users:
        return failed(f"runtime stage (FROM {final.base}) sets no USER: the image runs as root unless the "
                      "base image says otherwise")
    last = users[-1]
    user = last.args.split(":", 1)[0].strip()
    if user in ROOT_USERS:
        return failed(f"runtime stage line {last.line}: USER {last.args}")
    return passed(f"runtime stage runs as USER {last.args} (line {last.line})", user=last.args)


def check_minimal_base(text: str) -> Judgement:
    stages = parse(text)
    if not stages:
        return unknown("no FROM instruction: not a Dockerfile")
    base = stages[-1].base
    if MINIMAL_BASES.search(base):
        return passed(f"runtime base {base}", base=base)
    return failed(f"runtime base {base} is not distroless, alpine, slim or scratch", base=base)


# ---------------------------------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching (Go filepath.Match plus ``**``): ``*`` stays within a path segment."""
    p = pattern.strip().lstrip("/")
    if p.startswith("./"):
        p = p[2:]
    out = []
    i = 0
    while i < len(p):
        c = p[i]
        if p.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(p) and p[i] == "/":
                out.append("/?")
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "$")


def ignored(path: str, patterns: Iterable[str]) -> bool:
    """Whether ``path`` (relative to the context) is excluded: last matching pattern wins, ``!`` re-
    includes, and a pattern matching a parent directory excludes everything below it."""
    rules = [(p.startswith("!"), _pattern_regex(p[1:] if p.startswith("!") else p))
             for p in (ln.strip() for ln in patterns) if p and not p.startswith("#")]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for negate, rx in rules:
        if any(rx.match(c) for c in candidates):
            result = not negate
    return result


def copy_sources(text: str) -> list[str]:
    """Context paths the final and build stages COPY/ADD (not ``--from`` copies, not URLs)."""
    out: list[str] = []
    for stage in parse(text):
        for ins in stage.of("COPY") + stage.of("ADD"):
            if _copy_from(ins) is not None:
                continue
            try:
                words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            except ValueError:
                continue
            out.extend(w for w in words[:-1] if "://" not in w)
    return out


def check_dockerignore(dockerfile_text: str, ignore_text: str | None, ignore_name: str = ".dockerignore") -> Judgement:
    if ignore_text is None:
        return failed(f"no {ignore_name}: the whole repository (.git included) is sent as build context")
    patterns = ignore_text.splitlines()
    leaked = [p for p in MUST_EXCLUDE if not ignored(p, patterns)]
    sources = [s.rstrip("/") for s in copy_sources(dockerfile_text)]
    # a directory source counts as kept when what is under it is kept (``**`` then ``!dir/**``)
    missing = [s for s in sources if s not in (".", "") and ignored(s, patterns) and ignored(f"{s}/x.py", patterns)]
    problems = []
    if leaked:
        problems.append("not excluded: " + ", ".join(leaked))
    if missing:
        problems.append("excluded but COPYed by the Dockerfile: " + ", ".join(missing))
    if problems:
        return failed(f"{ignore_name}: " + "; ".join(problems), leaked=leaked, missing=missing)
    return passed(f"{ignore_name} excludes {', '.join(p.split('/')[0] for p in MUST_EXCLUDE)} and keeps "
                  f"{', '.join(sources) or 'nothing copied'}", sources=sources)


def find_dockerignore(dockerfile: Path, context: Path) -> Path | None:
    """BuildKit reads ``<Dockerfile>.dockerignore`` next to the Dockerfile first, then the context's."""
    for p in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        if p.is_file():
            return p
    return None
