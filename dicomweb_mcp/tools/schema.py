"""Input schemas as every LLM host can take them.

Hosts send each tool's schema to the model on every turn, and their converters are strict about shape:
google-genai fails on ``additionalProperties`` and drops descriptions that sit beside ``anyOf``; OpenAI's
strict mode refuses open maps; Gemini's subset has no ``$ref``. So the published schema is plain: optional
arguments are typed properties that are simply not required, with the description on the property, no
generated titles, no ``$defs``. The server still validates every call with the full pydantic model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["lean_input_schema"]

# Keywords that cost bytes on every turn and tell a model nothing it acts on: leaving an optional
# argument out is how a model asks for its default.
_DROPPED = frozenset({"title", "additionalProperties", "pattern", "maxLength", "maxItems", "default"})


def lean_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    definitions: dict[str, Any] = schema.get("$defs", {})

    def lean(node: Any) -> Any:
        if isinstance(node, list):
            return [lean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        reference = node.pop("$ref", None)
        if isinstance(reference, str):
            node = {**definitions[reference.rpartition("/")[2]], **node}
        variants = node.get("anyOf")
        if isinstance(variants, list) and {"type": "null"} in variants:
            rest = [v for v in variants if v != {"type": "null"}]
            node.pop("anyOf")
            if len(rest) == 1:
                # The property's own description wins over the inner type's.
                node = {**rest[0], **node}
            else:
                node["anyOf"] = rest
            if node.get("default", ...) is None:
                node.pop("default")
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key == "$defs" or (key == "default" and value is False):
                continue
            if key == "properties":
                result[key] = {name: lean(sub) for name, sub in value.items()}
            else:
                result[key] = lean(value) if isinstance(value, dict | list) else value
        return result

    return lean(schema)  # type: ignore[no-any-return]
