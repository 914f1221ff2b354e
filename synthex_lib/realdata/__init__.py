"""Real data: dataset manifests, download/import/verification, and loaders.

* :mod:`synthex_lib.realdata.manifest`: the YAML manifests of ``data_manifests/``.
* :mod:`synthex_lib.realdata.fetch`: fetch, import, verify and status of a dataset (the entry points), built on
  :mod:`~synthex_lib.realdata.download` (pooch, sha256, resume), :mod:`~synthex_lib.realdata.archives`
  (safe unzip) and :mod:`~synthex_lib.realdata.lockfile` (first-seen hashes).
* :mod:`synthex_lib.realdata.deepfluoro`: DeepFluoro full resolution
  (:class:`~synthex_lib.realdata.deepfluoro.DeepFluoro`)
  and the ``"deepfluoro"`` controlled-study source.
* :mod:`synthex_lib.realdata.deepfluoro_preprocessed`: DeepFluoro's 2x/4x/8x/16x files.
* :mod:`synthex_lib.realdata.qata`: QaTa-COV19 (v1, v2 and 5-fold layouts).
* :mod:`synthex_lib.realdata.ct_files`: your own CT (NIfTI, NRRD, DICOM) + labels + Slicer landmarks.
* :mod:`synthex_lib.realdata.fixtures`: tiny files in the exact real layouts, for tests and examples.

Every real dataset lives in ``paths.real_dir(name)`` = ``$SYNTHEX_DATA/real/<name>``.
"""
