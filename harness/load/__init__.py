"""Load testing with locust: the generator (headless subprocesses), raw samples merged into the
scenario's history, per-phase analysis, budgets as checkers, plots and the standalone load report.

See docs/load-testing.md. ``loadtests/locustfile.py`` is the locust side (usable on its own);
everything here runs in the harness process and never imports locust (it patches the interpreter).
"""

from harness.checkers.load_analysis import LoadAnalysis, Phase, PhaseStats, analyze, find_knee
from harness.load.driver import LoadDriver, LoadProfile, profile_from_env
from harness.load.generator import GeneratorSpec, LocustGenerator

__all__ = [
    "GeneratorSpec",
    "LoadAnalysis",
    "LoadDriver",
    "LoadProfile",
    "LocustGenerator",
    "Phase",
    "PhaseStats",
    "analyze",
    "find_knee",
    "profile_from_env",
]
