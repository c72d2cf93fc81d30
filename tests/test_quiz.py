"""The patch-localization quiz works without a browser: questions, buttons, feedback, static figures,
and no answer is shown before it has been given (unless nobody is there to answer)."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils.quiz import POSITION_NAMES, PatchQuiz, interactive_frontend  # noqa: E402


@pytest.fixture
def quiz():
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    return PatchQuiz(images, patch_size=8, gap=3, jitter=2, questions=3, seed=1)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_questions_are_patch_pairs_with_answers(quiz):
    assert len(quiz) == 3 and quiz.sample.center.shape == (3, 3, 8, 8)
    assert all(a in POSITION_NAMES for a in quiz.answers)
    assert quiz.answer_key() == ", ".join(f"Q{i + 1} {a}" for i, a in enumerate(quiz.answers))
    again = PatchQuiz(quiz.images[:2], patch_size=8, gap=3, jitter=2, questions=3, seed=1)
    assert again.answers == quiz.answers and torch.equal(again.sample.neighbor, quiz.sample.neighbor)


def test_static_figures(quiz):
    import matplotlib.pyplot as plt

    assert "red = ?" in _titles(quiz.figure())
    assert not any(a in " ".join(_titles(quiz.figure())) for a in POSITION_NAMES), "the questions give the answers away"
    assert quiz.answers[0] in quiz.figure(reveal=True).axes[1].get_title()
    assert quiz.answers[1] in quiz.reveal(1).axes[0].get_title()
    titles = _titles(quiz.answers_figure())
    assert all(f"Q{i + 1}: the red patch is {a}" in titles for i, a in enumerate(quiz.answers))
    plt.close("all")


def test_widget_buttons_give_feedback_and_keep_score(quiz):
    box = quiz.widget()
    right = int(quiz.sample.labels[0])
    wrong = (right + 1) % 8
    box.quiz_buttons[wrong].click()
    assert "Not quite" in box.quiz_feedback.value and quiz.answers[0] in box.quiz_feedback.value
    box.quiz_buttons[right].click()  # a second try does not change the score
    assert "Right" in box.quiz_feedback.value and quiz.score == 0
    box.quiz_next.click()
    assert quiz.current == 1 and "Question 2" in box.quiz_feedback.value
    box.quiz_buttons[int(quiz.sample.labels[1])].click()
    assert quiz.score == 1 and "Score: 1 of 2" in box.quiz_feedback.value


def test_widget_shows_no_answer_before_it_is_given(quiz):
    box = quiz.widget()
    hidden = lambda image: image.layout.display == "none"  # noqa: E731
    assert hidden(box.quiz_answer) and hidden(box.quiz_summary) and not box.quiz_summary.value
    assert not any(a in box.quiz_feedback.value for a in POSITION_NAMES)
    for question in range(len(quiz)):
        assert hidden(box.quiz_answer), f"question {question + 1}'s answer is shown before it was given"
        box.quiz_buttons[int(quiz.sample.labels[question])].click()
        assert not hidden(box.quiz_answer) and quiz.answers[question] in box.quiz_feedback.value
        last = question == len(quiz) - 1
        assert hidden(box.quiz_summary) != last, "the answers of all questions came too early, or not at all"
        assert ("All questions answered" in box.quiz_feedback.value) == last
        box.quiz_next.click()
    assert quiz.finished and quiz.score == len(quiz) and box.quiz_summary.value[:4] == b"\x89PNG"


def test_answers_figure_marks_the_first_answers(quiz):
    import matplotlib.pyplot as plt

    box = quiz.widget()
    right = int(quiz.sample.labels[0])
    box.quiz_buttons[(right + 1) % 8].click()
    box.quiz_buttons[right].click()
    titles = _titles(quiz.answers_figure())
    assert f"you: {POSITION_NAMES[(right + 1) % 8]}" in titles[0] and "you:" not in titles[1]
    plt.close("all")


def test_interactive_frontend_means_a_cell_sent_by_a_notebook_frontend():
    assert not interactive_frontend()  # pytest: no kernel, no request
    assert interactive_frontend({"msg_type": "execute_request", "metadata": {"cellId": "cell-05"}})  # JupyterLab
    assert not interactive_frontend({"msg_type": "execute_request", "metadata": {}})  # nbclient: papermill, nbgrader
    assert not interactive_frontend({})


def test_each_answer_updates_the_feedback_once_after_its_pictures(quiz):
    """The browser sees every trait change: a verdict sent in pieces, or before its picture, can be read half done."""
    box = quiz.widget()
    events = []
    box.quiz_feedback.observe(lambda change: events.append(("feedback", change["new"])), names="value")
    for image in (box.quiz_answer, box.quiz_summary):
        image.observe(lambda change, image=image: events.append(("picture", image)), names="value")
    for question in range(len(quiz)):
        events.clear()
        box.quiz_buttons[int(quiz.sample.labels[question])].click()
        feedback = [value for kind, value in events if kind == "feedback"]
        assert len(feedback) == 1, feedback
        assert events[-1][0] == "feedback", "the verdict came before its picture"
        assert ("All questions answered" in feedback[0]) == (question == len(quiz) - 1)
        box.quiz_next.click()
