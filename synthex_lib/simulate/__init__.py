"""X-ray simulation from CT: one ray-marching engine (:mod:`.raymarch`), naive / heuristic / realistic physics
(:mod:`.projectors`, :mod:`.physics`), the projectors by name (:mod:`.registry`), emulated scanners
(:mod:`.scanner`), label projection (:mod:`.labels`), an optional DeepDRR adapter and file input
(:mod:`.volume_io`). See :mod:`synthex_lib.simulate.projectors` for the ``render`` contract.
"""
