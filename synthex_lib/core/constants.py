"""Conventions shared by every part of the library.

Label ids and landmark names follow DeepFluoro and the official SyntheX code
(``../shared/reference/official-code.md``). World coordinates are LPS millimetres.
"""

from __future__ import annotations

#: 2D/3D segmentation label ids of the hip task (DeepFluoro); 0 is background.
HIP_LABELS: dict[int, str] = {
    0: "background",
    1: "left-hemipelvis",
    2: "right-hemipelvis",
    3: "vertebrae",
    4: "upper-sacrum",
    5: "left-femur",
    6: "right-femur",
}
#: Number of segmentation classes of the hip task, background included.
HIP_NUM_CLASSES = len(HIP_LABELS)

#: The 14 hip landmarks in the official evaluation order.
HIP_LANDMARKS: tuple[str, ...] = (
    "FH-l", "FH-r", "GSN-l", "GSN-r", "IOF-l", "IOF-r", "MOF-l", "MOF-r",
    "SPS-l", "SPS-r", "IPS-l", "IPS-r", "ASIS-l", "ASIS-r",
)

#: Landmarks of the continuum manipulator (start and end of its centreline).
TOOL_LANDMARKS: tuple[str, ...] = ("base", "tip")

#: Landmark -> labels it must lie on in 2D (official est_lands_csv.py: FH on the femurs,
#: everything else on the hemipelves).
HIP_LANDMARK_LABELS: dict[str, tuple[int, ...]] = {
    name: ((5,) if name == "FH-l" else (6,) if name == "FH-r" else (1,) if name.endswith("-l") else (2,))
    for name in HIP_LANDMARKS
}

#: Linear attenuation of water used by the naive projector, 1/mm (about 70 keV; NIST XCOM).
MU_WATER_PER_MM = 0.0192
