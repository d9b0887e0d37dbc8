"""Faults as typed data (spec, shapes) and the nemesis that applies them through a platform injector."""
