"""nbgrader configuration of Lab 4: sources in solutions/, the student release in labs/."""
c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "cs3485"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# Cells run on the 'grade' profile (nbgrader sets NBGRADER_EXECUTION) and take seconds;
# the limit only stops runaway submissions.
c.ExecutePreprocessor.timeout = 60
# The stub's message is what a student sees when a test cell calls an unanswered exercise.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\n"
              "raise NotImplementedError(\"Not answered yet: replace this line with your code, run this cell, \"\n"
              "                          \"then run the test cell below it.\")"
}
