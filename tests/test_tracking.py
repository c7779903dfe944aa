"""Face tracking across frames on synthetic detections with known answers."""

from __future__ import annotations

import numpy as np

from parablur.workloads import tracking
from parablur.workloads.tracking import (
    EDGE_EXIT_S,
    LEAD_FRAMES,
    MAX_GAP_S,
    SMOOTH_FRAMES,
    VELOCITY_S,
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


def check_segments_equal_whole_clip(frames, size=None, step=23):
    whole = track_faces(frames, size=size)
    overlap = required_overlap(FPS)
    g = gap_frames(FPS)
    edge = gap_frames(FPS, EDGE_EXIT_S) + gap_frames(FPS, VELOCITY_S)
    assert overlap == SMOOTH_FRAMES // 2 + max(g, LEAD_FRAMES, edge) + 2 * g
    n = len(frames)
    for start in range(0, n, step):
        end = min(n, start + step) - 1
        window = frames[max(0, start - overlap): end + overlap + 1]
        seg = track_segment(window, start, end, size=size)
        assert [index for index, _ in seg] == list(range(start, end + 1))
        ids: dict[int, int] = {}
        for index, faces in seg:
            assert _canon(faces) == _canon(whole[index]), index
            for f in faces:  # segment-local ids map one-to-one onto the clip's
                match = [w.track for w in whole[index] if np.allclose(w.box, f.box)]
                assert ids.setdefault(f.track, match[0]) == match[0]
        assert len(set(ids.values())) == len(ids)


def test_segments_with_required_overlap_equal_whole_clip():
    check_segments_equal_whole_clip(_two_face_clip())


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


# -- faces entering and leaving the frame ------------------------------------------------

W, H = 640, 360


def visible(box, size=(W, H)) -> float:
    """The share of ``box`` inside a frame of ``size``."""
    x, y, w, h = box
    iw = max(0.0, min(size[0], x + w) - max(0.0, x))
    ih = max(0.0, min(size[1], y + h) - max(0.0, y))
    return iw * ih / (w * h)


def detected_while(boxes_at, n, least=0.7, size=(W, H)):
    """Frames of a clip where a face is detected only while ``least`` of its box is in the frame
    (as YuNet loses a face cut by the edge), at its clipped box."""
    frames = []
    for i in range(n):
        dets = []
        for b in boxes_at(i / FPS):
            if visible(b, size) >= least:
                x0, y0 = max(0.0, b[0]), max(0.0, b[1])
                x1, y1 = min(size[0], b[0] + b[2]), min(size[1], b[1] + b[3])
                dets.append(Detection((x0, y0, x1 - x0, y1 - y0), 0.9))
        frames.append((i, i / FPS, dets))
    return frames


def covered(mask, box, size=(W, H)) -> float:
    """The share of the part of ``box`` inside the frame that the mask box ``mask`` covers."""
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(size[0], box[0] + box[2]), min(size[1], box[1] + box[3])
    iw = max(0.0, min(x1, mask[0] + mask[2]) - max(x0, mask[0]))
    ih = max(0.0, min(y1, mask[1] + mask[3]) - max(y0, mask[1]))
    return iw * ih / ((x1 - x0) * (y1 - y0))


def test_a_face_leaving_the_frame_stays_hidden_until_it_is_out():
    def box(t):  # 80 px, moving right at 60 px/s, out of the frame after about 4 s
        return (400 + 60 * t, 140, 80, 80)

    n = 125
    frames = detected_while(lambda t: [box(t)], n, least=0.75)
    last_seen = max(i for i, _, d in frames if d)
    truth = [i for i in range(n) if visible(box(i / FPS)) >= 0.5]  # in the clip's truth
    present = [i for i in range(n) if visible(box(i / FPS)) > 0]  # any of it in the frame
    assert truth[-1] > last_seen + LEAD_FRAMES  # what a plain lead-out leaves exposed
    out = track_faces(frames, size=(W, H))
    for i in truth:
        assert len(out[i]) == 1 and covered(out[i][0].box, box(i / FPS)) > 0.9, i
    for i in range(last_seen + 1, present[-1] + 1):  # carried on at the track's velocity
        assert out[i] and out[i][0].tracked and covered(out[i][0].box, box(i / FPS)) > 0.5, i
    assert all(not out[i] for i in range(present[-1] + SMOOTH_FRAMES, n))
    # without the frame's size: LEAD_FRAMES at the last box, as before
    plain = track_faces(frames)
    assert [i for i in range(n) if plain[i]][-1] == last_seen + LEAD_FRAMES


def test_a_face_entering_the_frame_is_hidden_before_it_is_found():
    def box(t):  # 80 px coming down into the frame from above at 60 px/s
        return (300, -70 + 60 * t, 80, 80)

    n = 60
    frames = detected_while(lambda t: [box(t)], n, least=0.75)
    first_seen = min(i for i, _, d in frames if d)
    truth = [i for i in range(n) if visible(box(i / FPS)) >= 0.5]
    assert first_seen - LEAD_FRAMES > truth[0]
    out = track_faces(frames, size=(W, H))
    for i in truth:
        assert len(out[i]) == 1 and covered(out[i][0].box, box(i / FPS)) > 0.9, i
    plain = track_faces(frames)
    assert [i for i in range(n) if plain[i]][0] == first_seen - LEAD_FRAMES


def test_a_face_resting_on_the_edge_keeps_its_mask_at_most_edge_exit_s():
    n = 100  # a face still, a third of it outside the frame, found in frames 0..29 only
    frames = [(i, i / FPS, [Detection((W - 54, 100, 54, 80), 0.9)] if i < 30 else []) for i in range(n)]
    out = track_faces(frames, size=(W, H))
    held = [i for i in range(n) if out[i]]
    assert held == list(range(0, 29 + round(EDGE_EXIT_S * FPS) + 1))


def test_a_track_ending_inside_the_frame_keeps_only_its_lead_out():
    frames = [(i, i / FPS, [Detection(moving(i / FPS), 0.8)] if 10 <= i <= 19 else []) for i in range(40)]
    assert track_faces(frames, size=(W, H)) == track_faces(frames)


def test_edge_handling_off_is_the_plain_lead(monkeypatch):
    frames = detected_while(lambda t: [(400 + 150 * t, 140, 80, 80)], 60)
    monkeypatch.setattr(tracking, "EDGE_EXIT_S", 0.0)
    assert track_faces(frames, size=(W, H)) == track_faces(frames)
    assert required_overlap(FPS) == SMOOTH_FRAMES // 2 + 3 * gap_frames(FPS)


def test_segments_of_faces_crossing_the_edges_equal_whole_clip():
    def boxes(t):
        return [(-60 + 200 * t, 100, 70, 70),  # enters from the left, leaves on the right
                (500, 300 - 90 * t, 60, 60),  # enters from below
                (W - 40 - 30 * t, 20, 64, 64)]  # starts cut by the right edge, moves in

    rng = np.random.default_rng(5)
    frames = detected_while(boxes, 150)
    frames = [(i, t, [Detection(tuple(np.add(d.box, rng.normal(0, 1.5, 4))), d.score) for d in dets])
              for i, t, dets in frames]
    assert any(f.tracked for faces in track_faces(frames, size=(W, H)) for f in faces)
    check_segments_equal_whole_clip(frames, size=(W, H), step=19)
