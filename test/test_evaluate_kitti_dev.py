"""training/evaluate.py on kitti_dev's two protocols: the held-out draw, the frames each
protocol builds, the IP-Basic baseline row and the input-deviation metric, and the README's
reference figures on the real frames (skipped where ../shared/data/kitti_dev is absent)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_ros.completion import ClassicalCompletion
from depth_ros.inference import DepthEstimator
from depth_ros.metrics import kitti_devkit_metrics
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.weights import DEFAULT_FUSION_MODEL, DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training import evaluate as ev  # noqa: E402

KITTI_DEV = REPO.parent / "shared" / "data" / "kitti_dev"
needs_kitti_dev = pytest.mark.skipif(
    not (KITTI_DEV / "2011_09_26").is_dir(),
    reason=f"kitti_dev not found at {KITTI_DEV} (../shared/data/kitti_dev beside the repository)")


@pytest.fixture(scope="module")
def engine_root(tmp_path_factory) -> Path:
    """A small stereo engine drive with LiDAR: the kitti_dev layout (velodyne_raw PNGs)."""
    root = tmp_path_factory.mktemp("kitti_dev_like")
    write_synthetic_drive(root, num_frames=2, seed=3002, drive=1, progress=False,
                          stereo=True, lidar=True, width=414, height=125)
    return root


def test_holdout_mask_is_the_readmes_draw():
    has = np.zeros((375, 1242), bool)
    has[150:, ::3] = True
    held = ev.holdout_mask(4, 3, has)
    expected = (np.random.default_rng(43).random((375, 1242)) < 0.2) & has
    np.testing.assert_array_equal(held, expected)
    assert held.sum() / has.sum() == pytest.approx(0.2, abs=0.01)
    assert not (ev.holdout_mask(4, 2, has) == held).all()  # the camera changes the draw


def test_holdout_frames_split_each_scan_in_two(engine_root):
    holdout = ev.KittiDevFrames(engine_root, "lidar_holdout")
    whole = ev.KittiDevFrames(engine_root, "kitti_dev_mono")
    assert len(holdout) == len(whole) == 4  # 2 frames × cameras 2 and 3
    for index in range(len(holdout)):
        frame, full = holdout.frame(index), whole.frame(index)
        scan = full.sparse_depth
        np.testing.assert_array_equal(full.depth, scan)
        held, given = frame.depth > 0, frame.sparse_depth > 0
        assert not (held & given).any()
        np.testing.assert_array_equal(held | given, scan > 0)
        np.testing.assert_array_equal(np.where(held, frame.depth, frame.sparse_depth), scan)
        assert held.sum() / (scan > 0).sum() == pytest.approx(0.2, abs=0.03)
    # Camera 3's frames follow camera 2's and draw their own held-out pixels.
    assert "image_03" in holdout.frame(2).name
    assert not np.array_equal(holdout.frame(0).depth > 0, holdout.frame(2).depth > 0)


def test_classical_model_is_scored_at_the_held_out_pixels(engine_root):
    reader = ev.KittiDevFrames(engine_root, "lidar_holdout")
    results = ev.evaluate(ClassicalCompletion(), reader, "lidar_holdout", progress=False)
    # No IP-Basic baseline row beside IP-Basic itself; its own see-through bands.
    assert set(results) == {"model", "model@see_through", "model@visible"}
    model = results["model"]
    maes, devs = [], []
    for index in range(len(reader)):
        frame = reader.frame(index)
        pred = ClassicalCompletion().predict(frame.rgb, frame.sparse_depth)
        maes.append(kitti_devkit_metrics(np.clip(pred, 1e-3, 1e3), frame.depth)["mae"])
        given = frame.sparse_depth > 0
        devs.append(np.median(np.abs(pred[given] - frame.sparse_depth[given])))
    assert model["frames"] == 4
    assert model["devkit_mae"] == pytest.approx(np.mean(maes))
    assert model["input_dev_m"] == pytest.approx(np.mean(devs))
    assert 0 < model["devkit_mae"] < 3000  # the engine's clean scans complete well


def test_fusion_models_get_the_ip_basic_row(engine_root):
    reader = ev.KittiDevFrames(engine_root, "lidar_holdout")
    results = ev.evaluate(DepthEstimator(DEFAULT_FUSION_MODEL), reader, "lidar_holdout",
                          progress=False)
    # The bundled model has a confidence output: its statistics come as one more entry; both
    # rows are also scored where the scan saw past a near object's edge and elsewhere.
    bands = {f"{row}@{band}" for row in ("model", "ip_basic")
             for band in ("see_through", "visible")}
    assert set(results) == {"model", "ip_basic", "confidence"} | bands
    assert results["model"]["input_dev_m"] >= 0 and results["ip_basic"]["input_dev_m"] >= 0
    assert results["model"]["input_dev_m"] <= 0.03
    alone = ev.evaluate(DepthEstimator(DEFAULT_FUSION_MODEL), reader, "lidar_holdout",
                        progress=False, classical_baseline=False)
    assert set(alone) == {"model", "confidence", "model@see_through", "model@visible"}
    assert alone["model"]["devkit_rmse"] == pytest.approx(results["model"]["devkit_rmse"])
    mono = ev.evaluate(DepthEstimator(DEFAULT_MONO_MODEL), reader, "lidar_holdout",
                       progress=False)
    # An image-only model: no IP-Basic row, but the ground-plane bands.
    assert set(mono) == {"model", "model@ground", "model@off_ground"}
    assert "input_dev_m" not in mono["model"]


def test_a_drive_without_lidar_is_one_error_line(tmp_path, capsys):
    write_synthetic_drive(tmp_path, num_frames=1, seed=3003, drive=2, progress=False,
                          stereo=False, lidar=False, width=207, height=63)
    assert ev.main(["--model", "classical", "--dataset", "lidar_holdout", "--data",
                    str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no proj_depth/velodyne_raw scan" in err[0]
    assert ev.main(["--model", "classical", "--dataset", "lidar_holdout", "--data",
                    str(tmp_path / "nothing"), "--no-progress"]) == 1
    assert "no KITTI drives" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "numbers"), [("5-6", [5, 6]), ("0,2,4-5", [0, 2, 4, 5]),
                                             ("6", [6]), (" 3 , 1-2", [1, 2, 3]),
                                             ("4-5,5", [4, 5])])
def test_frame_list_parses_numbers_and_inclusive_ranges(text, numbers):
    assert ev.frame_list(text) == numbers


@pytest.mark.parametrize("text", ["", "a", "5-", "-1", "6-5", "1,,2", "1-2-3", "0,6-5"])
def test_a_bad_frame_list_is_one_argparse_error(text, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ev.main(["--model", "classical", "--dataset", "lidar_holdout", "--data",
                 str(tmp_path), "--frames", text])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --frames: not a frame list" in err[-1] and repr(text) in err[-1]


def test_frames_scores_only_those_frames_of_both_cameras(engine_root, capsys):
    kept = ev.KittiDevFrames(engine_root, "lidar_holdout", frame_numbers=ev.frame_list("1"))
    assert len(kept) == 2  # frame 1 of camera 2 and of camera 3
    assert [kept.frames.index[i][0].frames[kept.frames.index[i][1]] for i in range(2)] \
        == ["0000000001", "0000000001"]
    with pytest.raises(ev.EvaluationError, match=r"no frame \[5\]"):
        ev.KittiDevFrames(engine_root, "lidar_holdout", frame_numbers=[1, 5])
    assert ev.main(["--model", "classical", "--dataset", "engine", "--data", str(engine_root),
                    "--frames", "1", "--no-progress"]) == 1
    assert "--frames selects kitti_dev frames" in capsys.readouterr().err


@needs_kitti_dev
def test_kitti_dev_figures_for_ip_basic_and_the_bundled_fusion_model(tmp_path, capsys):
    """kitti_dev's README: held-out RMSE/MAE 3887/1042 mm (IP-Basic) and 3629/1546 mm (the
    fusion model bundled then); issue 14: the bundled fusion model below both in RMSE and MAE,
    keeping its input (median |output − input| ≤ 0.03 m). Bundled fusion_spn_synthetic
    (stage 7, with the mono prior): 3367/849 mm, 0.0001 m; at the held-out returns the scan
    saw past a near object's edge (9 % of them) it is scored against the background the
    camera does not see, elsewhere it is far below IP-Basic (1383/326 against 1700/360 mm)."""
    out = tmp_path / "fusion.json"
    assert ev.main(["--model", str(DEFAULT_FUSION_MODEL), "--dataset", "lidar_holdout",
                    "--data", str(KITTI_DEV), "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ip_basic" in printed and "median |output - input|" in printed
    results = json.loads(out.read_text())["results"]
    assert results["model"]["frames"] == 14
    assert results["ip_basic"]["devkit_rmse"] == pytest.approx(3887, rel=0.01)
    assert results["ip_basic"]["devkit_mae"] == pytest.approx(1042, rel=0.01)
    assert results["model"]["devkit_rmse"] == pytest.approx(3367, rel=0.01)
    assert results["model"]["devkit_mae"] == pytest.approx(849, rel=0.01)
    visible, ip_visible = results["model@visible"], results["ip_basic@visible"]
    assert visible["devkit_rmse"] == pytest.approx(1383, rel=0.01)
    assert visible["devkit_mae"] == pytest.approx(326, rel=0.01)
    assert ip_visible["devkit_rmse"] == pytest.approx(1700, rel=0.01)
    assert ip_visible["devkit_mae"] == pytest.approx(360, rel=0.01)
    # Where the scan saw past an edge, the reference is the background and both are far off.
    assert results["model@see_through"]["devkit_mae"] > 10 * visible["devkit_mae"]
    assert results["model"]["devkit_rmse"] < min(3629, results["ip_basic"]["devkit_rmse"])
    assert results["model"]["devkit_mae"] < min(1546, results["ip_basic"]["devkit_mae"])
    assert results["model"]["input_dev_m"] <= 0.03
    assert results["ip_basic"]["input_dev_m"] < 0.03
    # Its confidence separates good from bad pixels on real scans too.
    assert results["confidence"]["ratio"] < 0.5


@needs_kitti_dev
def test_kitti_dev_reference_figures_for_mono():
    """kitti_dev's README: bundled mono_cnn_synthetic, AbsRel 0.233 and δ<1.25 0.708 against
    the raw LiDAR (Garg crop, 1e-3–80 m); 6906/3904 mm at the held-out pixels."""
    estimator = DepthEstimator(DEFAULT_MONO_MODEL)
    split = ev.evaluate(estimator, ev.KittiDevFrames(KITTI_DEV, "kitti_dev_mono"),
                        "kitti_dev_mono", progress=False)
    mono = split["model"]
    assert mono["frames"] == 14
    assert mono["abs_rel"] == pytest.approx(0.233, abs=0.002)
    assert mono["a1"] == pytest.approx(0.708, abs=0.002)
    # Right on the road, wrong on what stands on it (model card: the split of the 0.233).
    assert split["model@ground"]["frames"] == 14
    assert split["model@ground"]["abs_rel"] == pytest.approx(0.077, abs=0.003)
    assert split["model@off_ground"]["abs_rel"] == pytest.approx(0.412, abs=0.005)
    held = ev.evaluate(estimator, ev.KittiDevFrames(KITTI_DEV, "lidar_holdout"),
                       "lidar_holdout", progress=False)["model"]
    assert held["devkit_rmse"] == pytest.approx(6906, rel=0.01)
    assert held["devkit_mae"] == pytest.approx(3904, rel=0.01)


def _realism():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import lidar_realism
    finally:
        sys.path.remove(str(REPO / "bench"))
    return lidar_realism


def test_realism_statistics_of_a_hand_made_scan():
    """bench/lidar_realism.py's figures on a scan with a known pattern: beams every 4 rows
    from row 100, a return every 2nd column, a wall at 10 m with 30 m returns seen through
    its left edge."""
    scan = np.zeros((200, 160), np.float32)
    scan[100::4, ::2] = 10.0
    scan[100::4, 80:160:2] = 30.0  # background right of the wall
    scan[100::4, 82] = 30.0  # already background: no change
    scan[104, 76] = 30.0  # one background return seen through the wall, beside 10 m ones
    stats = _realism().scan_statistics(scan)
    assert stats["returns"] == 25 * 80
    assert stats["rows_per_band"] == 25 and stats["row_gap_med"] == 4
    assert stats["top_row"] == 100 and stats["per_hit_row"] == 80
    # Background returns within 3 px of a 10 m return: the one through the wall and the
    # first background column of each beam (x = 80, 82: 82 - 78 > 3, so only 80) are
    # farther than 1.1 × the nearest in their 7×7 window.
    assert stats["bg_fg_pct"] == pytest.approx(100 * (1 + 25) / (25 * 80))
