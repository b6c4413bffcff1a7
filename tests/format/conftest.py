"""Hypothesis profiles for the format tests: TAPEARC_HYPOTHESIS_PROFILE=thorough for a long run."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("TAPEARC_HYPOTHESIS_PROFILE", "default"))
