"""moecheck for Python: differential fuzzing of MoE routing callables and functional-substitution
checks of nn.Modules, on moecheck's C++ core (generators, fp64 reference, tie-aware oracle,
shrinking, replayable corpus).

    import moecheck
    result = moecheck.fuzz(my_router, family="gemma4", seconds=30)   # fn(gating, k, scale)
    print(result)                      # shrunk failures with their .case files
    moecheck.replay("corpus/", my_router)
    moecheck.check_substitution(module, (x,))
    moecheck.check_routing_substitution(module, router, example_inputs=(x,))

The extension (moecheck._core) links no torch: arrays cross through the buffer protocol and
DLPack, and this package builds the tensors with whatever torch the environment has.
"""

# torch is imported before the extension: on Python 3.12 with torch 2.11+cu130, loading
# moecheck._core first made the later `import torch` crash inside torch's own initialisation.
import torch  # noqa: F401  (order matters, see above)

from . import _core
from ._fuzz import (DEFAULT_CASES, DEFAULT_TIMEOUT, CaseTimeout, Failure, FuzzResult, ReplayEntry, ReplayReport,
                    Verdict, check, fuzz, replay)
from ._substitution import (ParameterResult, SubstitutionReport, check_outputs, check_routing_substitution,
                            check_substitution, substituted_call, substitution_values)
from .routers import composite_router, router_for

__version__ = _core.__version__

__all__ = [
    "fuzz", "replay", "check", "check_substitution", "check_routing_substitution",
    "substitution_values", "substituted_call", "check_outputs", "composite_router", "router_for", "FuzzResult", "Failure", "ReplayReport",
    "ReplayEntry", "Verdict", "CaseTimeout", "SubstitutionReport", "ParameterResult", "DEFAULT_CASES", "DEFAULT_TIMEOUT",
]
