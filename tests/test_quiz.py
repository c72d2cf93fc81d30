"""The patch-localization quiz works without a browser: questions, buttons, feedback, static figure."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils.quiz import POSITION_NAMES, PatchQuiz  # noqa: E402


@pytest.fixture
def quiz():
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    return PatchQuiz(images, patch_size=8, gap=3, jitter=2, questions=3, seed=1)


def test_questions_are_patch_pairs_with_answers(quiz):
    assert len(quiz) == 3 and quiz.sample.center.shape == (3, 3, 8, 8)
    assert all(a in POSITION_NAMES for a in quiz.answers)
    again = PatchQuiz(quiz.images[:2], patch_size=8, gap=3, jitter=2, questions=3, seed=1)
    assert again.answers == quiz.answers and torch.equal(again.sample.neighbor, quiz.sample.neighbor)


def test_static_figures(quiz):
    import matplotlib.pyplot as plt

    fig = quiz.figure()
    assert "red = ?" in [ax.get_title() for ax in fig.axes]
    assert quiz.answers[0] in quiz.figure(reveal=True).axes[1].get_title()
    assert quiz.answers[1] in quiz.reveal(1).axes[0].get_title()
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
