"""One verdict per filter x AU in words, worded from the funnel, that explains the apparent
conflicts between the top-K share and the within-emotion test (constructed figures of one layer:
each filter built to show one case)."""

import numpy as np

from fercore.analysis.criteria import Criteria, explain, verdict

CLASSES = ("neutral", "happy", "surprise")


def _layer():
    """Four filters x one AU (AU12): 0 passes beyond emotion with a top-K share its emotions
    already predict (all happy faces, AU12 rate 1); 1 passes the test but its top-K lists do not
    carry the AU; 2 carries the AU in its top-K far beyond its emotions but fails the test; 3 has
    no evidence at all."""
    f = 4
    ev = {
        "au_ids": np.array([12]), "base_rate": np.array([0.3]), "testable": np.array([True]),
        "minority": np.array([40]), "n_units": np.array([300]),
        "share_raw": np.array([[1.0], [0.4], [0.9], [0.2]]), "share_distinct": np.array([[1.0], [0.3], [0.9], [0.2]]),
        "expected": np.array([[1.0], [0.3], [0.4], [0.3]]),
        "auc_emotion": np.array([[0.8], [0.85], [0.55], [0.5]]),
        "auc_low": np.array([[0.72], [0.78], [0.47], [0.42]]), "auc_high": np.array([[0.88], [0.92], [0.63], [0.58]]),
        "q_emotion": np.array([[1e-4], [1e-5], [0.9], [1.0]]),
        "spatial": np.full((f, 1), np.nan),
        "detectable_auc": np.array([0.7]), "power_status": np.array([1], np.int8),
        "auc_class": np.array([[[0.85, np.nan, 0.7]], [[0.9, np.nan, 0.8]], [[0.5, np.nan, 0.6]], [[0.5, np.nan, 0.5]]]),
        "list_class": np.array([1, 0, 2, 0]), "list_class_share": np.array([0.94, 0.5, 0.6, 0.4]),
        "rates": np.array([[0.2], [1.0], [0.3]]),
    }
    return ev


def test_beyond_emotion_with_a_share_its_emotions_predict_is_explained():
    ev, c = _layer(), Criteria()
    assert verdict(ev, c, 0, 0)[2]["in_funnel"]
    text = explain(ev, c, 0, 0, CLASSES)
    assert text.startswith("Beyond emotion: within neutral (AUC 0.85) and surprise (0.70) faces")
    assert "0.80 [0.72, 0.88]" in text and "detectable from 0.70" in text
    assert "does not exceed what its images' emotions predict (1.00)" in text
    assert "94% happy faces, which carry the AU at a rate of 1.00" in text


def test_a_test_that_passes_behind_a_failed_top_k_stage_is_named_so():
    ev, c = _layer(), Criteria()
    text = explain(ev, c, 1, 0, CLASSES)
    assert text.startswith("Not beyond emotion: within the emotions it does separate AU12")
    assert "raw fails" in text


def test_a_top_k_excess_that_the_test_does_not_confirm_rests_on_the_strongest_faces():
    ev, c = _layer(), Criteria()
    text = explain(ev, c, 2, 0, CLASSES)
    assert text.startswith("Not beyond emotion: its top-K carries AU12 (0.90) more often than its emotions predict")
    assert "few strongest faces" in text and "0.55 [0.47, 0.63]" in text


def test_no_evidence_and_untestable_read_as_such():
    ev, c = _layer(), Criteria()
    assert explain(ev, c, 3, 0, CLASSES).startswith("No evidence for AU12: raw fails")
    ev["testable"] = np.array([False])
    ev["minority"] = np.array([3])
    assert explain(ev, c, 0, 0, CLASSES).startswith("Untestable beyond emotion: AU12 varies in 3 units")
