"""The tool list as real hosts convert it: google-genai's MCP converter (Gemini) and openai-agents'
strict conversion (OpenAI), each run on what tools/list really sends; and the size every host pays per
turn for it."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents.mcp import MCPServerStdio
from agents.mcp.util import MCPUtil
from google.genai._mcp_utils import mcp_to_gemini_tool
from mcp import Client
from mcp.types import Tool

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import ALL_TOOLS, MODEL_FACING_BYTES_PER_TOOL, text

pytestmark = pytest.mark.anyio

# openai-agents' handle on a server; constructing it starts nothing.
HOST = MCPServerStdio(params={"command": "dicomweb-mcp"}, name="dicomweb")


def model_facing_bytes(tool: Tool) -> int:
    return len(
        json.dumps({"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema})
    )


async def listed_tools(tmp_path: Path, *, named: bool = False) -> list[Tool]:
    """The tool list of one server; ``named``: of two named servers (a server enum on every tool, and
    transfer_instances)."""
    config = Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path, allow_delete=True)
    if named:
        config = replace(
            config, servers=(replace(config.server, name="pacs"), replace(config.server, name="research"))
        )
    async with Client(build_server(config)) as client:
        return (await client.list_tools()).tools


async def every_shape(tmp_path: Path) -> list[Tool]:
    """Every tool as a host may see it: with one server, and with named servers."""
    named = await listed_tools(tmp_path, named=True)
    assert {t.name for t in named} == ALL_TOOLS | {"transfer_instances"}
    assert all("enum" in t.input_schema["properties"].get("server", {"enum": 1}) for t in named)
    return await listed_tools(tmp_path) + named


def descriptions(schema: Any, path: str = "") -> dict[str, str]:
    """Every property description in a JSON schema (or a converted one), by property path."""
    found: dict[str, str] = {}
    if isinstance(schema, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, dict) and sub.get("description"):
                found[f"{path}{name}"] = sub["description"]
            found.update(descriptions(sub, f"{path}{name}."))
        if isinstance(schema.get("items"), dict):
            found.update(descriptions(schema["items"], path))
    return found


async def test_the_tool_list_fits_the_budget(tmp_path: Path) -> None:
    tools = await listed_tools(tmp_path)
    assert {t.name for t in tools} == ALL_TOOLS
    total = sum(model_facing_bytes(t) for t in tools)
    assert total <= MODEL_FACING_BYTES_PER_TOOL * len(tools), {t.name: model_facing_bytes(t) for t in tools}


async def test_no_keyword_that_a_host_converter_chokes_on(tmp_path: Path) -> None:
    for tool in await every_shape(tmp_path):
        published = json.dumps(tool.input_schema)
        for keyword in (
            '"additionalProperties"',
            '"anyOf"',
            '"$ref"',
            '"$defs"',
            '"title"',
            '"default": null',
        ):
            assert keyword not in published, (tool.name, keyword)


async def test_gemini_converts_every_tool_and_keeps_every_description(tmp_path: Path) -> None:
    for tool in await every_shape(tmp_path):
        converted = mcp_to_gemini_tool(tool)
        declaration = converted.function_declarations[0]  # type: ignore[index]
        assert declaration.name == tool.name and declaration.description == tool.description
        parameters = declaration.parameters.model_dump(exclude_none=True) if declaration.parameters else {}
        assert descriptions(parameters) == descriptions(tool.input_schema), tool.name


async def test_openai_strict_for_every_tool(tmp_path: Path) -> None:
    for tool in await every_shape(tmp_path):
        function = MCPUtil.to_function_tool(tool, HOST, convert_schemas_to_strict=True)
        assert function.strict_json_schema, f"{tool.name} fell back to non-strict"
        assert descriptions(function.params_json_schema) == descriptions(tool.input_schema), tool.name


def strict_call(schema: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Arguments as a model in strict mode sends them: every property present; what it means to leave
    out is sent empty (or at its default)."""
    arguments: dict[str, Any] = {}
    for name, sub in schema["properties"].items():
        if name in given:
            arguments[name] = given[name]
        elif "default" in sub:
            arguments[name] = sub["default"]
        else:
            arguments[name] = {"string": "", "array": [], "boolean": False, "integer": None}[sub["type"]]
    return {k: v for k, v in arguments.items() if v is not None}


@pytest.mark.parametrize(
    ("tool", "given", "expected_query"),
    [
        ("search_studies", {"patient_name": "Anony*"}, "PatientName=Anony*"),
        (
            "search_series",
            {"study_uid": "1.2.3", "filters": ["BodyPartExamined=CHEST"]},
            "BodyPartExamined=CHEST",
        ),
        (
            "search_instances",
            {"study_uid": "1.2.3", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"},
            "SOPClassUID=",
        ),
    ],
)
async def test_a_strict_mode_call_means_what_the_model_meant(
    tool: str, given: dict[str, Any], expected_query: str, tmp_path: Path
) -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json=[]) if "/dicom-web/" in request.url.path else httpx.Response(404)

    config = Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path)
    listed = {t.name: t for t in await listed_tools(tmp_path)}
    strict = MCPUtil.to_function_tool(listed[tool], HOST, convert_schemas_to_strict=True)
    arguments = strict_call(copy.deepcopy(strict.params_json_schema), given)
    async with Client(build_server(config, transports={"default": httpx.MockTransport(answer)})) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    query = asked[-1].partition("?")[2]
    assert expected_query in query
    # The arguments sent empty did not become empty-valued (universal) matches.
    assert all(not part.endswith("=") for part in query.split("&")), query
