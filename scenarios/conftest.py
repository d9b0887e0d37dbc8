"""Scenario modules get the harness fixtures from the goverse-harness pytest plugin (pytest11 entry
point); nothing scenario-specific lives here so that scenarios stay platform-agnostic."""
