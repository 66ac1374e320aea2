"""The HTML report after `graft train` and `graft evaluate`: self-contained, honest to metrics.json, rendered."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from graftkit.cli import main
from graftkit.results.report import confident_mistakes
from tests.helpers import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("report"), tensorboard=True)


@pytest.fixture(scope="module")
def swapped(run_dir):
    """The run's images with red and green labelled the wrong way round: an evaluation full of mistakes."""
    root = run_dir.parent / "swapped"
    if not root.exists():
        shutil.copytree(run_dir.parent / "images", root)
        (root / "red").rename(root / "tmp")
        (root / "green").rename(root / "red")
        (root / "tmp").rename(root / "green")
    return root


class Links(HTMLParser):
    """Every src / href of a page, and its visible text."""

    def __init__(self):
        super().__init__()
        self.refs, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.refs.append(attrs[name])
        if tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Links:
    page = Links()
    page.feed(path.read_text())
    return page


def assert_self_contained(report: Path):
    page = parse(report)
    for ref in page.refs:
        assert not ref.startswith(("http:", "https:", "//", "file:")), ref  # opens offline
        if not ref.startswith(("data:", "#")):
            assert (report.parent / ref).is_file(), f"{report.name} names missing file {ref}"
    html = report.read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    return page


def test_training_report_is_complete_and_matches_metrics(run_dir):
    report = run_dir / "report.html"
    page = assert_self_contained(report)
    text = " ".join(page.text)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['accuracy']:.4f}" in text
    for name, row in metrics["per_class"].items():
        cells = [f"{row[k]:.4f}" for k in ("precision", "recall", "f1")]
        assert f"{name} {' '.join(cells)} {row['support']}" in " ".join(text.split()), name
    for row in metrics["confusion_matrix"]:
        assert " ".join(map(str, row)) in " ".join(text.split())
    for stage in ("head", "fine_tune"):
        assert stage in text
    # the plots, embedded and as PNG files beside the report
    plots = [i for i in page.images if i.get("class") == "plot"]
    assert [i["alt"] for i in plots] == ["Training curves", "Confusion matrix"]
    assert all(i["src"].startswith("data:image/png;base64,") for i in plots)
    assert "curves.png" in page.refs and "confusion.png" in page.refs
    # base, cut, freeze spec and the full configuration
    config = json.loads((run_dir / "config.json").read_text())
    assert metrics["base"]["cut"] == "c2" and "c2" in text and config["freeze"] in text
    assert json.dumps(config, indent=2).splitlines()[1].strip() in text


def test_tensorboard_logs_with_the_flag(run_dir):
    for stage in ("head", "fine_tune"):
        assert list((run_dir / "logs" / stage).rglob("events.out.tfevents.*")), stage


def test_confident_mistakes_surest_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    mistakes = confident_mistakes(["a", "b", "c", "d"], [1, 1, 1, 0], probabilities, ["x", "y"], limit=2)
    assert [(m["path"], m["true"], m["predicted"]) for m in mistakes] == [("d", "x", "y"), ("a", "y", "x")]
    assert confident_mistakes([], [], np.zeros((0, 2)), ["x", "y"]) == []


def test_evaluate_writes_a_report_in_the_run_folder(run_dir, swapped, capsys):
    code = main(["evaluate", str(run_dir), str(swapped)])
    capsys.readouterr()
    assert code == 0
    report = run_dir / "evaluation.html"
    page = assert_self_contained(report)
    scores = json.loads((run_dir / "evaluation.json").read_text())
    assert f"{scores['accuracy']:.4f}" in " ".join(page.text)
    wrong = scores["count"] - sum(row[i] for i, row in enumerate(scores["confusion_matrix"]))
    assert wrong >= 12  # red and green swapped: a model cannot be right on both
    thumbnails = [i for i in page.images if i["src"].startswith("data:image/jpeg;base64,")]
    assert len(thumbnails) == 12  # the surest mistakes, each with its true and predicted label
    captions = re.findall(r"true (\w+), predicted (\w+) \((\d\.\d\d)\)", " ".join("".join(page.text).split()))
    assert len(captions) == 12 and all(true != predicted for true, predicted, _ in captions)
    assert [float(p) for *_, p in captions] == sorted((float(p) for *_, p in captions), reverse=True)
    assert {"evaluation-curves.png", "evaluation-confusion.png", "evaluation.json"} <= set(page.refs)


def test_evaluate_report_option(run_dir, swapped, tmp_path, capsys):
    target = tmp_path / "out" / "eval.html"
    target.parent.mkdir()
    assert main(["evaluate", str(run_dir / "model.keras"), str(swapped), "--report", str(target)]) == 0
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "eval-confusion.png", "eval-curves.png", "eval.html", "eval.json"]
    assert_self_contained(target)
    before = sorted(p.name for p in run_dir.iterdir())
    assert main(["evaluate", str(run_dir), str(swapped), "--no-report"]) == 0
    assert sorted(p.name for p in run_dir.iterdir()) == before
    capsys.readouterr()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<pre id="graftkit-probe"></pre><script>
window.addEventListener("load", () => {
  document.getElementById("graftkit-probe").textContent = JSON.stringify(
    [...document.images].map(i => ({alt: i.alt, cls: i.className, w: i.naturalWidth, h: i.naturalHeight,
                                     shown: i.getBoundingClientRect().width})));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, swapped, tmp_path, capsys):
    """Every picture of the report decodes and is laid out, in a real browser with no network."""
    if not (run_dir / "evaluation.html").exists():
        main(["evaluate", str(run_dir), str(swapped)])
        capsys.readouterr()
    probe = run_dir / "probe.html"  # a copy with a probe script, beside the report so its links resolve
    probe.write_text((run_dir / "evaluation.html").read_text().replace("</body>", PROBE + "</body>"))
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
             "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    start = dom.index('<pre id="graftkit-probe">') + len('<pre id="graftkit-probe">')
    images = json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"').replace("&amp;", "&"))
    plots = [i for i in images if i["cls"] == "plot"]
    assert [p["alt"] for p in plots] == ["Training curves", "Confusion matrix"]
    assert all(i["w"] > 0 and i["h"] > 0 and i["shown"] > 0 for i in images), images
    assert len(images) == 2 + 12  # the plots and the mistakes' thumbnails


class Tables(HTMLParser):
    """Each table's rows of cell texts, with the sections and <details> elements that hold it."""

    def __init__(self):
        super().__init__()
        self.tables, self.in_cell, self.section, self.details = [], False, None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id")
        elif tag == "details":
            self.details += 1
        elif tag == "table":
            self.tables.append({"section": self.section, "folded": self.details > 0, "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.tables[-1]["rows"][-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag):
        if tag == "details":
            self.details -= 1
        elif tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        if self.in_cell:
            self.tables[-1]["rows"][-1][-1] += data


@pytest.fixture(scope="module")
def report_101(tmp_path_factory):
    from graftkit.results.plots import plot_confusion
    from graftkit.results.report import write_report
    from tests.results.synthetic import many_class_scores

    folder = tmp_path_factory.mktemp("report101")
    scores = many_class_scores()
    png = plot_confusion(scores["confusion_matrix"], scores["class_names"], folder / "confusion.png")
    return write_report(folder / "report.html", title="101 classes", scores=scores,
                        plots={"Confusion matrix": png}), scores


def test_101_class_report_has_top_confusions_and_a_folded_per_class_table(report_101):
    from graftkit.results.evaluate import top_confusions

    report, scores = report_101
    assert_self_contained(report)
    parser = Tables()
    parser.feed(report.read_text())
    tables = {t["section"]: t for t in parser.tables}
    assert "confusion-counts" not in tables  # no 101 x 101 table of counts
    assert max(len(row) for t in parser.tables for row in t["rows"]) <= 5  # nothing wide enough to scroll
    top = tables["top-confusions"]
    assert not top["folded"] and [row[:3] for row in top["rows"][1:]] == [
        [p["true"], p["predicted"], str(p["count"])] for p in top_confusions(scores, 25)]
    per_class = tables["per-class"]
    assert per_class["folded"] and len(per_class["rows"]) == 1 + 101
    f1 = [float(row[3]) for row in per_class["rows"][1:]]
    assert f1 == sorted(f1) and f1[0] == min(r["f1"] for r in scores["per_class"].values())  # worst first
    assert "the 30 most-confused of the 101 classes" in report.read_text()


def test_few_class_report_keeps_its_open_tables(tmp_path):
    from graftkit.results.report import write_report

    s = {"accuracy": 0.5, "count": 4, "class_names": ["a", "b"], "confusion_matrix": [[1, 1], [1, 1]],
         "per_class": {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for n in "ab"}}
    parser = Tables()
    parser.feed(write_report(tmp_path / "r.html", title="two", scores=s).read_text())
    tables = {t["section"]: t for t in parser.tables}
    assert tables["confusion-counts"]["rows"][1:] == [["0 a", "1", "1"], ["1 b", "1", "1"]]
    assert not tables["per-class"]["folded"] and "top-confusions" not in tables


WIDTH_PROBE = """<pre id="graftkit-probe"></pre><script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => d.open = true);
  const page = document.documentElement;
  document.getElementById("graftkit-probe").textContent = JSON.stringify(
    {scroll: page.scrollWidth, client: page.clientWidth, rows: document.querySelectorAll("tr").length});
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 800])
def test_101_class_report_needs_no_sideways_scrolling(report_101, tmp_path, width):
    """Opened in a real browser at a laptop's and a narrow window's width, with the folded table opened."""
    report, _ = report_101
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    start = dom.index('<pre id="graftkit-probe">') + len('<pre id="graftkit-probe">')
    seen = json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"'))
    assert seen["scroll"] <= seen["client"], seen
    assert seen["rows"] == 1 + 25 + 1 + 101  # both tables laid out


def test_confident_mistakes_of_multilabel_most_wrong_labels_first():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    outputs = np.array([[.9, .8, .1], [.2, .9, .1], [.1, .2, .3], [.1, .2, .3], [.4, .1, .1]])
    mistakes = confident_mistakes(list("abcde"), labels, outputs, ["x", "y", "z"], task="multilabel",
                                  thresholds=[0.5, 0.5, 0.5])
    assert [(m["path"], m["wrong"]) for m in mistakes] == [("c", 3), ("a", 2), ("e", 1)]
    assert mistakes[1] == {"path": "a", "true": "x;z", "predicted": "x;y", "missed": ["z"], "extra": ["y"],
                           "wrong": 2, "probability": 0.9}  # y predicted at 0.8, z missed at 0.1 (0.9 sure)
    # with x's threshold lowered to 0.3, e is right
    lowered = confident_mistakes(list("abcde"), labels, outputs, ["x", "y", "z"], task="multilabel",
                                 thresholds={"x": 0.3, "y": 0.5, "z": 0.5})
    assert [m["path"] for m in lowered] == ["c", "a"]


def test_confident_mistakes_of_regression_largest_errors_first():
    targets = np.array([0.0, 1.0, 2.0, 3.0])
    outputs = np.array([[0.0], [1.5], [0.5], [3.1]])
    mistakes = confident_mistakes(list("abcd"), targets, outputs, ["size"], task="regression", limit=2)
    assert mistakes == [{"path": "c", "true": 2.0, "predicted": 0.5, "error": -1.5},
                        {"path": "b", "true": 1.0, "predicted": 1.5, "error": 0.5}]
    assert [m["path"] for m in confident_mistakes(list("abcd"), targets, outputs, ["size"],
                                                  task="regression")] == ["c", "b", "d"]  # a is exact


def write_thumbnails(folder: Path, count: int) -> list[str]:
    from PIL import Image

    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.new("RGB", (20, 20), (10 * i, 100, 50)).save(path)
        paths.append(str(path))
    return paths


def test_multilabel_report_shows_pr_curves_thresholds_and_labels(tmp_path):
    from graftkit.results.evaluate import choose_thresholds, score
    from graftkit.results.plots import plot_scores
    from graftkit.results.report import write_report

    rng = np.random.default_rng(0)
    names = ["crack", "finger", "black core"]
    labels = (rng.random((40, 3)) < 0.4).astype("float32")
    outputs = np.clip(labels * 0.3 + rng.random((40, 3)) * 0.7, 0, 1)  # some mistakes at any threshold
    thresholds = choose_thresholds(labels, outputs)
    s = score(labels, outputs, names, "multilabel", thresholds=thresholds)
    paths = write_thumbnails(tmp_path, 40)
    mistakes = confident_mistakes(paths, labels, outputs, names, task="multilabel", thresholds=thresholds)
    plots = plot_scores(s, labels, outputs, tmp_path)
    report = write_report(tmp_path / "report.html", title="multi", scores=s, plots=plots, mistakes=mistakes)
    page = assert_self_contained(report)
    html = report.read_text()
    text = " ".join(" ".join(page.text).split())
    assert f'id="map">{s["mean_average_precision"]:.4f}' in html and "3 labels" in text
    assert 'id="precision-recall-curves"' in html and 'id="per-label"' in html and "confusion" not in html
    assert [i["alt"] for i in page.images if i.get("class") == "plot"] == ["Precision-recall curves"]
    for name, row in s["per_class"].items():  # each label with its threshold
        assert f"{name} {row['threshold']:.4f} {row['average_precision']:.4f} {row['precision']:.4f}" in text
    assert f"exact match (every label of an image right) {s['exact_match']:.4f}" in text
    assert "Images with the most wrong labels" in text and "wrong:" in text


def test_regression_report_shows_the_plot_and_mae_rmse_r2(tmp_path):
    from graftkit.results.evaluate import score
    from graftkit.results.plots import plot_scores
    from graftkit.results.report import write_report

    targets = np.array([0, 1 / 3, 2 / 3, 1, 0, 1], "float32")
    outputs = (targets + np.array([0.1, -0.2, 0.05, 0.3, 0.0, -0.1]))[:, None]
    s = score(targets, outputs, ["defect probability"], "regression")
    s["task"] = {"kind": "regression", "mean": 0.5, "scale": 0.4}  # as metrics.json has it
    plots = plot_scores(s, targets, outputs, tmp_path)
    mistakes = confident_mistakes(write_thumbnails(tmp_path, 6), targets, outputs, s["class_names"],
                                  task="regression")
    stages = {"head": {"best_epoch": 3, "best_val_loss": 0.1, "val_mae": 0.1234, "seconds": 1.0,
                       "trainable_params": 10, "kept": True}}
    report = write_report(tmp_path / "report.html", title="reg", scores=s, plots=plots, mistakes=mistakes,
                          stages=stages)
    page = assert_self_contained(report)
    html = report.read_text()
    text = " ".join(" ".join(page.text).split())
    assert f'id="mae">{s["mae"]:.4g}' in html and "target defect probability" in text
    assert f"root mean squared error (RMSE) {s['rmse']:.4g}" in text and f"{s['r2']:.4f}" in text
    assert [i["alt"] for i in page.images if i.get("class") == "plot"] == ["Predicted and true values"]
    assert "val MAE" in text and "0.1234" in text and "confusion" not in html and "per-class" not in html
    assert "Largest errors" in text and "error +0.3" in text  # the largest first


def test_run_report_finds_the_task_plot(tmp_path):
    from graftkit.results.evaluate import score
    from graftkit.results.plots import plot_scores
    from graftkit.results.report import write_run_report

    s = score(np.array([1.0, 2.0, 3.0]), np.array([[1.1], [2.2], [2.7]]), ["size"], "regression")
    metrics = {**s, "task": {"kind": "regression", "mean": 2.0, "scale": 0.8}}
    plot_scores(metrics, [1.0, 2.0, 3.0], [[1.1], [2.2], [2.7]], tmp_path)
    report = write_run_report(tmp_path, metrics=metrics, config={"data": "cells"})
    page = assert_self_contained(report)
    assert [i["alt"] for i in page.images if i.get("class") == "plot"] == ["Predicted and true values"]
