"""course_utils: the helper library of Lab 4 (adversarial examples and self-supervision).

Submodules are imported where they are used (`from course_utils.attacks import fgsm`), so
importing the package itself is cheap and downloads nothing.
"""
__version__ = "0.1.0"
