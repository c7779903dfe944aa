"""Face tracking across frames on synthetic detections with known answers."""

from __future__ import annotations

import numpy as np

from parablur.workloads.tracking import (
    LEAD_FRAMES,
    MAX_GAP_S,
    SMOOTH_FRAMES,
    Detection,
    gap_frames,
    link,
    required_overlap,
    track_faces,
    track_segment,
)

FPS = 25.0


def moving(t: float, x0: float = 100.0, vx: float = 100.0, y: float = 200.0, size: float = 80.0):
    """True box at time t of a face moving right at vx px/s."""
    return (x0 + vx * t, y, size, size)


def clip(n: int, boxes_at, missing=(), pts=None):
    """Frames with one detection per box of ``boxes_at(t)``, none at positions in ``missing``."""
    pts = pts if pts is not None else [i / FPS for i in range(n)]
    return [(i, pts[i], [] if i in missing else [Detection(b, 0.9) for b in boxes_at(pts[i])])
            for i in range(n)]


def covers(outer, inner, tol=1e-6):
    """Whether box ``outer`` contains box ``inner``."""
    return (outer[0] <= inner[0] + tol and outer[1] <= inner[1] + tol
            and outer[0] + outer[2] >= inner[0] + inner[2] - tol
            and outer[1] + outer[3] >= inner[1] + inner[3] - tol)


def test_missing_frames_are_interpolated_and_marked_tracked():
    frames = clip(20, lambda t: [moving(t)], missing={8, 9})
    out = track_faces(frames)
    for i in (8, 9):
        assert len(out[i]) == 1
        face = out[i][0]
        assert face.tracked and face.track == 0
        assert np.allclose(face.box, moving(i / FPS), atol=0.5)
    assert all(len(out[i]) == 1 and not out[i][0].tracked for i in range(20) if i not in (8, 9))
    assert {f.track for faces in out for f in faces} == {0}


def test_gap_longer_than_max_gap_splits_track():
    missing = set(range(5, 5 + int(MAX_GAP_S * FPS) + 3))  # 0.4 s without detection
    frames = clip(30, lambda t: [moving(t, vx=20.0)], missing=missing)
    tracks = link(frames)
    assert len(tracks) == 2
    assert tracks[0][-1][0] == 4 and tracks[1][0][0] == max(missing) + 1
    out = track_faces(frames)
    lead_out = set(range(5, 5 + LEAD_FRAMES))
    lead_in = set(range(max(missing) + 1 - LEAD_FRAMES, max(missing) + 1))
    for i in missing:
        ids = {f.track for f in out[i]}
        expected = ({0} if i in lead_out else set()) | ({1} if i in lead_in else set())
        assert ids == expected, i
    # no interpolation across: unsmoothed, the lead frames hold exactly the last/first box
    raw = track_faces(frames, smooth_frames=1)
    for i in lead_out:
        assert raw[i][0].tracked and np.allclose(raw[i][0].box, frames[4][2][0].box, atol=1e-9)
    for i in lead_in:
        assert raw[i][0].tracked and np.allclose(raw[i][0].box, frames[max(missing) + 1][2][0].box, atol=1e-9)


def test_lead_in_and_lead_out():
    n = 30
    frames = [(i, i / FPS, [Detection(moving(i / FPS), 0.8)] if 10 <= i <= 19 else []) for i in range(n)]
    out = track_faces(frames)
    present = [i for i in range(n) if out[i]]
    assert present == list(range(10 - LEAD_FRAMES, 20 + LEAD_FRAMES))
    for i in list(range(10 - LEAD_FRAMES, 10)) + list(range(20, 20 + LEAD_FRAMES)):
        assert out[i][0].tracked
    assert all(not out[i][0].tracked for i in range(10, 20))
    # lead-in sits at the first box, lead-out at the last (smoothing of constant boxes keeps them)
    assert np.allclose(out[10 - LEAD_FRAMES][0].box, moving(10 / FPS), atol=1e-6)
    assert np.allclose(out[19 + LEAD_FRAMES][0].box, moving(19 / FPS), atol=1e-6)


def test_jitter_is_smoothed_and_detections_stay_covered():
    rng = np.random.default_rng(7)
    n = 60
    truth = [moving(i / FPS, vx=50.0) for i in range(n)]
    jittered = [tuple(np.add(b, rng.normal(0, 3.0, 4) * [1, 1, 0.5, 0.5])) for b in truth]
    frames = [(i, i / FPS, [Detection(jittered[i], 0.9)]) for i in range(n)]
    out = track_faces(frames)
    assert all(len(f) == 1 for f in out[:n])

    def centres(boxes):
        return np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2] for b in boxes])

    raw_step = np.abs(np.diff(centres(jittered), axis=0)).max()
    smooth_step = np.abs(np.diff(centres([f[0].box for f in out[:n]]), axis=0)).max()
    assert smooth_step < raw_step
    for i in range(n):
        assert covers(out[i][0].box, jittered[i])
        assert not out[i][0].tracked


def test_crossing_faces_keep_their_ids():
    # two faces moving towards each other along x at different heights: they overlap a little
    def boxes(t):
        return [(100 + 200 * t, 100, 80, 80), (500 - 200 * t, 140, 80, 80)]

    frames = clip(50, boxes)
    out = track_faces(frames)
    for i, faces in enumerate(out):
        assert len(faces) == 2
        by_id = {f.track: f.box for f in faces}
        assert set(by_id) == {0, 1}
        t = i / FPS
        # the face of track 0 is the one starting at x=100 (first detection rank: same score, box order)
        assert abs(by_id[0][0] - (100 + 200 * t)) < 20, i
        assert abs(by_id[1][0] - (500 - 200 * t)) < 20, i


def test_variable_frame_rate_interpolates_in_pts():
    rng = np.random.default_rng(3)
    steps = rng.choice([1 / 50, 1 / 25, 1 / 30, 1 / 15], size=40)
    pts = np.concatenate([[0.0], np.cumsum(steps)[:-1]]).tolist()
    frames = clip(40, lambda t: [moving(t, vx=300.0)], missing={20, 21}, pts=pts)
    out = track_faces(frames, smooth_frames=1)
    for i in (20, 21):
        assert out[i][0].tracked
        assert np.allclose(out[i][0].box, moving(pts[i], vx=300.0), atol=1e-6)


def _two_face_clip(n=200, seed=11):
    rng = np.random.default_rng(seed)
    drop = set(rng.choice(n, size=25, replace=False).tolist())
    frames = []
    for i in range(n):
        t = i / FPS
        dets = []
        if i not in drop and 10 <= i <= 150:
            dets.append(Detection(tuple(np.add(moving(t, vx=60), rng.normal(0, 2, 4))), 0.9))
        if (i + 7) not in drop and 40 <= i:
            dets.append(Detection(tuple(np.add((600 - 40 * t, 300, 60, 60), rng.normal(0, 2, 4))), 0.7))
        if 90 <= i <= 100 and i % 2:  # a short-lived face with gaps
            dets.append(Detection((900, 50, 40, 40), 0.5))
        frames.append((i, t, dets))
    return frames


def _canon(faces):
    return sorted((tuple(round(v, 9) for v in f.box), f.tracked) for f in faces)


def test_segments_with_required_overlap_equal_whole_clip():
    frames = _two_face_clip()
    whole = track_faces(frames)
    overlap = required_overlap(FPS)
    g = gap_frames(FPS)
    assert overlap == SMOOTH_FRAMES // 2 + max(g, LEAD_FRAMES) + 2 * g
    n = len(frames)
    for start in range(0, n, 23):
        end = min(n, start + 23) - 1
        window = frames[max(0, start - overlap): end + overlap + 1]
        seg = track_segment(window, start, end)
        assert [index for index, _ in seg] == list(range(start, end + 1))
        ids: dict[int, int] = {}
        for index, faces in seg:
            assert _canon(faces) == _canon(whole[index]), index
            for f in faces:  # segment-local ids map one-to-one onto the clip's
                match = [w.track for w in whole[index] if np.allclose(w.box, f.box)]
                assert ids.setdefault(f.track, match[0]) == match[0]
        assert len(set(ids.values())) == len(ids)


def test_segments_with_too_small_overlap_may_differ():
    frames = _two_face_clip()
    whole = track_faces(frames)
    overlap = required_overlap(FPS)
    assert overlap > 2
    differs = False
    for start in range(0, len(frames), 23):
        end = min(len(frames), start + 23) - 1
        window = frames[max(0, start - 1): end + 2]
        for index, faces in track_segment(window, start, end):
            differs |= _canon(faces) != _canon(whole[index])
    assert differs
