"""`goverse-harness explore`: seeded random fault schedules against one stack (docs/explore.md)."""
