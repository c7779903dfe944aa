"""Detection quality from boxes: IoU, greedy matching, recall and false positives, known answers."""

from __future__ import annotations

import pytest

from parablur.workloads.face_quality import (
    ImageQuality,
    found_again,
    iou,
    match,
    score_image,
    summarize,
)


def det(box, score=0.9):
    return {"box": list(box), "score": score}


def test_iou_known_values():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (2, 2, 5, 5)) == pytest.approx(25 / 100)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_match_is_greedy_by_score_and_uses_each_truth_once():
    truths = [(0, 0, 10, 10), (100, 100, 10, 10)]
    detections = [det((1, 1, 10, 10), 0.6), det((0, 0, 10, 10), 0.95), det((101, 99, 10, 10), 0.7)]
    assert sorted(match(detections, truths)) == [(1, 0), (2, 1)]  # the best-scored one wins truth 0


def test_match_needs_iou_of_at_least_0_3():
    truths = [(0, 0, 10, 10)]
    assert match([det((6, 0, 10, 10))], truths) == []  # IoU 0.25
    assert match([det((4, 0, 10, 10))], truths) == [(0, 0)]  # IoU 0.43


def test_score_image_counts_found_missed_and_false_positives():
    truths = [(0, 0, 40, 40), (100, 100, 50, 60), (300, 300, 20, 20)]  # the last is below 32 px
    detections = [det((2, 2, 40, 40)), det((500, 500, 40, 40)), det((300, 300, 20, 20)),
                  det((0, 0, 41, 41), 0.5)]  # a duplicate of the first face: a false positive
    q = score_image(detections, truths)
    assert q == ImageQuality(faces=2, found=1, false_positives=2)


def test_summary_pools_faces_and_averages_false_positives_per_image():
    total = summarize([ImageQuality(3, 3, 0), ImageQuality(1, 0, 2), ImageQuality(0, 0, 1)])
    assert total.recall == pytest.approx(3 / 4)
    assert total.false_positives_per_image == pytest.approx(1.0)
    assert total.to_dict()["images"] == 3
    assert summarize([ImageQuality(0, 0, 0)]).recall is None
    assert summarize([]).false_positives_per_image is None


def test_found_again_counts_faces_redetected_after_anonymization():
    before = [det((0, 0, 40, 40)), det((100, 100, 40, 40))]
    after = [det((0, 0, 44, 44)), det((300, 300, 40, 40))]
    assert found_again(before, after) == 1
    assert found_again(before, []) == 0
