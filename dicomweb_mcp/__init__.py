"""dicomweb-mcp: an MCP server for DICOMweb, and the async DICOMweb client it is built on."""

from .config import AuthMode, Config, ServerKind
from .dicom.dictionary import Attribute, resolve_attribute
from .dicom.validation import normalize_date_range, validate_uid
from .dicomweb.auth import AzureTokenAuth, BearerAuth, TokenCredential
from .dicomweb.client import DicomWebClient
from .dicomweb.models import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    ChangeFeedEntry,
    DeleteResult,
    QueryResult,
    RenderedImage,
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
from .files.store import FileStore, SavedFile, SavedFrame

# The one place the version is written: pyproject.toml reads it from here.
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
    "FileStore",
    "HTTPStatusError",
    "InvalidInputError",
    "LocalFileError",
    "MultipartDecoder",
    "MultipartReader",
    "NotAcceptableError",
    "NotDicomError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProtocolError",
    "QueryResult",
    "RenderedImage",
    "SavedFile",
    "SavedFrame",
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
