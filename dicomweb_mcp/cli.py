"""The ``dicomweb-mcp`` command: serve (stdio or streamable HTTP), call one tool, check, write schemas."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from . import __version__
from .config import Config
from .errors import ConfigError
from .tools.server import build_server

__all__ = ["main"]

# A placeholder target for commands that only describe the tools (schemas): nothing is contacted.
_DESCRIBE_CONFIG = Config(url="http://localhost/dicom-web", allow_delete=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every URL at INFO, and QIDO URLs carry patient names: keep them out of logs.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomweb-mcp",
        description="MCP server for DICOMweb archives. Configure with DICOMWEB_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"dicomweb-mcp {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve MCP (default: stdio, as MCP hosts launch it)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    call = commands.add_parser("call", help="run one tool through the MCP layer and print its result")
    call.add_argument("tool")
    call.add_argument("arguments", nargs="?", default="{}", help="tool arguments as a JSON object")
    commands.add_parser(
        "check", help="print server_info: is the DICOMweb server reachable, what does it support"
    )
    schemas = commands.add_parser("schemas", help="write (or --check) the tools' JSON Schemas")
    schemas.add_argument("--check", action="store_true", help="exit 1 if schemas/ is out of date")
    schemas.add_argument("--dir", type=Path, default=Path("schemas"), help="directory (default ./schemas)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "schemas":
            _configure_logging("WARNING")
            return write_schemas(args.dir, check=args.check)
        config = Config.from_env()
        _configure_logging(config.log_level)
        if args.command in (None, "serve"):
            server = build_server(config)
            if args.command == "serve" and args.transport == "http":
                from .tools.http import serve_http  # uvicorn is loaded only for this transport

                serve_http(server, config, host=args.host, port=args.port)
            else:
                server.run()
            return 0
        if args.command == "check":
            return anyio.run(_call, config, "server_info", {})
        try:
            arguments = json.loads(args.arguments)
        except ValueError as exc:
            print(f"dicomweb-mcp: the arguments are not valid JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(arguments, dict):
            print("dicomweb-mcp: the arguments must be a JSON object", file=sys.stderr)
            return 2
        return anyio.run(_call, config, args.tool, arguments)
    except ConfigError as exc:
        print(f"dicomweb-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _call(config: Config, tool: str, arguments: dict[str, Any]) -> int:
    async with Client(build_server(config)) as client:
        result = await client.call_tool(tool, arguments)
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        print(f"dicomweb-mcp: {text}", file=sys.stderr)
        return 1
    print(json.dumps(result.structured_content, indent=2))
    return 0


def tool_schemas() -> dict[str, dict[str, Any]]:
    """``{file name: schema}`` for every tool's input and output."""

    async def collect() -> dict[str, dict[str, Any]]:
        tools = await build_server(_DESCRIBE_CONFIG).list_tools()
        files: dict[str, dict[str, Any]] = {}
        for tool in tools:
            files[f"{tool.name}.input.json"] = tool.input_schema
            if tool.output_schema is not None:
                files[f"{tool.name}.output.json"] = tool.output_schema
        return files

    return anyio.run(collect)


def write_schemas(directory: Path, *, check: bool) -> int:
    expected = {
        name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in tool_schemas().items()
    }
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    stale = sorted(
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    )
    extra = sorted(present - expected.keys())
    if check:
        if stale or extra:
            print(
                f"dicomweb-mcp: {directory} is out of date (changed: {', '.join(stale) or 'none'}; "
                f"unknown: {', '.join(extra) or 'none'}). Run: dicomweb-mcp schemas",
                file=sys.stderr,
            )
            return 1
        print(f"{directory}: {len(expected)} schemas up to date")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (directory / name).write_text(expected[name])
    for name in extra:
        (directory / name).unlink()
    print(f"{directory}: {len(stale)} written, {len(extra)} removed, {len(expected)} in all")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
