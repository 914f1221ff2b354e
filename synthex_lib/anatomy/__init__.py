"""The virtual cadaver lab: procedural hip, chest and continuum-manipulator specimens.

Each specimen has a continuous *anatomy* (the truth, :class:`~synthex_lib.anatomy.raster.Anatomy`,
rasterized on demand) and a simulated *CT scan* of it (:mod:`synthex_lib.anatomy.ctscan`).
Training simulators see the CT; the emulated "real" scanners image the anatomy.
"""

from __future__ import annotations

from synthex_lib.anatomy.cohorts import cohort_members, generate_cohort, load_cohort, load_specimen, make_tool_scene
from synthex_lib.anatomy.session import SessionAnatomy, SessionParams, sample_session, session_specimen
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.anatomy.specimens import GENERATOR_VERSION, make_specimen

__all__ = ["GENERATOR_VERSION", "SessionAnatomy", "SessionParams", "Specimen", "cohort_members", "generate_cohort",
           "load_cohort", "load_specimen", "make_specimen", "make_tool_scene", "sample_session", "session_specimen"]
