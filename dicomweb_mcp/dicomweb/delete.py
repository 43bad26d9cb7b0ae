"""DICOMweb DELETE of a study, series or instance, and the way round it on an Orthanc not recognised.

Orthanc's DICOMweb plugin answers DELETE with 405; a server whose kind was not detected (set to generic,
or /system hidden by a proxy) may still be one, so a 405 is followed by Orthanc's REST delete, and stands
only if there is no such API.
"""

from __future__ import annotations

from typing import Literal

from ..dicom.reference import Reference
from ..errors import HTTPStatusError, error_for_status
from .orthanc import orthanc_delete
from .transport import HttpTransport

__all__ = ["delete_resource"]


async def delete_resource(
    http: HttpTransport, root: str, dicomweb_url: str, target: Reference
) -> Literal["dicomweb", "orthanc-rest"]:
    """Delete ``target``; return how it was done."""
    operation = f"Delete {target.level}"
    # DELETE answers with no body; Orthanc answers 400 instead of 405 to a series or instance DELETE that
    # asks for application/dicom+json, so ask for anything.
    async with http.stream(
        operation, "DELETE", root + target.path, headers={"Accept": "*/*"}, ok=(404, 405)
    ) as sent:
        response, status = sent.response, sent.response.status_code
        if status == 405:
            await response.aread()
        elif status == 404 and not sent.maybe_done:  # else the lost earlier attempt deleted it
            await http.raise_for_status(operation, response, sent.attempts)
    if status != 405:
        return "dicomweb"
    try:
        await orthanc_delete(http, dicomweb_url, target)
    except HTTPStatusError as exc:
        if exc.status_code == 404 and exc.path.endswith("/tools/lookup"):
            raise error_for_status(operation, 405, response.request.url.path, response.content) from None
        raise
    return "orthanc-rest"
