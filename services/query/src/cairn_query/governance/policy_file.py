"""Loading a policy file: YAML with the line of every key kept, so a mistake is refused with its line.

All-or-nothing: any mistake raises PolicyError, and whoever loads (startup, `POST /admin/policy/reload`) keeps
the policy it had.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cairn_query.governance.policy import _RULE, KINDS, Policy, PolicyError, Toxicity, ToxicityRule

DEFAULT_POLICY = "default-policy.yaml"  # shipped in the package; changes no answer (docs/governance.md)


class _Lined(dict[str, Any]):
    """A YAML mapping that remembers its line and each key's line, for error messages."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Lined:
    for key, _ in node.value:
        # Every key a policy knows is text; `1:`, `null:` or `true:` would otherwise reach the checks below
        # as an int, None or bool, which neither match a key's line nor sort beside text keys.
        if not (
            isinstance(key, yaml.ScalarNode) and key.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG
        ):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not {key.value!r}", key.start_mark
            )
    data = _Lined(loader.construct_mapping(node, deep=True))
    data.line = node.start_mark.line + 1
    data.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_policy(text: str, source: str) -> list[Any]:
    """The rules of a policy file's text; PolicyError naming the line of the first mistake."""
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise PolicyError(source, f"not valid YAML: {exc.problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, f"not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise PolicyError(source, "nested too deeply to be a policy") from None
    if doc is None:
        return []
    if not isinstance(doc, _Lined):
        raise PolicyError(source, "the file must be a mapping with a 'rules' list", 1)
    unknown = set(doc) - {"version", "rules"}
    if unknown:
        key = sorted(unknown)[0]
        raise PolicyError(source, f"unknown key {key!r} (expected 'version' and 'rules')", doc.key_lines[key])
    if doc.get("version", 1) != 1:
        raise PolicyError(source, "only 'version: 1' is known", doc.key_lines.get("version"))
    raw = doc.get("rules") or []
    if not isinstance(raw, list):
        raise PolicyError(source, "'rules' must be a list", doc.key_lines.get("rules"))
    rules: list[Any] = []
    names: set[str] = set()
    for item in raw:
        line = item.line if isinstance(item, _Lined) else doc.key_lines.get("rules")
        if not isinstance(item, _Lined):
            raise PolicyError(source, "each rule must be a mapping (name, kind, action, ...)", line)
        rules.append(_rule(item, source))
        if item["name"] in names:
            raise PolicyError(source, f"a second rule named {item['name']!r}", line)
        names.add(item["name"])
    return rules


def _rule(item: _Lined, source: str) -> Any:
    kind = item.get("kind")
    if kind not in KINDS:
        raise PolicyError(
            source,
            f"unknown rule kind {kind!r}; the kinds are {', '.join(KINDS)}",
            item.key_lines.get("kind", item.line),
        )
    try:
        return _RULE.validate_python(dict(item))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if p != kind]
        key = loc[0] if loc else None
        line = item.key_lines.get(key, item.line) if key else item.line
        what = f"{key}: " if key else ""
        name = item.get("name")
        rule = f"rule {name!r}" if isinstance(name, str) else "a rule"
        raise PolicyError(source, f"{rule}: {what}{err['msg']}", line) from None


def load_policy(path: str | None) -> Policy:
    """The policy at `path`, or the shipped default; blocking (reads the file, may import the classifier)."""
    if path:
        source = path
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(source, f"cannot be read: {exc}") from None
    else:
        source = f"(default) {DEFAULT_POLICY}"
        text = resources.files("cairn_query.governance").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
    rules = parse_policy(text, source)
    toxicity = Toxicity() if any(isinstance(r, ToxicityRule) for r in rules) else None
    return Policy(rules, source, toxicity)
