"""The base of every record the package hands up a layer: saved files, store outcomes, tool results.

One base so that a record made by the file store or the DICOMweb client is the record a tool returns:
no copy of the same fields per layer. Fields without a value are left out of the JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

__all__ = ["Record"]


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Records leave out fields that have no value, so their schema never needs to allow null: an
    optional ``X | None`` field is published as plain ``X``, not required. Simpler schemas read better
    for agents and validate several times faster in MCP clients (they validate every result)."""
    for prop in schema.get("properties", {}).values():
        variants = prop.get("anyOf")
        if isinstance(variants, list) and {"type": "null"} in variants:
            rest = [v for v in variants if v != {"type": "null"}]
            prop.pop("anyOf")
            if prop.get("default", ...) is None:
                prop.pop("default")
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest


class Record(BaseModel):
    """Immutable, closed, and serialized without the fields that are None."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_absent_not_null)

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data
