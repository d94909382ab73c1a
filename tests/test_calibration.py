import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.special import softmax

from helpers.core import models
from helpers.evaluate import calibration, plots


def test_ece_matches_a_hand_count():
    # 15 bins of width 1/15; the confidences sit away from the edges
    prob = np.array([0.95, 0.97, 0.15, 0.70, 0.30, 0.56])
    labels = np.array([1, 0, 0, 0, 0, 1])
    # bin (14/15, 1]:        confidences .95 (right), .97 (wrong): accuracy 1/2, confidence .96
    # bin (12/15, 13/15]:    .85 (right):                          accuracy 1,   confidence .85
    # bin (10/15, 11/15]:    .70 (wrong), .70 (right):             accuracy 1/2, confidence .70
    # bin (8/15, 9/15]:      .56 (right):                          accuracy 1,   confidence .56
    by_hand = (2 * abs(0.5 - 0.96) + 1 * abs(1 - 0.85) + 2 * abs(0.5 - 0.70) + 1 * abs(1 - 0.56)) / 6
    assert calibration.expected_calibration_error(prob, labels) == pytest.approx(by_hand)
    table = calibration.reliability_table(prob, labels)
    assert list(table["count"]) == [1, 2, 1, 2]
    assert table["lower"].tolist() == pytest.approx([8 / 15, 10 / 15, 12 / 15, 14 / 15])
    assert table["accuracy"].tolist() == pytest.approx([1, 0.5, 1, 0.5])


def test_one_bin_compares_overall_accuracy_with_mean_confidence():
    prob, labels = np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 1, 0, 0])  # 2 of 4 right, mean confidence .725
    assert calibration.expected_calibration_error(prob, labels, bins=1) == pytest.approx(0.225)


def _draws(n, seed):
    """P(positive) spread over [0, 1] and labels drawn with exactly that probability."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 1, n)
    return prob, (rng.uniform(0, 1, n) < prob).astype(int)


def test_calibrated_probabilities_score_near_zero_and_overconfident_ones_worse():
    prob, labels = _draws(100_000, seed=0)
    calibrated = calibration.expected_calibration_error(prob, labels)
    log_odds = np.log(prob / (1 - prob))
    overconfident = 1 / (1 + np.exp(-3 * log_odds))  # the same predictions, pushed towards 0 and 1
    assert calibrated < 0.01
    assert calibration.expected_calibration_error(overconfident, labels) > 0.1


def test_reliability_table_counts_every_review_once():
    prob, labels = _draws(1_000, seed=1)
    prob[:3] = [0.5, 1.0, 0.0]  # the edges of the range count too
    table = calibration.reliability_table(prob, labels)
    assert table["count"].sum() == 1_000
    assert (table["lower"] < table["mean_confidence"]).all() and (table["mean_confidence"] <= table["upper"]).all()


def test_a_known_temperature_is_recovered():
    rng = np.random.default_rng(0)
    true_temperature = 2.5
    z = rng.normal(0, 2, size=(20_000, 2))  # the calibrated logits
    labels = np.array([rng.choice(2, p=p) for p in softmax(z, axis=1)])
    fitted = calibration.fit_temperature(z * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)


def test_reliability_figure_draws_both_curves():
    prob, labels = _draws(500, seed=2)
    before = calibration.reliability_table(np.clip(prob * 1.5 - 0.25, 0, 1), labels)
    after = calibration.reliability_table(prob, labels)
    fig = plots.reliability(before, after)
    assert isinstance(fig, Figure)
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "perfectly calibrated" and legend[1].startswith("before (ECE") and legend[2].startswith("after")


def _logits(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, model.config.vocab_size, (4, 12), generator=generator)
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits


@pytest.mark.parametrize("architecture", ["bert", "distilbert", "cls-head"])
def test_folding_divides_the_logits_and_records_the_temperature(tiny_teacher, architecture):
    model = {"bert": lambda: tiny_teacher, "distilbert": lambda: models.distil_from_teacher(tiny_teacher),
             "cls-head": lambda: models.cls_head_classifier(tiny_teacher)}[architecture]()
    original = _logits(model)
    assert calibration.recorded_temperature(model.config) == 1.0
    calibration.fold_temperature(model, 2.5)
    torch.testing.assert_close(_logits(model), original / 2.5, atol=1e-5, rtol=1e-5)
    calibration.fold_temperature(model, 0.8)
    torch.testing.assert_close(_logits(model), original / 2.0, atol=1e-5, rtol=1e-5)
    assert calibration.recorded_temperature(model.config) == pytest.approx(2.0)
    recovered = _logits(model) * calibration.recorded_temperature(model.config)
    torch.testing.assert_close(recovered, original, atol=1e-5, rtol=1e-5)


def test_the_folded_temperature_survives_saving(tiny_teacher, tmp_path):
    calibration.fold_temperature(tiny_teacher, 1.7)
    tiny_teacher.save_pretrained(tmp_path)
    reloaded = models.load_trained(tmp_path)
    assert calibration.recorded_temperature(reloaded.config) == pytest.approx(1.7)
    torch.testing.assert_close(_logits(reloaded), _logits(tiny_teacher), atol=1e-5, rtol=1e-5)


def test_folding_refuses_what_it_cannot_fold(tiny_teacher):
    class HeadModule(torch.nn.Module):  # like RoBERTa's, whose `classifier` is a whole head
        def __init__(self):
            super().__init__()
            self.classifier = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))

    with pytest.raises(TypeError, match="torch.nn.Linear"):
        calibration.fold_temperature(HeadModule(), 2.0)
    with pytest.raises(TypeError, match="no classifier"):
        calibration.fold_temperature(torch.nn.Linear(4, 2), 2.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            calibration.fold_temperature(tiny_teacher, bad)
    assert calibration.recorded_temperature(tiny_teacher.config) == 1.0


def test_folds_multiply_and_the_inverse_fold_gives_back_the_raw_model(tiny_teacher):
    import copy

    raw = copy.deepcopy(tiny_teacher)
    calibration.fold_temperature(tiny_teacher, 2.0)
    calibration.fold_temperature(tiny_teacher, 1.5)
    assert calibration.recorded_temperature(tiny_teacher.config) == pytest.approx(3.0)
    calibration.fold_temperature(tiny_teacher, 1 / calibration.recorded_temperature(tiny_teacher.config))
    torch.testing.assert_close(tiny_teacher.classifier.weight, raw.classifier.weight)
    assert calibration.recorded_temperature(tiny_teacher.config) == pytest.approx(1.0)


def test_the_ece_interval_is_seeded_holds_the_figure_and_narrows_with_more_reviews():
    prob, labels = _draws(20_000, seed=3)
    overconfident = 1 / (1 + np.exp(-2 * np.log(prob / (1 - prob))))
    widths = []
    for n in (500, 20_000):
        low, high = calibration.ece_interval(overconfident[:n], labels[:n])
        assert low <= calibration.expected_calibration_error(overconfident[:n], labels[:n]) <= high
        assert calibration.ece_interval(overconfident[:n], labels[:n]) == [low, high]
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # about 1 / sqrt(40) as wide


def _miscalibrated(n, scale, rng):
    """Two-class logits `scale` times too confident for labels drawn from the true ones."""
    true = rng.normal(0, 2, n)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-true))).astype(int)
    return np.c_[np.zeros(n), scale * true], labels


@pytest.mark.parametrize("scale", [3.0, 0.4])  # overconfident, underconfident
def test_a_temperature_fitted_on_some_reviews_lowers_the_nll_of_others_on_average(scale):
    rng, changes = np.random.default_rng(0), []
    for _ in range(40):
        logits, labels = _miscalibrated(600, scale, rng)
        temperature = calibration.fit_temperature(logits[:300], labels[:300])
        changes.append(calibration.mean_nll(logits[300:], labels[300:], temperature)
                       - calibration.mean_nll(logits[300:], labels[300:]))
    assert np.mean(changes) < 0


def test_calibrated_probabilities_are_claimed_only_where_the_held_out_nll_fell():
    fitted = {"temperature": 1.2, "val_reviews": 200, "bins": 15, "ece_uncalibrated": 0.041, "ece": 0.049,
              "ece_uncalibrated_ci95": [0.03, 0.06], "ece_ci95": [0.035, 0.07], "nll_uncalibrated": 0.30, "nll": 0.31}
    assert not calibration.lowered_nll(fitted) and "did not lower it" in calibration.calibration_summary(fitted)
    assert calibration.lowered_nll({**fitted, "nll": 0.29}) and "lowered it." in calibration.calibration_summary({**fitted, "nll": 0.29})
    assert not calibration.lowered_nll({k: v for k, v in fitted.items() if not k.startswith("nll")})  # never measured
