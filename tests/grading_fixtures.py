"""Submissions for the grading tests, made from the solution notebooks."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lab4"
RELEASE = ROOT / "labs" / "lab4"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def replace_solution(nb: dict, grade_id: str, source: str) -> dict:
    """A copy of `nb` whose answer cell `grade_id` holds `source`."""
    nb = json.loads(json.dumps(nb))
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    assert cells, f"no cell {grade_id}"
    cells[0]["source"] = source
    return nb


def write_student(folder: Path, student: str, notebooks: dict[str, dict | str | bytes]) -> Path:
    """nbgrader's layout: folder/<student>/lab4/<name>."""
    target = folder / student / "lab4"
    target.mkdir(parents=True, exist_ok=True)
    for name, content in notebooks.items():
        data = content if isinstance(content, (str, bytes)) else json.dumps(content)
        (target / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return target


def write_zip(folder: Path, filename: str, notebooks: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as zf:
        for name, nb in notebooks.items():
            zf.writestr(f"lab4/{name}", json.dumps(nb))
    return path


def solved(name: str) -> dict:
    """The release notebook `name` with every answer cell filled in from the solutions:
    what a student who got everything right hands in (test cells as released)."""
    release, solution = load(RELEASE / name), load(SOLUTIONS / name)
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    for cell in release["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and grade_id in answers:
            source = answers[grade_id]
            source = source if isinstance(source, str) else "".join(source)
            # nbgrader's markers stay out of what a student hands in
            cell["source"] = "\n".join(l for l in source.splitlines() if "### BEGIN SOLUTION" not in l
                                       and "### END SOLUTION" not in l)
    return release


def release_names() -> list[str]:
    return sorted(p.name for p in RELEASE.glob("*.ipynb"))


# One typical wrong answer per graded function (the mistakes the notebook issues name):
# (notebook, answer cell grade_id, wrong source). The test cell is "<grade_id>_tests".
WRONG_ANSWERS = [
    ("00_getting_started.ipynb", "batch_accuracy",
     "def batch_accuracy(logits, labels):\n    return float((logits.argmax(1) == labels).sum())\n"),
    ("01_natural_adversarial_examples.ipynb", "subset_predictions",  # a 1000-way argmax
     "def subset_predictions(logits_1k, indices_in_1k):\n    return logits_1k.argmax(dim=1)\n"),
    ("01_natural_adversarial_examples.ipynb", "rms_calibration_error",  # bins not weighted by size
     "import math\n"
     "def rms_calibration_error(confidence, correct, bin_size=100):\n"
     "    order = torch.argsort(confidence)\n"
     "    conf, right = confidence[order].double(), correct[order].double()\n"
     "    n_bins = max(1, len(conf) // bin_size)\n"
     "    gaps = []\n"
     "    for b in range(n_bins):\n"
     "        stop = len(conf) if b == n_bins - 1 else (b + 1) * bin_size\n"
     "        gaps.append((conf[b * bin_size:stop].mean() - right[b * bin_size:stop].mean()).item() ** 2)\n"
     "    return math.sqrt(sum(gaps) / len(gaps))\n"),
    ("01_natural_adversarial_examples.ipynb", "adversarial_filter",  # crashes when every image is right
     "def adversarial_filter(predict, images, labels, batch_size=256):\n"
     "    kept = []\n"
     "    with torch.no_grad():\n"
     "        for start in range(0, len(images), batch_size):\n"
     "            wrong = predict(images[start:start + batch_size]).argmax(1) != labels[start:start + batch_size]\n"
     "            if wrong.any():\n"
     "                kept.append(wrong.nonzero().flatten() + start)\n"
     "    return torch.cat(kept)\n"),
    ("01_natural_adversarial_examples.ipynb", "adversarial_filter",  # forgets the batch offset
     "def adversarial_filter(predict, images, labels, batch_size=256):\n"
     "    kept = []\n"
     "    with torch.no_grad():\n"
     "        for start in range(0, len(images), batch_size):\n"
     "            wrong = predict(images[start:start + batch_size]).argmax(1) != labels[start:start + batch_size]\n"
     "            kept.append(wrong.nonzero().flatten())\n"
     "    return torch.cat(kept)\n"),
    ("02_synthetic_adversarial_examples.ipynb", "fgsm_attack",  # wrong gradient sign
     "def fgsm_attack(model, x, y, eps):\n"
     "    x_adv = x.clone().detach().requires_grad_(True)\n"
     "    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)\n"
     "    return (x_adv - eps * grad.sign()).clamp(0, 1).detach()\n"),
    ("02_synthetic_adversarial_examples.ipynb", "pgd_attack",  # projection around the previous iterate
     "def pgd_attack(model, x, y, eps, alpha, steps, random_start=True):\n"
     "    x_adv = x.clone().detach()\n"
     "    if random_start:\n"
     "        x_adv = (x_adv + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)\n"
     "    for _ in range(steps):\n"
     "        prev = x_adv.detach()\n"
     "        x_adv = prev.clone().requires_grad_(True)\n"
     "        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)\n"
     "        x_adv = torch.clamp(prev + alpha * grad.sign(), prev - eps, prev + eps).clamp(0, 1)\n"
     "    return x_adv.detach()\n"),
    ("02_synthetic_adversarial_examples.ipynb", "targeted_pgd_attack",  # ascends the target's loss
     "def targeted_pgd_attack(model, x, target, eps, alpha, steps):\n"
     "    x0 = x.detach()\n"
     "    x_adv = x0.clone()\n"
     "    for _ in range(steps):\n"
     "        x_adv.requires_grad_(True)\n"
     "        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), target), x_adv)\n"
     "        x_adv = torch.clamp(x_adv.detach() + alpha * grad.sign(), x0 - eps, x0 + eps).clamp(0, 1)\n"
     "    return x_adv.detach()\n"),
    ("02_synthetic_adversarial_examples.ipynb", "masked_attack",  # stops once every image is its target
     "def masked_attack(model, x, target, mask, alpha, steps):\n"
     "    x_adv = x.clone().detach()\n"
     "    for _ in range(steps):\n"
     "        x_adv.requires_grad_(True)\n"
     "        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), target), x_adv)\n"
     "        x_adv = (x_adv.detach() - alpha * mask * grad.sign()).clamp(0, 1)\n"
     "        with torch.no_grad():\n"
     "            if (model(x_adv).argmax(1) == target).all():\n"
     "                break\n"
     "    return x_adv.detach()\n"),
    ("02_synthetic_adversarial_examples.ipynb", "masked_attack",  # unmasked steps, the mask applied at the end
     "def masked_attack(model, x, target, mask, alpha, steps):\n"
     "    x0 = x.detach()\n"
     "    x_adv = x0.clone()\n"
     "    for _ in range(steps):\n"
     "        x_adv.requires_grad_(True)\n"
     "        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), target), x_adv)\n"
     "        x_adv = (x_adv.detach() - alpha * grad.sign()).clamp(0, 1)\n"
     "    return (x0 + mask * (x_adv - x0)).detach()\n"),
    ("02_synthetic_adversarial_examples.ipynb", "linear_worst_case_margin",  # the norm of w_y, not of w_y - w_j
     "def linear_worst_case_margin(weight, bias, x, y, eps):\n"
     "    z = x.flatten(1) @ weight.T + bias\n"
     "    margins = z.gather(1, y[:, None]) - z - eps * weight[y].abs().sum(1, keepdim=True)\n"
     "    margins[torch.arange(len(y)), y] = float('inf')\n"
     "    return margins.min(1).values\n"),
    ("03_robustness_and_defences.ipynb", "adversarial_training_step",  # the old text read literally:
     "def adversarial_training_step(model, optimizer, x, y, eps, alpha):\n"  # steps from the unclamped draw
     "    delta = torch.empty_like(x).uniform_(-eps, eps)\n"
     "    x_start = (x + delta).clamp(0, 1).requires_grad_(True)\n"
     "    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_start), y), x_start)\n"
     "    delta = (delta + alpha * grad.sign()).clamp(-eps, eps)\n"
     "    x_adv = (x + delta).clamp(0, 1).detach()\n"
     "    model.train()\n"
     "    loss = F.cross_entropy(model(x_adv), y)\n"
     "    optimizer.zero_grad()\n"
     "    loss.backward()\n"
     "    optimizer.step()\n"
     "    return loss.item()\n"),
    ("03_robustness_and_defences.ipynb", "adversarial_training_step",  # trains on the clean images
     "def adversarial_training_step(model, optimizer, x, y, eps, alpha):\n"
     "    model.train()\n"
     "    loss = F.cross_entropy(model(x), y)\n"
     "    optimizer.zero_grad()\n"
     "    loss.backward()\n"
     "    optimizer.step()\n"
     "    return loss.item()\n"),
    ("04_rotation.ipynb", "rotate_batch",  # labels not aligned with the rotated blocks
     "def rotate_batch(x):\n"
     "    x_rot = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])\n"
     "    return x_rot, torch.arange(4, device=x.device).repeat(len(x))\n"),
    ("04_rotation.ipynb", "linear_probe_accuracy",  # the scaler fitted on the test features
     "def linear_probe_accuracy(encoder, train_images, train_labels, test_images, test_labels):\n"
     "    was_training = encoder.training\n"
     "    encoder.eval()\n"
     "    with torch.no_grad():\n"
     "        a, b = encoder(train_images).flatten(1).numpy(), encoder(test_images).flatten(1).numpy()\n"
     "    encoder.train(was_training)\n"
     "    scaler = StandardScaler().fit(b)\n"
     "    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(a), train_labels.numpy())\n"
     "    return float(clf.score(scaler.transform(b), test_labels.numpy()))\n"),
    ("05_patch_localization.ipynb", "patch_pair",  # rows and columns swapped
     "def patch_pair(image, label, patch_size, gap, jitter=0, generator=None):\n"
     "    _, height, width = image.shape\n"
     "    top, left = (height - patch_size) // 2, (width - patch_size) // 2\n"
     "    dc, dr = NEIGHBOR_OFFSETS[label]\n"
     "    stride = patch_size + gap\n"
     "    center = image[:, top:top + patch_size, left:left + patch_size]\n"
     "    r, c = top + dr * stride, left + dc * stride\n"
     "    return center, image[:, r:r + patch_size, c:c + patch_size]\n"),
    ("06_simclr.ipynb", "nt_xent_loss",  # self-similarity not masked
     "def nt_xent_loss(z1, z2, temperature):\n"
     "    n = len(z1)\n"
     "    z = F.normalize(torch.cat([z1, z2]), dim=1)\n"
     "    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)\n"
     "    return F.cross_entropy(z @ z.T / temperature, positives)\n"),
]


def lab_points() -> int:
    """The lab's autograded points, summed over the solutions' graded cells."""
    return sum(c["metadata"]["nbgrader"].get("points", 0) for name in release_names()
               for c in load(SOLUTIONS / name)["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("grade") and c["cell_type"] == "code")


def written_points() -> int:
    """The lab's points for written answers (graded by hand)."""
    return sum(c["metadata"]["nbgrader"].get("points", 0) for name in release_names()
               for c in load(SOLUTIONS / name)["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("grade") and c["cell_type"] == "markdown")


def wrong_student(index: int) -> str:
    """The student id of WRONG_ANSWERS[index] in the grading tests."""
    return f"wrong{index:02d}-{WRONG_ANSWERS[index][1]}"


def with_wrong_answer(notebook: str, grade_id: str, source: str) -> dict:
    """The solved notebook with one answer replaced by a typical mistake."""
    return replace_solution(solved(notebook), grade_id, source)


# Every graded function written from the release notebook's text alone, by someone who had not
# read solutions/ or course_utils/checks/ (tests/independent_answers/<grade_id>.py): the guard
# that an exercise text is enough to earn its points.
INDEPENDENT = ROOT / "tests" / "independent_answers"


def independent(name: str) -> dict:
    """The release notebook `name` with every answer cell holding the independent answer."""
    nb = load(RELEASE / name)
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code" and (INDEPENDENT / f"{meta['grade_id']}.py").exists():
            cell["source"] = (INDEPENDENT / f"{meta['grade_id']}.py").read_text()
    return nb
