"""YAML for Go tools (kustomize, helm): every string quoted, so no tool reads it as another type.

Why: PyYAML writes YAML 1.1 and leaves a string plain when *YAML 1.1* would read it back as a string.
kustomize reads YAML 1.2 (go-yaml v3), whose number rules differ: ``1e345678`` (a possible run id,
``secrets.token_hex``) is a plain string to PyYAML and a float to kustomize, which then refuses the
kustomization ("cannot unmarshal number into … Label.labels.pairs of type string"). Quoting every
string removes the disagreement for any reader; multi-line strings (embedded patches) are written as
literal blocks, which both read as strings.
"""

from __future__ import annotations

from typing import Any

import yaml


class _QuotedStrings(yaml.SafeDumper):
    """A SafeDumper whose strings are all quoted (one line) or literal blocks (several lines)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_QuotedStrings.add_representer(str, _str)


def dump(doc: Any) -> str:
    """``doc`` as YAML text with every string quoted; keys keep their order."""
    return yaml.dump(doc, Dumper=_QuotedStrings, sort_keys=False, allow_unicode=True)
