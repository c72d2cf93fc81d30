"""Autograding Lab 4 for a whole class: read submissions, grade each student with nbgrader
in a course folder and gradebook of their own (on any `concurrent.futures.Executor`), merge."""
