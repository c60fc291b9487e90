"""Backward-compatibility check of a published event schema against the current model.

A published version may only grow: new *optional* fields, new enum values. Removing, renaming or
retyping a field, making a new field required, or making a required field optional (consumers rely on
it being there) breaks integration teams and needs a new version.

One narrowing is no change: a string that gains a pattern refusing only control characters
(``contracts.base.CONTROL_PATTERNS``). No published message can have held one: every producer stores an
event in its PostgreSQL outbox before publishing it, and text there cannot hold NUL; and a consumer could
not have stored it either. The schema now says what was always true.
"""

from __future__ import annotations

from typing import Any

from contracts.base import CONTROL_PATTERNS

Schema = dict[str, Any]
# Annotations, not structure: dropped where they are schema keywords, never as the names of properties.
_IGNORED = {"title", "description", "examples", "default", "$defs", "$id", "$schema"}


def _resolve(node: Any, defs: Schema) -> Any:
    """Inline ``$ref``s so two schemas compare by structure, not by how pydantic named the parts."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _resolve(defs[name], defs)
        resolved: dict[str, Any] = {}
        for k, v in node.items():
            if k in ("properties", "patternProperties") and isinstance(v, dict):
                # keys here are field names: a field called "title" or "default" is a field like any other
                resolved[k] = {name: _resolve(sub, defs) for name, sub in v.items()}
            elif k not in _IGNORED:
                resolved[k] = _resolve(v, defs)
        return resolved
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _without_control_pattern(old: Any, new: Any) -> Any:
    """``new`` without a pattern refusing only control characters that ``old`` did not have."""
    if not (isinstance(old, dict) and isinstance(new, dict)) or "pattern" in old:
        return new
    if new.get("pattern") not in CONTROL_PATTERNS:
        return new
    return {k: v for k, v in new.items() if k != "pattern"}


def _compare(old: Any, new: Any, path: str, problems: list[str]) -> None:
    new = _without_control_pattern(old, new)
    if isinstance(old, dict) and isinstance(new, dict) and "properties" in old:
        if "properties" not in new:
            problems.append(f"{path or '<root>'}: is no longer an object")
            return
        old_props, new_props = old["properties"], new["properties"]
        for name, old_sub in old_props.items():
            if name not in new_props:
                problems.append(f"{path}{name}: field removed")
            else:
                _compare(old_sub, new_props[name], f"{path}{name}.", problems)
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in sorted(new_required - old_required):
            problems.append(f"{path}{name}: became required")
        for name in sorted((old_required - new_required) & set(new_props)):
            problems.append(f"{path}{name}: no longer required")
        return
    if isinstance(old, dict) and isinstance(new, dict) and "enum" in old and "enum" in new:
        removed = [v for v in old["enum"] if v not in new["enum"]]
        if removed:
            problems.append(f"{path.rstrip('.')}: enum values removed {removed}")
        rest_old = {k: v for k, v in old.items() if k != "enum"}
        rest_new = {k: v for k, v in new.items() if k != "enum"}
        if rest_old != rest_new:
            problems.append(f"{path.rstrip('.')}: type changed")
        return
    if isinstance(old, dict) and isinstance(new, dict) and len(old.get("anyOf", [])) == len(new.get("anyOf", [1])):
        for old_branch, new_branch in zip(old["anyOf"], new["anyOf"], strict=True):
            _compare(old_branch, new_branch, path, problems)
        return
    if isinstance(old, dict) and isinstance(new, dict) and old.get("type") == "array" == new.get("type"):
        _compare(old.get("items"), new.get("items"), f"{path}[]." if path else "[].", problems)
        return
    if old != new:
        problems.append(f"{path.rstrip('.') or '<root>'}: type changed")


def breaking_changes(published: Schema, current: Schema) -> list[str]:
    """Everything in ``current`` that a reader or writer of ``published`` would trip over."""
    problems: list[str] = []
    _compare(_resolve(published, published.get("$defs", {})), _resolve(current, current.get("$defs", {})), "", problems)
    return problems
