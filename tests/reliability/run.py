"""Runs one part of the reliability suite and appends its result to a JSON-lines file."""

import importlib
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Part, cleanup  # noqa: E402

MODULES = {"configs": "configs", "corpus": "corpus", "reload": "reload", "faults": "faults",
           "memory": "memory", "official": "official", "soak": "soak"}

name, out = sys.argv[1], sys.argv[2]
try:
    part = importlib.import_module(MODULES[name]).main()
except Exception:
    traceback.print_exc()
    part = Part(name)
    part.check(False, "the part stopped with an exception: "
               + traceback.format_exc().strip().splitlines()[-1])
part.save(out)
cleanup(part.failed > 0 or os.environ.get("RELIABILITY_KEEP") == "1")
sys.exit(1 if part.failed else 0)
