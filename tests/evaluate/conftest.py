"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest

from ppca_models import make_ppca, set_encoder, simulate


@pytest.fixture
def ppca():
    """A 2-D latent pPCA with a deliberately imperfect encoder: shifted by half a posterior sd, 1.5 times too wide."""
    m = make_ppca()
    set_encoder(m, shift=0.5, inflate=1.5)
    return m, simulate(m, 40)
