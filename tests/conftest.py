from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dicomweb_mcp import Config, DicomWebClient
from tests.support.idp import IdentityProvider, running_identity_provider
from tests.support.orthanc import Orthanc
from tests.support.postgres import Postgres
from tests.support.samples import Samples, make_samples

# Fixtures that start a real Orthanc, nginx, PostgreSQL or identity provider. A test whose fixture closure holds any of
# them is marked ``orthanc`` below, so that ``pytest -m "not orthanc"`` is the fast tier (no server process
# at all); one that starts the identity provider is marked ``idp`` too.
# Fixtures built on these (empty_orthanc, orthanc_config, client, config...) need no entry: the closure
# of a test lists every fixture it depends on, however indirectly.
IDP_FIXTURES = frozenset({"identity_provider", "own_identity_provider"})
SERVER_FIXTURES = (
    frozenset({"orthanc", "second_orthanc", "secured_orthanc", "gateway", "postgres"}) | IDP_FIXTURES
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.orthanc)
        if IDP_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.idp)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test against a real Orthanc shows that Orthanc's last log lines: what it refused and why
    is often only there."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        servers = value if isinstance(value, tuple) else (value,)
        for server in servers:
            if isinstance(server, Orthanc):
                report.sections.append((f"{name}: Orthanc's log, last lines", server.log_tail()))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return make_samples(tmp_path_factory.mktemp("tutorial"))


def running_orthanc(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp(name)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    yield from running_orthanc(tmp_path_factory, "orthanc")


@pytest.fixture(scope="session")
def second_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Another archive beside the first (a transfer's destination)."""
    yield from running_orthanc(tmp_path_factory, "orthanc2")


@pytest.fixture(scope="module")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """A real OpenID provider (oidc-provider under Node) shared by a module's tests."""
    with running_identity_provider(tmp_path_factory.mktemp("idp")) as provider:
        yield provider


@pytest.fixture
def own_identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """A real OpenID provider for one test, which may change its keys."""
    with running_identity_provider(tmp_path_factory.mktemp("idp")) as provider:
        yield provider


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL for the cohort jobs shared by replicas; each test takes a database of its own."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


# The postgresql case starts a server process: marked so, since the fixture is only asked for inside.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.orthanc)])
def jobs_database(request: pytest.FixtureRequest) -> str | None:
    """Each job store in turn: None (SQLite under the download directory), then a new PostgreSQL database's
    URL (DICOMWEB_JOBS_DATABASE)."""
    if request.param == "sqlite":
        return None
    server: Postgres = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def empty_orthanc(orthanc: Orthanc) -> Orthanc:
    orthanc.clear()
    return orthanc


@pytest.fixture
def orthanc_config(empty_orthanc: Orthanc, tmp_path: Path) -> Config:
    return Config.single(url=empty_orthanc.dicomweb_url, download_dir=tmp_path / "downloads", timeout=30)


@pytest.fixture
def destination(second_orthanc: Orthanc) -> Orthanc:
    """The second Orthanc, emptied: where transfers and cohort jobs send."""
    second_orthanc.clear()
    return second_orthanc


@pytest.fixture
def clinical_and_research(orthanc_config: Config, destination: Orthanc) -> Config:
    """Two named servers: "clinical" (the first Orthanc, emptied) and "research" (the destination)."""
    clinical = replace(orthanc_config.server, name="clinical")
    research = replace(orthanc_config.server, name="research", url=destination.dicomweb_url)
    return replace(orthanc_config, servers=(clinical, research))


@pytest.fixture
async def client(orthanc_config: Config) -> AsyncIterator[DicomWebClient]:
    async with DicomWebClient(orthanc_config.server) as c:
        yield c
