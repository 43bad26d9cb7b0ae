"""Generated reports: Structured Reports built with highdicom (Basic Text, Enhanced with a TID 1500
measurement report, Comprehensive) and an encapsulated PDF made from a PDF that fpdf2 writes with real
text. The words are constants here, so tests can read them back exactly."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from fpdf import FPDF
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import EncapsulatedPDFStorage

from tests.support.imaging import Instance, base_dataset, save, uid

FINDINGS = "The lungs are clear. No pleural effusion.\nHeart size is normal."
IMPRESSION = "No acute cardiopulmonary abnormality."
RADIOLOGIST = "Doe^Jane"
PDF_LINES = (
    "Chest CT report",
    "Findings: a 12 mm nodule in the right upper lobe.",
    "Impression: follow up in 6 months.",
)


def _report_root(children: list[Dataset]) -> hd.sr.ContainerContentItem:
    root = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"), template_id=None
    )
    root.ContentSequence = hd.sr.ContentSequence(children)
    return root


def _narrative() -> list[Dataset]:
    findings = hd.sr.TextContentItem(
        name=hd.sr.CodedConcept("121071", "DCM", "Finding"), value=FINDINGS, relationship_type="CONTAINS"
    )
    impression = hd.sr.TextContentItem(
        name=hd.sr.CodedConcept("121073", "DCM", "Impression"), value=IMPRESSION, relationship_type="CONTAINS"
    )
    site = hd.sr.CodeContentItem(
        name=hd.sr.CodedConcept("363698007", "SCT", "Finding Site"),
        value=codes.SCT.Lung,
        relationship_type="CONTAINS",
    )
    return [findings, impression, site]


def _finish(sr: Dataset, directory: Path) -> Instance:
    return save(sr, directory)


def basic_text_sr(directory: Path, image: Dataset, *, verified: bool = True) -> Instance:
    """A Basic Text SR with a findings text, an impression and a coded finding site.

    highdicom has classes for Enhanced and Comprehensive SR only: the document is built as a Comprehensive
    SR from the same highdicom content items, then labelled Basic Text SR (its tree is within that IOD's
    limits: containers, text and codes, CONTAINS only)."""
    sr = hd.sr.ComprehensiveSR(
        evidence=[image],
        content=_report_root(_narrative()),
        series_instance_uid=uid(),
        series_number=90,
        sop_instance_uid=uid(),
        instance_number=1,
        is_complete=True,
        is_verified=verified,
        verifying_observer_name=RADIOLOGIST if verified else None,
        verifying_organization="General Hospital" if verified else None,
        series_description="Report",
    )
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    return _finish(sr, directory)


def measurement_sr(directory: Path, image: Dataset, *, comprehensive: bool = False) -> Instance:
    """A TID 1500 Measurement Report (Enhanced SR, or Comprehensive with a region): a nodule in the lung
    with a 12.5 mm diameter, observed by Doe^Jane."""
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=RADIOLOGIST),
        )
    )
    region = None
    if comprehensive:
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 10.0]]),
            source_image=hd.sr.SourceImageForRegion.from_source_image(image),
        )
    group = (
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier="Nodule 1", uid=uid()),
            referenced_region=region,
            finding_type=codes.SCT.Nodule,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)],
            measurements=[hd.sr.Measurement(name=codes.SCT.Diameter, value=12.5, unit=codes.UCUM.Millimeter)],
        )
        if comprehensive
        else hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier="Nodule 1", uid=uid()),
            finding_type=codes.SCT.Nodule,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)],
            measurements=[hd.sr.Measurement(name=codes.SCT.Diameter, value=12.5, unit=codes.UCUM.Millimeter)],
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    kind = hd.sr.ComprehensiveSR if comprehensive else hd.sr.EnhancedSR
    sr = kind(
        evidence=[image],
        content=report,
        series_instance_uid=uid(),
        series_number=91 if comprehensive else 92,
        sop_instance_uid=uid(),
        instance_number=1,
        is_complete=False,
        series_description="Measurements",
    )
    return _finish(sr, directory)


def pdf_bytes(lines: tuple[str, ...] = PDF_LINES, *, filler_pages: int = 0) -> bytes:
    """A PDF with ``lines`` on page one (and pages of numbered filler sentences after, for long text)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    for page in range(filler_pages):
        pdf.add_page()
        for row in range(40):
            pdf.cell(0, 6, f"Filler sentence {page}-{row} of the long report.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def encapsulated_pdf(
    directory: Path, *, study_uid: str, title: str = "Chest CT report", document: bytes | None = None
) -> Instance:
    """An Encapsulated PDF Storage instance (PS3.3 A.45.1) holding ``document`` (default: PDF_LINES)."""
    data = document if document is not None else pdf_bytes()
    ds = base_dataset(
        EncapsulatedPDFStorage,
        study_uid=study_uid,
        series_uid=uid(),
        modality="DOC",
        SeriesNumber=95,
        SeriesDescription="Scanned report",
    )
    ds.ConversionType = "WSD"
    ds.DocumentTitle = title
    ds.BurnedInAnnotation = "YES"
    ds.ContentDate, ds.ContentTime = "20240316", "090000"
    ds.AcquisitionDateTime = "20240316090000"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    return save(ds, directory)
