"""files/store.py: where downloads may go (never outside the download directory) and atomic saving."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from dicomweb_mcp.dicom.reference import Reference
from dicomweb_mcp.errors import InvalidInputError, NotDicomError
from dicomweb_mcp.files.store import FileStore
from tests.support.imaging import ct_dataset, uid


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def dicom_bytes(study_uid: str) -> tuple[bytes, str, str]:
    ds = ct_dataset(np.zeros((2, 2), np.int16), study_uid=study_uid, series_uid=uid())
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), ds.SeriesInstanceUID, ds.SOPInstanceUID


@pytest.mark.parametrize("inside", [None, "", "sub", "sub/deeper", "./a/../b"])
def test_output_dirs_inside_the_root(tmp_path: Path, inside: str | None) -> None:
    store = FileStore(tmp_path / "dl")
    directory = store.directory(inside)
    root = (tmp_path / "dl").resolve()
    assert directory == (root / inside).resolve() if inside else directory == root
    assert root.is_dir()


@pytest.mark.parametrize("outside", ["..", "../elsewhere", "sub/../../x", "/"])
def test_output_dirs_outside_the_root_are_refused(tmp_path: Path, outside: str) -> None:
    with pytest.raises(InvalidInputError, match="outside the download directory"):
        FileStore(tmp_path / "dl").directory(outside)


def test_an_absolute_output_dir_inside_the_root_is_accepted(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "dl")
    assert store.directory(str(tmp_path / "dl" / "x")) == (tmp_path / "dl" / "x").resolve()


def test_a_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "dl" / "link").symlink_to(tmp_path / "outside")
    store = FileStore(tmp_path / "dl")
    with pytest.raises(InvalidInputError, match="outside the download directory"):
        store.directory("link")
    with pytest.raises(InvalidInputError, match="symbolic link"):
        store.write_bytes(tmp_path / "dl" / "link" / "new" / "f.json", b"{}")
    assert list((tmp_path / "outside").iterdir()) == []  # not even an empty directory appeared


def test_write_json_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    path = store.write_json(tmp_path / "a" / "m.json", {"k": [1, 2]})
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"k":[1,2]}'
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


@pytest.mark.anyio
async def test_an_instance_is_named_by_its_own_uids(tmp_path: Path) -> None:
    study = uid()
    data, series, instance = dicom_bytes(study)
    store = FileStore(tmp_path)
    saved = await store.save_instance(chunks(data), store.directory(), study_uid=study)
    expected = Reference(study, series, instance).file(tmp_path.resolve(), ".dcm")
    assert Path(saved.path) == expected and expected.read_bytes() == data
    assert saved.size == len(data)


@pytest.mark.anyio
async def test_an_instance_of_another_study_is_not_kept(tmp_path: Path) -> None:
    data, _, _ = dicom_bytes(uid())
    store = FileStore(tmp_path)
    with pytest.raises(NotDicomError, match="belongs to study"):
        await store.save_instance(chunks(data), store.directory(), study_uid="1.2.3")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.anyio
async def test_bytes_that_are_not_dicom_are_not_kept(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(NotDicomError):
        await store.save_instance(chunks(b"<html>error page</html>" * 20), store.directory())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "extension"), [("image/jpeg", ".jpg"), ("application/x-unknown", ".bin")]
)
async def test_frames_are_saved_beside_their_instance(
    tmp_path: Path, content_type: str, extension: str
) -> None:
    store = FileStore(tmp_path)
    base = Reference("1.2", "1.2.3", "1.2.3.4").file(store.directory())
    frame = await store.save_frame(chunks(b"frame-bytes"), base, 3, content_type)
    assert Path(frame.path) == base.parent / f"1.2.3.4.frame-3{extension}"
    assert Path(frame.path).read_bytes() == b"frame-bytes" and frame.size_bytes == len(b"frame-bytes")
