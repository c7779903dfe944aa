"""Detection quality from boxes: IoU, greedy matching, recall and false positives, known answers;
and faces a clip's output still exposes, on synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from parablur.workloads.face_quality import (
    BANDS,
    MIN_HEIGHT,
    ImageQuality,
    band_of,
    exposed_face_frames,
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
    truths = [(0, 0, 40, 40), (100, 100, 50, 60), (300, 300, 12, 12)]  # the last is under 16 px tall
    detections = [det((2, 2, 40, 40)), det((500, 500, 40, 40)), det((300, 300, 12, 12)),
                  det((0, 0, 41, 41), 0.5)]  # a duplicate of the first face: a false positive
    q = score_image(detections, truths)
    # The face under 16 px counts nowhere: not in recall, and the detection matching it is no
    # false positive.
    assert (q.faces, q.found, q.false_positives) == (2, 1, 2)
    assert q.band_faces == (0, 0, 1, 1) and q.band_found == (0, 0, 1, 0)


def test_bands_go_by_the_true_box_height_and_include_their_lower_edge():
    assert MIN_HEIGHT == 16 and [b[0] for b in BANDS] == ["16_to_20px", "20_to_30px", "30_to_45px",
                                                          "45px_up"]
    assert [band_of(h) for h in (15.9, 16, 19.9, 20, 29.9, 30, 44.9, 45, 2000)] == \
        [None, 0, 0, 1, 1, 2, 2, 3, 3]
    # Height, not the longer side: a box 50 wide and 18 tall is in the 16-20 band.
    q = score_image([], [(0, 0, 50, 18)])
    assert q.band_faces == (1, 0, 0, 0) and q.faces == 1


def test_recall_by_band_on_synthetic_boxes_with_known_answers():
    # Image one: faces 17, 18, 25, 40, 60 and 10 px tall; found: 17, 40, 60 and the 10 px one.
    truths = [(0, 0, 17, 17), (100, 0, 18, 18), (200, 0, 25, 25), (300, 0, 40, 40), (400, 0, 60, 60),
              (600, 0, 10, 10)]
    found = [det(truths[i]) for i in (0, 3, 4, 5)]
    one = score_image([*found, det((800, 800, 30, 30))], truths)  # one false positive
    # Image two: a 22 px face found, two false positives, one of them a duplicate.
    two = score_image([det((0, 0, 22, 22)), det((1, 1, 22, 22), 0.4), det((900, 900, 50, 50))],
                      [(0, 0, 22, 22)])
    total = summarize([one, two])
    assert (total.faces, total.found, total.false_positives) == (6, 4, 3)
    assert total.band_faces == (2, 2, 1, 1) and total.band_found == (1, 1, 1, 1)
    assert total.band_recall == (0.5, 0.5, 1.0, 1.0)
    assert total.recall == pytest.approx(4 / 6) and total.false_positives_per_image == 1.5
    d = total.to_dict()
    assert d["recall_by_height"] == {"16_to_20px": 0.5, "20_to_30px": 0.5, "30_to_45px": 1.0,
                                     "45px_up": 1.0}
    assert d["faces_by_height"]["16_to_20px"] == 2 and d["found_by_height"]["45px_up"] == 1
    assert list(d)[:3] == ["recall", "recall_by_height", "false_positives_per_image"]


def test_a_higher_min_height_leaves_the_shorter_faces_out_of_every_count():
    truths = [(0, 0, 18, 18), (100, 0, 40, 40), (200, 0, 60, 60)]
    q = score_image([det(truths[0]), det((500, 500, 30, 30))], truths, min_height=32)
    assert (q.faces, q.found, q.false_positives) == (2, 0, 1)
    assert q.band_faces == (0, 0, 1, 1)


def test_a_band_without_a_face_has_no_recall():
    q = summarize([score_image([], [(0, 0, 50, 50)])])
    assert q.band_recall == (None, None, None, 0.0) and q.recall == 0.0


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


# -- exposed_face_frames ------------------------------------------------------------------------

W, H = 64, 48


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _hide(frame: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    out = frame.copy()
    out[y:y + h, x:x + w] = 128  # a solid fill: far from the noise it replaces
    return out


def test_a_hidden_face_is_hidden_and_an_untouched_one_exposed():
    source = _frames(3)
    hidden, left = [10, 10, 16, 16], [40, 20, 12, 14]
    truth = [[hidden, left]] * 3
    output = [_hide(f, hidden) for f in source]
    seen = exposed_face_frames(iter(source), iter(output), iter(truth), min_box=8)
    assert (seen.frames, seen.total, seen.exposed) == (3, 6, 3)
    assert (seen.inner_total, seen.inner_exposed) == (6, 3)
    assert seen.exposed_fraction == 0.5 and seen.inner_exposed_fraction == 0.5
    assert seen.to_dict()["exposed"] == 3


def test_a_change_within_min_diff_leaves_the_face_exposed():
    source = _frames(1)
    box = [8, 8, 20, 20]
    nudged = source[0].astype(np.int16)
    nudged[8:28, 8:28] += 5
    output = [np.clip(nudged, 0, 255).astype(np.uint8)]
    assert exposed_face_frames(source, output, [[box]], min_box=8).exposed == 1
    assert exposed_face_frames(source, output, [[box]], min_box=8, min_diff=2.0).exposed == 0


def test_small_boxes_are_not_counted_and_boxes_are_clipped_to_the_frame():
    source = _frames(1)
    truth = [[[0, 0, 6, 6], [W - 10, H - 30, 40, 40], [-20, 5, 30, 20]]]
    seen = exposed_face_frames(source, source, truth, min_box=8)
    # the 6 px box is left out; the two others are clipped (10x30 and 10x20) and touch the edge
    assert (seen.total, seen.exposed, seen.inner_total) == (2, 2, 0)
    assert exposed_face_frames(source, source, [[[W + 5, 0, 20, 20]]], min_box=1).total == 0


def test_float_boxes_count_every_pixel_they_touch():
    source = _frames(1)
    output = [_hide(source[0], [10, 10, 11, 11])]
    # 10.5..20.5 touches pixels 10..20: the whole hidden square
    assert exposed_face_frames(source, output, [[[10.5, 10.5, 10.0, 10.0]]], min_box=8).exposed == 0


def test_no_faces_gives_no_fraction():
    source = _frames(2)
    seen = exposed_face_frames(source, source, [[], []])
    assert (seen.frames, seen.total) == (2, 0)
    assert seen.exposed_fraction is None and seen.inner_exposed_fraction is None


def test_frame_counts_and_sizes_must_agree():
    source = _frames(3)
    with pytest.raises(ValueError, match="frame count"):
        exposed_face_frames(source, source[:2], [[]] * 3)
    with pytest.raises(ValueError, match="frame count"):
        exposed_face_frames(source, source, [[]] * 4)
    with pytest.raises(ValueError, match="differ in size"):
        exposed_face_frames(source[:1], [source[0][:, :32]], [[]])


def test_frames_are_taken_one_at_a_time():
    """Generators are read in step: no more than one frame of each is held at once."""
    held = []

    def frames(tag):
        for i, frame in enumerate(_frames(4)):
            held.append((tag, i))
            yield frame

    truth = ([[4, 4, 20, 20]] for _ in range(4))
    seen = exposed_face_frames(frames("a"), frames("b"), truth, min_box=8)
    assert seen.frames == 4 and seen.exposed == 4
    assert held == [(t, i) for i in range(4) for t in "ab"]
