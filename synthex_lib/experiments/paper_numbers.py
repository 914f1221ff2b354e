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
