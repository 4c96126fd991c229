import os

# Triton kernels are exercised on the CPU through the interpreter; this must be set before any
# kernel is defined (i.e. before case_fast.kernels is imported anywhere).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared (reference outputs, THUMOS14 annotations) is not beside the checkout")
    return SHARED
