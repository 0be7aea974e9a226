"""API tests run the surfaces' apps in process, with the job kinds the cluster registers."""

from __future__ import annotations

import pytest

from visionserve.platform.worker import load_job_modules
from visionserve.surfaces import NAMES, job_modules


@pytest.fixture(scope="session", autouse=True)
def _job_kinds() -> None:
    """As the ingress and the job worker do at start: every surface's job kinds registered."""
    load_job_modules(job_modules(NAMES))
