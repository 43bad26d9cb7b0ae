"""The ``dicomweb-mcp`` command: serve (stdio or streamable HTTP), call one tool, check, write schemas."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
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
_DESCRIBE_CONFIG = Config.single(url="http://localhost/dicom-web", allow_delete=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every URL at INFO, and QIDO URLs carry patient names: keep them out of logs.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


ENVIRONMENT = """\
environment (only DICOMWEB_URL, or DICOMWEB_SERVERS, is required):
  DICOMWEB_URL             the DICOMweb root, e.g. http://localhost:8042/dicom-web (Orthanc) or
                           https://<workspace>-<service>.dicom.azurehealthcareapis.com/v2 (Azure)
  DICOMWEB_AUTH            none | basic | bearer | azure (default: azure for Azure URLs, else none)
  DICOMWEB_USERNAME, DICOMWEB_PASSWORD   for basic;  DICOMWEB_TOKEN   for bearer
  DICOMWEB_AZURE_SCOPE     token scope for azure (default the Azure DICOM service's)
  DICOMWEB_PARTITION       Azure data partition
  DICOMWEB_AZURE_ON_BEHALF_OF   true: Azure as each OAuth caller, with DICOMWEB_AZURE_TENANT_ID,
                           DICOMWEB_AZURE_CLIENT_ID and DICOMWEB_AZURE_CLIENT_SECRET (or _CERTIFICATE)
  DICOMWEB_SERVER_KIND     auto | azure | orthanc | dcm4chee | google | generic (default auto)
  DICOMWEB_SERVERS         a TOML file of named servers ([servers.NAME] url, auth, password_env, ...)
  DICOMWEB_DEIDENTIFY_OPTIONS   modified-dates,clean-descriptors (default) | a subset | none
  DICOMWEB_DOWNLOAD_DIR    where retrieved files are saved (default ~/dicomweb-downloads)
  DICOMWEB_UPLOAD_ROOTS    directories store_instances may read from (default: anywhere)
  DICOMWEB_READ_ONLY       true: no store_instances or delete_instances tool
  DICOMWEB_ALLOW_DELETE    true: a delete_instances tool (permanent deletes)
  DICOMWEB_TIMEOUT         seconds per request (60)
  DICOMWEB_MAX_RETRIES     retries of a refused or throttled request (3)
  DICOMWEB_CONCURRENCY     requests in flight for one store or study retrieve (8)
  DICOMWEB_JOB_CONCURRENCY studies a cohort job works on at once (4)
  DICOMWEB_JOBS_DATABASE   postgresql://user@host:port/db: cohort jobs shared by replicas (default SQLite)
  DICOMWEB_AUDIT_LOG       a JSON line per tool call; unwritable: no start, no call
  DICOMWEB_AUDIT_MAX_BYTES, DICOMWEB_AUDIT_KEEP   rotation: size (50000000) and old files kept (10)
  DICOMWEB_LOG_LEVEL       DEBUG | INFO | WARNING (default) | ERROR, to stderr
  DICOMWEB_MCP_TOKEN       serve --transport http: the bearer token every request must carry
  DICOMWEB_MCP_OAUTH_ISSUER     serve --transport http as an OAuth resource server: the issuer's URL
  DICOMWEB_MCP_PUBLIC_URL       with it: this server's MCP endpoint as clients reach it
  DICOMWEB_MCP_OAUTH_AUDIENCE   with it: the aud tokens carry, if not the public URL (comma-separated)
  DICOMWEB_MCP_OAUTH_SCOPE_PREFIX  with it: what the scope names hosts ask for begin with
                                (Entra ID: the Application ID URI and '/', e.g. api://dicomweb-mcp/)
  DICOMWEB_MCP_ALLOWED_HOSTS    serve --transport http: extra Host names, comma-separated
  DICOMWEB_MCP_ALLOWED_ORIGINS  serve --transport http: browser-based hosts' origins, comma-separated
                                (e.g. http://localhost:6274 for MCP Inspector)
  DICOMWEB_MCP_STATELESS        serve --transport http: true for replicas behind a load balancer
                                (no sessions in the process; see the README's "Deploy for a team")
  DICOMWEB_MCP_STATE_KEY        with it: a secret of 32+ characters, the same on every replica
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomweb-mcp",
        description="MCP server for DICOMweb archives. MCP hosts start it with no arguments (stdio).",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dicomweb-mcp {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve MCP (default: stdio, as MCP hosts launch it)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    call = commands.add_parser(
        "call",
        help="run one tool through the MCP layer and print its result (exit 1 if it, or any file, failed)",
    )
    call.add_argument("tool")
    call.add_argument("arguments", nargs="?", default="{}", help="tool arguments as a JSON object")
    commands.add_parser(
        "check", help="print server_info; exit 1 unless every configured DICOMweb server answers"
    )
    schemas = commands.add_parser("schemas", help="(developers) write or --check the tools' JSON Schemas")
    schemas.add_argument("--check", action="store_true", help="exit 1 if the directory is out of date")
    schemas.add_argument(
        "--dir", type=Path, default=None, help="directory (default: schemas/ of this checkout)"
    )
    return parser


def _schemas_dir(given: Path | None) -> Path | None:
    """The checkout's schemas/ (found from the package, so it works from any directory), or ``given``."""
    if given is not None:
        return given
    checkout = Path(__file__).resolve().parents[1] / "schemas"
    return checkout if checkout.is_dir() else None


def _started() -> None:
    """Start-up is over (``__main__`` paused the cyclic collector for it): what it built lives as long as
    the process, so it is frozen out of the collector's sight and collection resumes."""
    gc.freeze()
    gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "schemas":
            _started()
            _configure_logging("WARNING")
            directory = _schemas_dir(args.dir)
            if directory is None:
                print(
                    "dicomweb-mcp: no schemas/ directory beside this installation (it is a developer "
                    "command for a checkout): pass --dir DIRECTORY",
                    file=sys.stderr,
                )
                return 2
            return write_schemas(directory, check=args.check)
        config = Config.from_env()
        _configure_logging(config.log_level)
        if args.command is None or (args.command == "serve" and args.transport == "stdio"):
            _refuse_acting_over_stdio(config)
        server = build_server(config) if args.command in (None, "serve") else None
        _started()
        if server is not None:
            if args.command == "serve" and args.transport == "http":
                from .tools.http import serve_http  # uvicorn is loaded only for this transport

                serve_http(server, config, host=args.host, port=args.port)
            else:
                if sys.stdin.isatty():
                    # Someone ran it by hand: say why nothing seems to happen.
                    print(
                        "dicomweb-mcp: waiting for an MCP client on stdin/stdout (MCP hosts start this "
                        "command themselves; see --help). Ctrl-C to stop.",
                        file=sys.stderr,
                    )
                anyio.run(server.serve_stdio)
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


def _refuse_acting_over_stdio(config: Config) -> None:
    """A server that acts as each signed-in user has no user over stdio: refused at start, not per call."""
    acting = [server.name for server in config.servers if server.on_behalf_of]
    if acting:
        raise ConfigError(
            f"Server {acting[0]!r} acts on behalf of the signed-in user (on_behalf_of), and over stdio no "
            "user signs in: serve it with --transport http (OAuth), or remove on_behalf_of to use this "
            "process's own Azure identity."
        )


async def _call(config: Config, tool: str, arguments: dict[str, Any]) -> int:
    async with Client(build_server(config)) as client:
        result = await client.call_tool(tool, arguments)
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        print(f"dicomweb-mcp: {text}", file=sys.stderr)
        return 1
    content = result.structured_content or {}
    print(json.dumps(content, indent=2))
    if tool == "server_info":
        # Every configured server must answer: a check that passes with one archive down misleads.
        down = [info for info in [content, *(content.get("servers") or [])] if not info.get("reachable")]
        for info in down:
            reason = info.get("error") or "the server did not answer"
            print(f"dicomweb-mcp: server {info.get('name')!r}: {reason}", file=sys.stderr)
        if down:
            return 1
    failed = (content.get("counts") or {}).get("failed", 0)
    if failed:
        print(f"dicomweb-mcp: {failed} file(s) failed; see 'failed' above", file=sys.stderr)
        return 1
    return 0


def tool_schemas() -> dict[str, dict[str, Any]]:
    """``{file name: schema}`` for every tool's input and output: as one server publishes them, and
    transfer_instances as two servers (default and research) do."""

    async def collect() -> dict[str, dict[str, Any]]:
        research = replace(_DESCRIBE_CONFIG.server, name="research")
        two = replace(_DESCRIBE_CONFIG, servers=(*_DESCRIBE_CONFIG.servers, research))
        transfer = [t for t in await build_server(two).list_tools() if t.name == "transfer_instances"]
        tools = await build_server(_DESCRIBE_CONFIG).list_tools() + transfer
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
