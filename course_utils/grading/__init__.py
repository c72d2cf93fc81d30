"""Autograding Lab 4 for a whole class: read submissions, grade each student with nbgrader
in a course folder and gradebook of their own (on any `concurrent.futures.Executor`), merge."""

import sys as _sys

# nbformat validates with jsonschema, whose optional IRI format checks come from rfc3987_syntax;
# importing that builds 38 lark parsers (about 3 s, in every process that imports nbformat:
# the TA's, each grading worker, each nbgrader run). Notebooks have no IRI-formatted fields, so
# grading never needs it: make its import fail, as if it were absent, before nbformat loads.
_sys.modules.setdefault("rfc3987_syntax", None)
