"""Dispatch ``python -m synthex_lib.bench NAME [args]`` to ``synthex_lib.bench.NAME.main``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {"drr": "synthex_lib.bench.drr", "dr": "synthex_lib.bench.dr", "gpu": "synthex_lib.bench.gpu",
              "train": "synthex_lib.bench.train"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print(f"usage: python -m synthex_lib.bench {{{'|'.join(BENCHMARKS)}}} [--json] [options]\n"
              "  drr: our naive/realistic projectors against DiffDRR's trilinear renderer\n"
              "  dr:  the domain-randomization pipeline\n"
              "  gpu: CUDA throughput beside nanodrr, DiffDRR, DeepDRR; training speed (needs CUDA)\n"
              "  train: U-Net training throughput against the machine's sgemm rate",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
