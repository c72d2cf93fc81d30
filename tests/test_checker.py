"""The trusted checker reaches the same verdicts, with the same messages, as the hidden checks
run in-process: each check runs here with a proxy whose calls cross the grading wire
(a Unix socket, plain data back) to the "kernel" side in another thread."""
import os
import socket
import threading

import pytest
import torch

import test_checks_defences as defences
import test_checks_getting_started as getting_started
import test_checks_natural_adversarial as natural
import test_checks_patch_localization as patches
import test_checks_rotation as rotation
import test_checks_simclr as simclr
import test_checks_synthetic_adversarial as synthetic
from course_utils.grading import check_client, protocol
from course_utils.grading.checker import CheckServer

CATALOGUE = {  # check -> (solution, {mistake: wrong function})
    "getting_started.check_batch_accuracy": (getting_started.solution, getting_started.WRONG),
    "natural_adversarial.check_subset_predictions": (natural.subset_solution, natural.WRONG_SUBSET),
    "natural_adversarial.check_rms_calibration_error": (natural.rms_solution, natural.WRONG_RMS),
    "natural_adversarial.check_adversarial_filter": (natural.filter_solution, natural.WRONG_FILTER),
    "synthetic_adversarial.check_fgsm_attack": (synthetic.fgsm_attack, synthetic.FGSM_WRONG),
    "synthetic_adversarial.check_pgd_attack": (synthetic.pgd_attack, synthetic.PGD_WRONG),
    "synthetic_adversarial.check_targeted_pgd_attack": (synthetic.targeted_pgd_attack, synthetic.TARGETED_WRONG),
    "synthetic_adversarial.check_masked_attack": (synthetic.masked_attack, synthetic.MASKED_WRONG),
    "synthetic_adversarial.check_linear_worst_case_margin": (synthetic.linear_worst_case_margin,
                                                             synthetic.WORST_CASE_WRONG),
    "defences.check_adversarial_training_step": (defences.adversarial_training_step, defences.WRONG),
    "rotation.check_rotate_batch": (rotation.solution, rotation.WRONG),
    "rotation.check_linear_probe_accuracy": (rotation.probe_solution, rotation.PROBE_WRONG),
    "patch_localization.check_patch_pair": (patches.solution, patches.WRONG),
    "simclr.check_nt_xent_loss": (simclr.solution, simclr.WRONG),
}


def _local(check: str, function) -> str | None:
    module, _, name = check.rpartition(".")
    real = getattr(__import__(f"course_utils.checks.{module}", fromlist=[name]), name)
    try:
        real(function)
    except AssertionError as err:
        return str(err)
    return None


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """check name, function -> (the checker's verdict, the message the kernel side sees)."""
    path = str(tmp_path / "checker.sock")
    monkeypatch.setenv(check_client.SOCKET_ENV, path)

    def run(check: str, function, *, cell: str = "cell", expected_cell: str = "cell"):
        server = CheckServer(path, {expected_cell: check}, timeout=30).start()
        server.enter(cell)
        try:
            message = check_client._run(check, function)
        finally:
            server.leave()
            server.close()
            os.unlink(path)
        return server.results(), message
    return run


@pytest.mark.parametrize("check", CATALOGUE)
def test_solutions_pass_through_the_checker(remote, check):
    results, message = remote(check, CATALOGUE[check][0])
    assert message is None and results["verdicts"]["cell"]["passed"], results


@pytest.mark.parametrize("check, mistake", [(c, m) for c, (_, wrong) in CATALOGUE.items() for m in wrong])
def test_each_mistake_gets_the_in_process_verdict_and_message(remote, check, mistake):
    wrong = CATALOGUE[check][1][mistake]
    torch.manual_seed(0)
    local = _local(check, wrong)
    torch.manual_seed(0)
    results, message = remote(check, wrong)
    verdict = results["verdicts"]["cell"]
    assert local is not None and not verdict["passed"] and verdict["runs"] == 1
    assert message == verdict["failure"]
    # the same mistake named; numbers drawn inside a student's function may differ
    assert message.split(":")[0].split("(")[0] == local.split(":")[0].split("(")[0], (message, local)


def test_a_check_asked_for_outside_its_test_cell_counts_for_nothing(remote):
    results, message = remote("getting_started.check_batch_accuracy", getting_started.solution, cell="other_cell")
    assert message == "a hidden check runs only in its own test cell"
    assert not results["verdicts"]["cell"]["passed"] and results["stray"]


def test_the_kernel_side_cannot_send_objects_with_behaviour(tmp_path):
    """A reply carrying a pickled object (here: one whose __reduce__ would run code) is refused."""
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    a, b = socket.socketpair()
    with a, b:
        protocol.send(a, {"op": "result", "result": Evil()})
        with pytest.raises(protocol.ProtocolError):
            protocol.receive(b, trusted=False)
    assert not (tmp_path / "pwned").exists()


def test_an_always_equal_answer_is_only_an_opaque_value():
    class AlwaysEqual(float):
        def __eq__(self, other):
            return True

        def __sub__(self, other):
            return 0.0

        __rsub__ = __sub__

    value = protocol.unplain(protocol.plain(AlwaysEqual(0.25)))
    assert type(value) is float and value == 0.25
    weird = protocol.unplain(protocol.plain(object()))
    assert type(weird).__name__ == "object" and weird != 0.25


def test_a_kernel_that_stops_answering_fails_the_check(tmp_path, monkeypatch):
    path = str(tmp_path / "checker.sock")
    server = CheckServer(path, {"cell": "getting_started.check_batch_accuracy"}, timeout=1).start()
    server.enter("cell")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        protocol.send(sock, {"op": "check", "check": "getting_started.check_batch_accuracy", "name": "f",
                             "signature": []})
        protocol.receive(sock, trusted=True)  # the first call; never answered
        done = threading.Event()
        threading.Timer(3, done.set).start()
        done.wait()
    server.close()
    assert not server.results()["verdicts"]["cell"]["passed"]


# ---------------------------------------------------------------- the rule of every check (issue 33)

def _tampering(kind: str):
    """What a dishonest function does to its arguments after computing the right answer; True if
    the arguments held something of that kind."""
    def tamper(args) -> bool:
        from course_utils.grading.protocol import stateful

        done = False
        with torch.no_grad():
            for obj in stateful(args):
                if kind == "tensor values" and isinstance(obj, torch.Tensor) and not obj.requires_grad:
                    if obj.dtype == torch.bool:
                        obj.logical_not_()
                    elif obj.is_floating_point():
                        obj.mul_(0.5).add_(0.125)
                    else:
                        obj.add_(1)
                    done = True
                elif kind == "parameters" and isinstance(obj, torch.nn.Module) and list(obj.parameters()):
                    next(obj.parameters()).mul_(0.5)
                    done = True
                elif kind == "buffers" and isinstance(obj, torch.nn.Module):
                    for buffer in obj.buffers():
                        if buffer.is_floating_point():
                            buffer.add_(1.0)
                            done = True
                elif kind == "optimizer settings" and isinstance(obj, torch.optim.Optimizer):
                    obj.param_groups[0]["lr"] *= 2
                    done = True
                elif kind == "list contents" and type(obj) is list and len(obj) > 1:
                    obj.reverse()
                    done = True
        return done
    return tamper


TAMPERING = ["tensor values", "parameters", "buffers", "optimizer settings", "list contents"]


@pytest.mark.parametrize("check", CATALOGUE)
def test_every_check_fails_a_right_answer_that_also_changes_its_arguments(remote, check):
    """The right answer, plus a change to an argument that the exercise does not allow: each check
    fails it, in process and through the checker's wire, whatever kind of argument it gets."""
    solution = CATALOGUE[check][0]
    tried = []
    for kind in TAMPERING:
        touched = []

        def dishonest(*args, **kwargs):
            result = solution(*args, **kwargs)
            touched.append(_tampering(kind)((args, kwargs)))
            return result

        dishonest.__signature__ = __import__("inspect").signature(solution)
        local = _local(check, dishonest)
        if not any(touched):
            continue  # this check passes no argument of that kind
        tried.append(kind)
        results, message = remote(check, dishonest)
        assert local is not None, (kind, "passed in process")
        assert message is not None and not results["verdicts"]["cell"]["passed"], (kind, "passed remotely")
    assert "tensor values" in tried, tried


def test_a_change_is_named_by_the_students_own_argument_names():
    from course_utils.checks import call_student

    def attack(net, images, labels):
        images.add_(1.0)
        return images

    model = torch.nn.Linear(2, 2)
    with pytest.raises(AssertionError, match=r"attack changed its input images in place.*\(a test\)"):
        call_student(attack, model, torch.zeros(3, 2), torch.zeros(3), what="a test")


def test_allowed_changes_reach_the_checker_and_others_never_do():
    """Through the wire: a change the exercise allows is mirrored onto the checker's object; a
    change it does not allow fails before anything is mirrored."""
    from course_utils.checks import call_student
    from course_utils.grading.checker import RemoteFunction

    def zero_weights_and_draw(m, g):
        with torch.no_grad():
            m.weight.zero_()
        return torch.rand(1, generator=g)

    def kernel(sock):
        with sock:
            protocol.send(sock, check_client._call(zero_weights_and_draw, protocol.receive(sock, trusted=True)))

    model = torch.nn.Linear(2, 2)
    weight = model.weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    for allowed, should_pass in (([(generator, "state")], False),
                                 ([(generator, "state"), (model, "parameters")], True)):
        a, b = socket.socketpair()
        thread = threading.Thread(target=kernel, args=(a,))
        thread.start()
        state_before = generator.get_state()
        try:
            call_student(RemoteFunction(b, "f", []), model, generator, what="a test", may_change=allowed)
            passed = True
        except AssertionError as err:
            passed = False
            assert "changed the parameters of argument 1" in str(err)
        thread.join()
        b.close()
        assert passed == should_pass
        if should_pass:
            assert not model.weight.any() and not torch.equal(generator.get_state(), state_before)
        else:
            assert torch.equal(model.weight, weight), "a change that failed the check reached the checker's model"
