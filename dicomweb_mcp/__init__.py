"""dicomweb-mcp: an MCP server for DICOMweb, and the async DICOMweb client it is built on.

The public names load on first use (PEP 562): the command imports only what its job needs, and
starts answering an MCP host sooner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import AuthMode, Config, ServerKind
    from .dicom.dictionary import Attribute, resolve_attribute
    from .dicom.reference import Reference
    from .dicom.validation import normalize_date_range, validate_uid
    from .dicomweb.auth import AzureTokenAuth, BearerAuth, TokenCredential
    from .dicomweb.client import DicomWebClient
    from .dicomweb.models import (
        EXPLICIT_VR_LITTLE_ENDIAN,
        ChangeFeedEntry,
        DeleteResult,
        QueryResult,
        StoreOutcome,
        StoreStatus,
    )
    from .dicomweb.multipart import BodyPart, MultipartDecoder, MultipartReader
    from .dicomweb.servers import ServerProfile
    from .errors import (
        AuthenticationError,
        BadRequestError,
        ConfigError,
        ConflictError,
        CredentialError,
        DicomWebError,
        HTTPStatusError,
        InvalidInputError,
        LocalFileError,
        NotAcceptableError,
        NotDicomError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        ProtocolError,
        ServerError,
        ServerUnreachableError,
        ThrottledError,
        UnsupportedMediaTypeError,
        UnsupportedOperationError,
    )
    from .files.dicomfiles import DicomFile, SkippedFile, collect_dicom_files, read_dicom_file
    from .files.store import FileStore, SavedFrame
    from .imaging.pictures import Picture

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Attribute": ".dicom.dictionary",
    "AuthMode": ".config",
    "AuthenticationError": ".errors",
    "AzureTokenAuth": ".dicomweb.auth",
    "BadRequestError": ".errors",
    "BearerAuth": ".dicomweb.auth",
    "BodyPart": ".dicomweb.multipart",
    "ChangeFeedEntry": ".dicomweb.models",
    "Config": ".config",
    "ConfigError": ".errors",
    "ConflictError": ".errors",
    "CredentialError": ".errors",
    "DeleteResult": ".dicomweb.models",
    "DicomFile": ".files.dicomfiles",
    "DicomWebClient": ".dicomweb.client",
    "DicomWebError": ".errors",
    "EXPLICIT_VR_LITTLE_ENDIAN": ".dicomweb.models",
    "FileStore": ".files.store",
    "HTTPStatusError": ".errors",
    "InvalidInputError": ".errors",
    "LocalFileError": ".errors",
    "MultipartDecoder": ".dicomweb.multipart",
    "MultipartReader": ".dicomweb.multipart",
    "NotAcceptableError": ".errors",
    "NotDicomError": ".errors",
    "NotFoundError": ".errors",
    "PayloadTooLargeError": ".errors",
    "PermissionDeniedError": ".errors",
    "ProtocolError": ".errors",
    "Reference": ".dicom.reference",
    "QueryResult": ".dicomweb.models",
    "Picture": ".imaging.pictures",
    "SavedFrame": ".files.store",
    "ServerError": ".errors",
    "ServerKind": ".config",
    "ServerProfile": ".dicomweb.servers",
    "ServerUnreachableError": ".errors",
    "SkippedFile": ".files.dicomfiles",
    "StoreOutcome": ".dicomweb.models",
    "StoreStatus": ".dicomweb.models",
    "ThrottledError": ".errors",
    "TokenCredential": ".dicomweb.auth",
    "UnsupportedMediaTypeError": ".errors",
    "UnsupportedOperationError": ".errors",
    "collect_dicom_files": ".files.dicomfiles",
    "normalize_date_range": ".dicom.validation",
    "read_dicom_file": ".files.dicomfiles",
    "resolve_attribute": ".dicom.dictionary",
    "validate_uid": ".dicom.validation",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = ["__version__", *_EXPORTS]
