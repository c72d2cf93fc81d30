"""The TA's hints of answer cells that reach into the grading machinery: what an honest answer to this
lab writes is not flagged."""
import nbformat

from course_utils.grading.flags import suspicious_cells


def _notebook(*sources: str) -> str:
    nb = nbformat.v4.new_notebook()
    for i, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"solution": True, "grade_id": f"answer{i}"}
        nb.cells.append(cell)
    return nbformat.writes(nb)


def test_the_builtins_exec_and_eval_are_flagged_and_a_models_eval_is_not():
    found = suspicious_cells(_notebook("encoder.eval()\nmodel.train(was_training)\npattern = re.compile('x')",
                                       "eval('1 + 1')", "x = exec (code)", "f = compile(src, 'f', 'exec')"),
                             set(), "04_rotation.ipynb")
    assert found == [f"04_rotation/answer{i}: reaches exec or eval" for i in (1, 2, 3)], found
