"""The paper's published hip-imaging numbers, for display beside ours (never used as results).

Sources:
* ``nmi``: Gao et al., Nature Machine Intelligence 5, 2023 (text of the Results: controlled study
  at 360 x 360 px with strong domain randomization, scaled-up study, Loop-X test).
* ``preprint``: the arXiv preprint (Tables 4 and 5, 360 x 360 px columns): Dice and landmark error
  (mm at the NCC > 0.9 activation) for regular and strong domain randomization, mean over folds
  of testing on the 366 real images.
Values are mean and standard deviation.
"""

from __future__ import annotations

import pandas as pd

#: (source, train domain, DR preset, landmark mean, landmark std, dice mean, dice std)
_ROWS: list[tuple[str, str, str, float | None, float | None, float | None, float | None]] = [
    ("nmi", "real", "strong", 6.46, 8.21, 0.79, 0.25),
    ("nmi", "realistic", "strong", 6.44, 7.05, 0.80, 0.23),
    ("nmi", "realistic-cyclegan", "strong", 6.62, 6.82, 0.80, 0.23),
    ("nmi", "realistic-scaled", "strong", 5.95, 3.52, 0.86, 0.21),
    ("nmi", "realistic-cyclegan-scaled", "strong", 6.20, 3.56, None, None),
    ("nmi", "realistic-loopx", "strong", 6.16, 5.15, 0.84, 0.12),
    ("preprint", "real", "regular", 8.93, 19.76, 0.783, 0.232),
    ("preprint", "real", "strong", 8.15, 15.30, 0.759, 0.248),
    ("preprint", "realistic", "regular", 12.62, 27.68, 0.751, 0.241),
    ("preprint", "realistic", "strong", 9.05, 19.37, 0.760, 0.250),
    ("preprint", "heuristic", "regular", 14.54, 32.88, 0.683, 0.265),
    ("preprint", "heuristic", "strong", 12.25, 26.82, 0.682, 0.286),
    ("preprint", "naive", "regular", 16.22, 39.71, 0.687, 0.266),
    ("preprint", "naive", "strong", 20.55, 35.92, 0.572, 0.309),
    ("preprint", "realistic-cyclegan", "regular", 8.57, 18.69, 0.760, 0.248),
    ("preprint", "realistic-cyclegan", "strong", 8.90, 17.47, 0.733, 0.267),
    ("preprint", "naive-cyclegan", "regular", 7.63, 16.10, 0.739, 0.254),
    ("preprint", "naive-cyclegan", "strong", 9.29, 18.73, 0.736, 0.258),
    ("preprint", "realistic-adda", "regular", 11.01, 24.69, 0.726, 0.292),
    ("preprint", "realistic-adda", "strong", 12.92, 23.76, 0.731, 0.256),
    ("preprint", "naive-adda", "regular", 10.42, 25.05, 0.693, 0.297),
    ("preprint", "naive-adda", "strong", 14.17, 30.89, 0.662, 0.265),
    ("preprint", "realistic-scaled", "regular", 6.80, 9.53, 0.838, 0.221),
    ("preprint", "realistic-scaled", "strong", 6.29, 6.29, 0.818, 0.221),
    ("preprint", "realistic-cyclegan-scaled", "regular", 6.87, 13.19, 0.824, 0.225),
    ("preprint", "realistic-cyclegan-scaled", "strong", 6.59, 7.25, 0.789, 0.240),
]


def paper_hip_table(source: str | None = None) -> pd.DataFrame:
    """The paper's hip numbers at 360 px as a frame (columns: source, train_domain, dr_preset,
    landmark_mm_mean, landmark_mm_std, dice_mean, dice_std)."""
    df = pd.DataFrame(_ROWS, columns=["source", "train_domain", "dr_preset", "landmark_mm_mean", "landmark_mm_std",
                                      "dice_mean", "dice_std"])
    return df if source is None else df[df["source"] == source].reset_index(drop=True)


#: preprint Tables 4 (Dice) and 5 (landmark mm at the NCC > 0.9 activation) at 180 x 180 and 480 x 480 px, the
#: rows without adaptation: (image px, train domain, DR preset, landmark mean, landmark std, dice mean, dice std);
#: the 360 px column is :data:`_ROWS`' preprint rows
_RESOLUTION_ROWS: list[tuple[int, str, str, float, float, float, float]] = [
    (180, "real", "regular", 9.98, 22.58, 0.775, 0.235),
    (180, "real", "strong", 7.78, 11.94, 0.784, 0.214),
    (180, "realistic", "regular", 14.33, 32.61, 0.730, 0.240),
    (180, "realistic", "strong", 8.41, 14.47, 0.787, 0.211),
    (180, "heuristic", "regular", 20.84, 44.16, 0.669, 0.273),
    (180, "heuristic", "strong", 10.69, 22.92, 0.737, 0.249),
    (180, "naive", "regular", 13.12, 30.87, 0.689, 0.256),
    (180, "naive", "strong", 13.03, 21.20, 0.680, 0.278),
    (480, "real", "regular", 8.98, 21.38, 0.739, 0.266),
    (480, "real", "strong", 7.59, 16.12, 0.751, 0.265),
    (480, "realistic", "regular", 14.96, 34.45, 0.720, 0.256),
    (480, "realistic", "strong", 13.06, 26.52, 0.700, 0.279),
    (480, "heuristic", "regular", 17.59, 39.55, 0.655, 0.277),
    (480, "heuristic", "strong", 12.85, 29.49, 0.668, 0.298),
    (480, "naive", "regular", 18.53, 40.88, 0.653, 0.278),
    (480, "naive", "strong", 19.46, 37.48, 0.578, 0.305),
]


def paper_resolution_table() -> pd.DataFrame:
    """The preprint's Tables 4-5 rows without adaptation at 180, 360 and 480 px (columns: px, train_domain,
    dr_preset, landmark_mm_mean, landmark_mm_std, dice_mean, dice_std)."""
    cols = ["px", "train_domain", "dr_preset", "landmark_mm_mean", "landmark_mm_std", "dice_mean", "dice_std"]
    mid = paper_hip_table("preprint").drop(columns="source").assign(px=360)
    mid = mid[mid["train_domain"].isin({r[1] for r in _RESOLUTION_ROWS})]
    df = pd.concat([pd.DataFrame(_RESOLUTION_ROWS, columns=cols), mid[cols]], ignore_index=True)
    return df.sort_values(["px", "dr_preset", "train_domain"]).reset_index(drop=True)
