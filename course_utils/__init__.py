"""course_utils: the helper library of Lab 4 (adversarial examples and self-supervision).

Submodules are imported where they are used (`from course_utils.attacks import fgsm`), so
importing the package itself is cheap and downloads nothing.
"""
import os as _os
import sys as _sys

__version__ = "0.1.0"

# On Apple's MPS, operators the backend lacks run on the CPU only if PYTORCH_ENABLE_MPS_FALLBACK
# was set when torch loaded (it is read once, then): set it before any submodule imports torch,
# and for every process started from here (course-lab's Jupyter kernels, papermill). It changes
# nothing on other devices. What torch saw is kept for `runtime.enable_mps_fallback`'s warning.
if "torch" in _sys.modules:
    _mps_fallback_at_torch_load = _os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
    _os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
else:
    _os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    _mps_fallback_at_torch_load = _os.environ["PYTORCH_ENABLE_MPS_FALLBACK"]
