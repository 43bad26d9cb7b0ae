"""Errors that teach: what the agent reads when it names a tool that is not there, passes an argument that
is wrong, or meets a failure nobody foresaw. Each names what would have worked.
"""

from __future__ import annotations

import difflib
import re
import traceback
from pathlib import Path

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

__all__ = ["ToolCrash", "argument_error_message", "crash_message", "unknown_tool_message"]

# Tools that exist only when the operator allows them, and the setting that does.
_ENABLED_BY = {
    "store_instances": "DICOMWEB_READ_ONLY=false",
    "delete_instances": "DICOMWEB_ALLOW_DELETE=true (and DICOMWEB_READ_ONLY=false)",
}

_PACKAGE = str(Path(__file__).resolve().parent.parent)


class ToolCrash(ToolError):
    """The last guard's error (``crash_message``): a fault here, told apart from a refusal by the audit
    trail, and answered like any ``ToolError``."""


def crash_message(tool: str, exc: BaseException) -> str:
    """A failure the package did not foresee, in words: the tool, the step it was in (the innermost
    function of the package on the traceback), the exception, and what to do."""
    step = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename.startswith(_PACKAGE):
            step = frame.f_code.co_name
    # A URL in the text may carry credentials: they never reach a result.
    detail = re.sub(r"//[^/\s@]+@", "//", str(exc)).strip()[:300]
    return (
        f"Error executing tool {tool}: it failed unexpectedly"
        + (f" in {step}" if step else "")
        + f" with {type(exc).__name__}"
        + (f" ({detail})" if detail else "")
        + ". This is a fault in dicomweb-mcp, logged with its traceback; the other tools still work, and "
        "retrieve_metadata or retrieve_instances give the data as the server holds it."
    )


def unknown_tool_message(name: str, available: list[str]) -> str:
    text = f"There is no tool named {name!r}."
    if name in _ENABLED_BY:
        text += f" {name} is switched off on this server: the operator enables it with {_ENABLED_BY[name]}."
    else:
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        if close:
            text += f" Did you mean {close[0]!r}?"
    return text + f" Tools here: {', '.join(sorted(available))}."


def _snake(name: str) -> str:
    """PatientName -> patient_name, StudyInstanceUID -> study_instance_uid."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


# DICOM keywords a radiology user types, and the argument that means the same.
_KEYWORD_ARGUMENTS = {
    "StudyInstanceUID": "study_uid",
    "SeriesInstanceUID": "series_uid",
    "SOPInstanceUID": "instance_uid",
    "ModalitiesInStudy": "modality",
}


def _suggest(given: str, valid: list[str]) -> str | None:
    for candidate in (_KEYWORD_ARGUMENTS.get(given), _snake(given), given.lower()):
        if candidate in valid:
            return candidate
    close = difflib.get_close_matches(_snake(given), valid, n=1, cutoff=0.6)
    return close[0] if close else None


_BOUNDS = frozenset({"greater_than_equal", "less_than_equal", "greater_than", "less_than"})


def _range(tool: Tool, loc: tuple[int | str, ...]) -> str | None:
    """The accepted range of a number argument (or of a list's items), from the published schema."""
    schema = tool.parameters.get("properties", {}).get(str(loc[0]), {})
    if len(loc) > 1:
        schema = schema.get("items", {})
    # An optional argument's bounds sit on the non-null branch.
    schema = next((v for v in schema.get("anyOf", []) if "minimum" in v or "maximum" in v), schema)
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    if low is not None:
        return f"at least {low}"
    return f"at most {high}" if high is not None else None


def argument_error_message(tool: Tool, error: ValidationError) -> str:
    """Each rejected argument with what is accepted, in words; never pydantic's class names or links."""
    valid = sorted(str(name) for name in tool.parameters.get("properties", {}))
    lines = []
    unknown = False
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or "arguments"
        if item["type"] == "extra_forbidden":
            unknown = True
            suggestion = _suggest(name, valid)
            hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
            lines.append(f"{name!r} is not an argument of {tool.name}{hint}.")
        elif item["type"] == "missing":
            lines.append(f"{name!r} is required.")
        elif item["type"] in _BOUNDS and (bounds := _range(tool, item["loc"])):
            lines.append(f"{name} must be {bounds}, not {item['input']!r}.")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message}" + ("" if message.endswith(".") else "."))
    if unknown:
        lines.append(f"Valid arguments: {', '.join(valid)}.")
    return f"Invalid arguments for {tool.name}: " + " ".join(lines)
