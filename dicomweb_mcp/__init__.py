"""dicomweb-mcp: an MCP server for DICOMweb, and the async DICOMweb client it is built on."""

from ._auth import AzureTokenAuth, BearerAuth, TokenCredential
from ._client import DicomWebClient
from ._config import AuthMode, Config, ServerKind
from ._dicomfiles import SkippedFile, collect_dicom_files, read_dicom_file
from ._dictionary import Attribute, resolve_attribute
from ._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    CredentialError,
    DicomWebError,
    HTTPStatusError,
    InvalidInputError,
    NotAcceptableError,
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
from ._models import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    ChangeFeedEntry,
    DeleteResult,
    DicomFile,
    QueryResult,
    RenderedImage,
    StoreOutcome,
    StoreStatus,
)
from ._multipart import BodyPart, MultipartDecoder, MultipartReader
from ._servers import ServerProfile
from ._validation import normalize_date_range, validate_uid

__version__ = "0.1.0"

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "Attribute",
    "AuthMode",
    "AuthenticationError",
    "AzureTokenAuth",
    "BadRequestError",
    "BearerAuth",
    "BodyPart",
    "ChangeFeedEntry",
    "Config",
    "ConfigError",
    "ConflictError",
    "CredentialError",
    "DeleteResult",
    "DicomFile",
    "DicomWebClient",
    "DicomWebError",
    "HTTPStatusError",
    "InvalidInputError",
    "MultipartDecoder",
    "MultipartReader",
    "NotAcceptableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProtocolError",
    "QueryResult",
    "RenderedImage",
    "ServerError",
    "ServerKind",
    "ServerProfile",
    "ServerUnreachableError",
    "SkippedFile",
    "StoreOutcome",
    "StoreStatus",
    "ThrottledError",
    "TokenCredential",
    "UnsupportedMediaTypeError",
    "UnsupportedOperationError",
    "__version__",
    "collect_dicom_files",
    "normalize_date_range",
    "read_dicom_file",
    "resolve_attribute",
    "validate_uid",
]
