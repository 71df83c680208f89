"""make_angiogram_pairs.py: a photo-like source with the angiogram's anatomy, the folder layout, bad folders."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

from ffa_pipeline.anatomy import RETINA_MARGIN, retinal_field
from ffa_pipeline.data import load_dataset_fresh
from ffa_pipeline.image_processing import FFAImageProcessor
from ffa_pipeline.phantom import render_sample, sample_eye
from ffa_pipeline.phantom.dataset import write_phantom_dataset
from ffa_pipeline.registration import warp_to

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import make_angiogram_pairs  # noqa: E402

SIDE = 128


def angiogram(shift: int = 0) -> np.ndarray:
    """A round field, a bright horizontal vessel at row 40 + shift and a dark fovea at the centre (uint8)."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = np.full((SIDE, SIDE), 0.35)
    image[38 + shift: 41 + shift, 10:118] = 0.9
    image -= 0.25 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 12.0**2)
    image[(yy - 63.5) ** 2 + (xx - 63.5) ** 2 > 62**2] = 0.0
    return (image * 255).round().astype(np.uint8)


def test_photo_has_the_angiograms_anatomy_with_a_photos_polarity():
    photo, vessels = make_angiogram_pairs.photo_from_angiogram(angiogram())
    red, green, blue = photo[..., 0], photo[..., 1], photo[..., 2]
    yy, xx = np.mgrid[:SIDE, :SIDE]
    inside = (yy - 63.5) ** 2 + (xx - 63.5) ** 2 < 50**2
    assert (red[inside] > green[inside]).all() and (green[inside] > blue[inside]).all()  # orange fundus
    assert green[39, 30:98].mean() < 0.8 * green[50, 30:98].mean()  # the bright vessel is dark in the photo
    assert green[62:67, 62:67].mean() < 0.9 * green[inside].mean()  # the dark fovea stays dark
    assert photo[:3, :3].max() == 0.0  # outside the field: black
    assert vessels[39, 30:98].all() and not vessels[50, 30:98].any() and not vessels[:3, :3].any()


def write_layout(root: Path) -> Path:
    """Two diagnosis folders, a phase folder, the skipped non_ffa folder and one duplicate image."""
    folders = {"disease_diagnosis/train/normal": [0, 4], "disease_diagnosis/train/brvo": [8, 0],
               "phase_identification/train/venous_phase": [12], "phase_identification/train/non_ffa": [16]}
    for folder, shifts in folders.items():
        (root / folder).mkdir(parents=True)
        for i, shift in enumerate(shifts):
            PIL.Image.fromarray(angiogram(shift)).save(root / folder / f"{i}.jpg", quality=95)
    return root


def test_pairs_are_written_in_the_phantoms_wide_layout(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "pairs"), "--resolution", "64",
                               "--phases", "arterial", "early", "late", "--diagnosis_phase", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    assert len(rows) == 4  # 5 angiograms, one of them twice; non_ffa skipped
    assert sorted(rows["disease"]) == ["normal", "unknown", "vein_occlusion", "vein_occlusion"]  # brvo read first
    assert set(rows["modality"]) == {"cfp"}
    venous = rows[rows["disease"].index("unknown")]
    assert venous["ffa_early_seconds"] == 30.0 and venous["ffa_late"] is None and venous["ffa_late_seconds"] is None
    assert venous["source_image"].size == (64, 64) and venous["ffa_early"].mode == "L"
    assert np.asarray(venous["vessel_mask"]).max() == 255
    assert "make_angiogram_pairs.py" in (tmp_path / "pairs" / "README.md").read_text()


def test_an_unknown_folder_is_named_with_the_known_ones(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    (root / "disease_diagnosis/train/amd").mkdir()
    with pytest.raises(ValueError, match=r"'amd'.*known: \['brvo'"):
        make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "pairs")])
    assert not (tmp_path / "pairs").exists()


def test_phases_must_hold_every_angiograms_phase(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"),
                                   "--phases", "early", "late"])
    assert "lacks ['arterial', 'mid']" in capsys.readouterr().err


def write_uwf_triplets(root: Path, with_slo: bool = True) -> Path:
    """Two eyes of the uwf_triplets layout: a 160x128 SLO and early/late angiograms with a bright vessel."""
    (root / "train").mkdir(parents=True)
    for i, eye in enumerate(("1", "2")):
        if with_slo:
            slo = np.zeros((128, 160, 3), np.uint8)
            slo[..., 0], slo[..., 1] = 110, 120  # Optos pseudo-colour: red and green, no blue; fills the frame
            PIL.Image.fromarray(slo).save(root / "train" / f"{eye}_slo.png")
        for j, phase in enumerate(("early", "late")):
            ffa = np.full((128, 160), 90 + 10 * i + 5 * j, np.uint8)  # four different images (no duplicates)
            ffa[60:62, 10:150] = 230  # 2 px: 3 px at 256 px, a large UWF vessel
            PIL.Image.fromarray(ffa).save(root / "train" / f"{eye}_ffa_{phase}.png")
    return root


def test_uwf_angiograms_are_framed_like_their_slo_and_drawn_in_its_pseudo_colour(tmp_path):
    root = write_uwf_triplets(tmp_path / "uwf")
    make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--output_dir",
                               str(tmp_path / "pairs"), "--phases", "early", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    assert len(rows) == 4 and set(rows["modality"]) == {"uwf_slo"} and set(rows["disease"]) == {"unknown"}
    assert sorted(rows["eye_id"]) == ["uwf_slo_ffa/1"] * 2 + ["uwf_slo_ffa/2"] * 2
    row = rows[0]
    assert row["ffa_early_seconds"] == 30.0 and row["ffa_late"] is None
    angiogram, photo = np.asarray(row["ffa_early"]), np.asarray(row["source_image"]).astype(float)
    # the pipeline frames a full-frame 160x128 SLO as a 160 px square, padded with 16 px of black above and below;
    # at 256 px the vessel (rows 60-61 of 128) lies at rows (60 + 16) x 1.6 = 122 to 124
    assert angiogram.shape == (256, 256) and angiogram[:20].max() == 0 and angiogram[30:226].min() > 0
    assert angiogram[123, 40:216].mean() > angiogram[90, 40:216].mean()
    inside, vessel = photo[90, 40:216], photo[123, 40:216]
    assert (inside[:, 2] < 0.1 * inside[:, 1]).all() and np.allclose(inside[:, 0], inside[:, 1], rtol=0.05)
    assert vessel[:, 1].mean() < 0.9 * inside[:, 1].mean()  # the vessel is dark in the SLO-like source
    assert "mit" in (tmp_path / "pairs" / "README.md").read_text()


def test_a_uwf_angiogram_without_its_slo_is_an_error_naming_it(tmp_path):
    root = write_uwf_triplets(tmp_path / "uwf", with_slo=False)
    with pytest.raises(ValueError, match="no SLO 1_slo.png"):
        make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--output_dir",
                                   str(tmp_path / "pairs")])
    assert not (tmp_path / "pairs").exists()


def test_real_slo_source_pairs_each_angiogram_with_its_eyes_real_slo(tmp_path):
    root = write_uwf_triplets(tmp_path / "uwf")
    make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--real_slo_source",
                               "--output_dir", str(tmp_path / "pairs"), "--phases", "early", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    photo = np.asarray(rows[0]["source_image"]).astype(int)
    assert tuple(photo[90, 100]) == (110, 120, 0) and photo[:20].max() == 0  # the SLO's pixels, framed
    assert np.asarray(rows[0]["vessel_mask"])[123, 40:216].mean() > 0  # still the angiogram's vessels
    mask = np.asarray(rows[0]["loss_mask"])
    assert mask[30:226].max() == 0 and mask[:15].min() == 255  # only the black around the image: no retina there


def test_the_loss_mask_of_a_real_slo_pair_is_what_lies_outside_the_angiograms_retina():
    yy, xx = np.mgrid[:SIDE, :SIDE]
    angiogram = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 40**2, 120, 12).astype(np.uint8)  # a dim lid around
    angiogram[64, 30:100] = 250  # a vessel
    mask = make_angiogram_pairs.loss_mask(angiogram) == 255
    reach = 40 + RETINA_MARGIN * SIDE
    outside = (yy - 64) ** 2 + (xx - 64) ** 2 > (reach + 3) ** 2  # the smoothing widens the field a little
    inside = (yy - 64) ** 2 + (xx - 64) ** 2 < (reach - 1.5) ** 2
    assert mask[outside].all() and not mask[inside].any()
    assert (retinal_field(angiogram / 255.0) == retinal_field(angiogram)).all()  # float or uint8 alike


def test_register_warps_a_registered_angiogram_onto_its_slo_and_counts_its_whole_frame(tmp_path):
    eye = render_sample(sample_eye(0, "diabetic_retinopathy"), 384, modalities=("cfp",), phases=("early",))["cfp"]
    other = render_sample(sample_eye(5, "normal"), 384, modalities=("cfp",), phases=("early",))["cfp"]
    shift = np.array([[1.0, 0, 10], [0, 1, -7], [0, 0, 1]])
    (tmp_path / "uwf" / "train").mkdir(parents=True)
    PIL.Image.fromarray(eye["source_image"]).save(tmp_path / "uwf" / "train" / "1_slo.png")
    PIL.Image.fromarray(warp_to(eye["ffa_early"], shift, eye["ffa_early"].shape)).save(
        tmp_path / "uwf" / "train" / "1_ffa_early.png")
    PIL.Image.fromarray(np.fliplr(other["ffa_early"])).save(tmp_path / "uwf" / "train" / "1_ffa_late.png")
    make_angiogram_pairs.main(["--input", str(tmp_path / "uwf"), "--layout", "uwf_triplets", "--real_slo_source",
                               "--register", "--resolution", "128", "--output_dir", str(tmp_path / "pairs"),
                               "--phases", "early", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    early, late = (next(row for row in rows if row[f"ffa_{phase}"] is not None) for phase in ("early", "late"))
    processor = FFAImageProcessor(resolution=128)
    framing = processor.frame(processor.to_float_rgb(eye["source_image"]))
    aligned = processor.apply_framing(eye["ffa_early"][..., None] / 255.0, framing, 128)[..., 0] * 255
    retina = cv2.erode((aligned > 20).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert np.abs(np.asarray(early["ffa_early"], float) - aligned)[retina].mean() < 6  # warped onto the SLO
    assert np.asarray(early["loss_mask"])[retina].min() == 255  # the whole frame counts
    assert np.asarray(late["loss_mask"])[retina].max() == 0  # not registered: outside the retina only


def test_local_registration_warps_locally_and_counts_the_outside_plus_its_supported_region(tmp_path, capsys):
    eye = render_sample(sample_eye(0, "diabetic_retinopathy"), 384, modalities=("cfp",), phases=("early",))["cfp"]
    ffa = eye["ffa_early"].copy()
    ffa[:, 270:] = cv2.GaussianBlur(ffa, (0, 0), 12)[:, 270:]  # lit but vessel-free: nothing to match there
    shift = np.array([[1.0, 0, 10], [0, 1, -7], [0, 0, 1]])
    (tmp_path / "uwf" / "train").mkdir(parents=True)
    PIL.Image.fromarray(eye["source_image"]).save(tmp_path / "uwf" / "train" / "1_slo.png")
    PIL.Image.fromarray(warp_to(ffa, shift, ffa.shape)).save(tmp_path / "uwf" / "train" / "1_ffa_early.png")
    make_angiogram_pairs.main(["--input", str(tmp_path / "uwf"), "--layout", "uwf_triplets", "--real_slo_source",
                               "--register", "--local_registration", "--resolution", "128",
                               "--output_dir", str(tmp_path / "pairs"), "--phases", "early", "late"])
    assert "local ok, held-out inliers" in capsys.readouterr().out
    row = load_dataset_fresh(str(tmp_path / "pairs"))["train"][0]
    processor = FFAImageProcessor(resolution=128)
    framing = processor.frame(processor.to_float_rgb(eye["source_image"]))
    aligned = processor.apply_framing(ffa[..., None] / 255.0, framing, 128)[..., 0] * 255
    retina = cv2.erode((aligned > 20).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    stored = np.asarray(row["ffa_early"])
    assert np.abs(stored.astype(float) - aligned)[retina].mean() < 6  # warped onto the SLO
    mask = np.asarray(row["loss_mask"]) == 255
    assert mask[make_angiogram_pairs.loss_mask(stored) == 255].all()  # the outside of the retina, as without
    assert mask[retina].mean() > 0.5  # and the supported retina
    band = retina.copy()
    band[:, :102] = False  # the vessel-free band (from column (270 + 10) / 3 = 93 on) less a tile's reach
    assert mask[band].mean() < 0.05  # not supported there: not the whole frame, as a global registration would


def test_register_needs_a_real_slo_source(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--layout", "uwf_triplets", "--output_dir",
                                   str(tmp_path / "pairs"), "--register"])
    assert "--register needs --real_slo_source" in capsys.readouterr().err


def test_local_registration_needs_register(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--layout", "uwf_triplets", "--real_slo_source",
                                   "--output_dir", str(tmp_path / "pairs"), "--local_registration"])
    assert "--local_registration needs --register" in capsys.readouterr().err


def test_real_slo_source_needs_the_uwf_layout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"),
                                   "--real_slo_source"])
    assert "--real_slo_source needs --layout uwf_triplets, got --layout ffa_real" in capsys.readouterr().err


def test_a_dark_fovea_in_the_angiogram_gets_a_photos_foveal_pit_and_none_elsewhere():
    with_fovea = angiogram().astype(np.float32) / 255
    field = with_fovea > 0.03
    pit = make_angiogram_pairs.foveal_pit(with_fovea, field)
    assert pit[64, 64] < 0.7 and pit.argmin() == np.ravel_multi_index((64, 64), pit.shape)
    assert pit[64, 64 + 20] > 0.95  # small: a photo's fovea, not the macula
    uniform = np.where(field, 0.35, 0.0).astype(np.float32)
    assert make_angiogram_pairs.foveal_pit(uniform, field).min() == 1.0


def test_no_foveal_pit_renders_the_sources_without_it(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    darkness = {}
    for name, flags in {"pit": [], "no pit": ["--no_foveal_pit"]}.items():
        make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / name),
                                   "--resolution", str(SIDE), *flags])
        green = np.asarray(load_dataset_fresh(str(tmp_path / name))["train"][0]["source_image"])[..., 1] / 255
        darkness[name] = green[62:67, 62:67].mean() / green[40:90, 40:90].mean()
    assert darkness["pit"] < darkness["no pit"] - 0.1


def test_the_pit_goes_where_the_landmark_angiogram_has_its_fovea_at_the_layouts_scale():
    late_without_fovea = np.where(angiogram() > 0, 90, 0).astype(np.uint8)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    small_fovea = (late_without_fovea * (1 - 0.8 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 9))).astype(np.uint8)
    for layout, early, wide in (("ffa_real", angiogram(), True), ("uwf_triplets", small_fovea, False)):
        photo, _ = make_angiogram_pairs.photo_from_angiogram(late_without_fovea, make_angiogram_pairs.LAYOUTS[layout],
                                                             landmark_angiogram=early)
        green = photo[..., 1]
        assert green[64, 64] < 0.7 * green[64, 100]  # the early frame's fovea
        assert (green[64, 64 + 4] < 0.9 * green[64, 100]) == wide  # an SLO's pit is smaller than a photo's


@pytest.mark.parametrize("style", make_angiogram_pairs.LID_STYLES)
def test_lid_draws_render_each_angiogram_between_its_own_eyelids(tmp_path, style):
    root = write_uwf_triplets(tmp_path / "uwf")
    make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--lid_draws", "3",
                               "--lid_style", style, "--output_dir", str(tmp_path / "pairs"),
                               "--phases", "early", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    assert len(rows) == 12 and rows["eye_id"][:3] == ["uwf_slo_ffa/1"] * 3
    sources = [np.asarray(row["source_image"]).astype(float) / 255 for row in rows.select(range(3))]
    for source, row in zip(sources, rows.select(range(3))):
        angiogram, mask = np.asarray(row["ffa_early"]), np.asarray(row["vessel_mask"])
        red, green = source[..., 0], source[..., 1]
        lid = (green > 1.3 * red) & (green > 0.1)  # the green lid (red : green at most 0.8), not the black
        assert lid[:, :40].mean() > 0.1 and lid[100:156, 100:156].sum() == 0  # at the edges, not at the centre
        assert angiogram[lid].mean() < 0.05 * angiogram[100:156, 100:156].mean()  # black in the angiogram
        assert mask[lid].mean() < 0.01  # and no vessel under the lid
        if style == "slo":  # lids, not black, where the angiogram has no field: a real SLO has no black
            assert (source.max(axis=2) > 0.01).all() and (angiogram[:20] == 0).all()  # the padded band
    assert not np.array_equal(sources[0], sources[1])  # each draw its own lids


def test_an_unknown_lid_style_names_the_allowed_ones():
    photo, vessels = make_angiogram_pairs.photo_from_angiogram(angiogram())
    with pytest.raises(ValueError, match=r"unknown lid style 'cartoon'; allowed: \['slo', 'phantom'\]"):
        make_angiogram_pairs.with_lids(photo, angiogram(), vessels, np.random.default_rng(0), "cartoon")


def test_lid_draws_need_a_rendered_uwf_source(tmp_path, capsys):
    for flags in (["--lid_draws", "2"], ["--layout", "uwf_triplets", "--real_slo_source", "--lid_draws", "2"]):
        with pytest.raises(SystemExit):
            make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"), *flags])
        error = capsys.readouterr().err
        assert "--lid_draws needs --layout uwf_triplets with a rendered source or --uwf_periphery" in error


def test_the_optic_disc_glows_where_the_landmark_angiogram_has_its_disc():
    late = np.where(angiogram() > 0, 90, 0).astype(np.uint8)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    early = np.clip(late + 150.0 * np.exp(-((yy - 40) ** 2 + (xx - 90) ** 2) / 4**2), 0, 255).astype(np.uint8)
    uwf = make_angiogram_pairs.LAYOUTS["uwf_triplets"]
    greens = {disc: make_angiogram_pairs.photo_from_angiogram(
        late, dataclasses.replace(uwf, optic_disc=disc), landmark_angiogram=early)[0][..., 1] for disc in (False, True)}
    assert greens[True][40, 90] > greens[False][40, 90] + 0.2  # a near-white spot at the early frame's disc
    assert np.hypot(*np.subtract(np.unravel_index(greens[True].argmax(), (SIDE, SIDE)), (40, 90))) <= 1.5
    assert abs(greens[True][90, 40] - greens[False][90, 40]) < 0.01  # and nothing far from it


def test_optic_disc_draws_a_brighter_disc_into_the_uwf_sources(tmp_path):
    root = write_uwf_triplets(tmp_path / "uwf")
    brightest = {}
    for name, flags in {"plain": [], "disc": ["--optic_disc"]}.items():
        make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--phases", "early", "late",
                                   "--output_dir", str(tmp_path / name), *flags])
        brightest[name] = np.asarray(load_dataset_fresh(str(tmp_path / name))["train"][0]["source_image"]).max()
    assert brightest["disc"] > brightest["plain"] + 40


def test_optic_disc_needs_a_rendered_uwf_source(tmp_path, capsys):
    for flags in (["--optic_disc"], ["--layout", "uwf_triplets", "--real_slo_source", "--optic_disc"]):
        with pytest.raises(SystemExit):
            make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"), *flags])
        assert "--optic_disc needs --layout uwf_triplets with a rendered source" in capsys.readouterr().err


def test_slo_look_draws_fainter_vessels_among_texture_and_leaves_the_angiogram_alone():
    layout = make_angiogram_pairs.LAYOUTS["uwf_triplets"]
    plain, plain_vessels = make_angiogram_pairs.photo_from_angiogram(angiogram(), layout)
    looks = [make_angiogram_pairs.photo_from_angiogram(angiogram(), layout, slo_look_rng=np.random.default_rng(seed))
             for seed in range(4)]
    fundus = (slice(50, 60), slice(30, 98))

    def fine_texture(photo: np.ndarray) -> float:
        green = photo[..., 1]
        return float((green - cv2.GaussianBlur(green, (0, 0), 2))[fundus].std())

    for photo, vessels in looks:
        assert photo[39, 30:98, 1].mean() > plain[39, 30:98, 1].mean()  # the vessel drawn fainter
        assert fine_texture(photo) > 2 * fine_texture(plain)  # the retina has texture
        assert not (vessels & ~plain_vessels).any()  # no vessel that the render did not have
    assert not np.array_equal(looks[0][0], looks[1][0])  # each generator its own draw


def test_slo_look_redraws_each_lid_draw_and_needs_a_rendered_uwf_source(tmp_path, capsys):
    root = write_uwf_triplets(tmp_path / "uwf")
    rows = {}
    for name, flags in {"plain": [], "look": ["--slo_look"]}.items():
        make_angiogram_pairs.main(["--input", str(root), "--layout", "uwf_triplets", "--lid_draws", "2", *flags,
                                   "--output_dir", str(tmp_path / name), "--phases", "early", "late"])
        rows[name] = load_dataset_fresh(str(tmp_path / name))["train"].select(range(2))
    sources = [np.asarray(row["source_image"]).astype(float) for row in rows["look"]]
    retina = slice(90, 110), slice(100, 156)  # between the lids in both draws
    assert not np.allclose(sources[0][retina], sources[1][retina], atol=2)  # each lid draw its own look
    for plain, look in zip(rows["plain"], rows["look"]):  # the same lids, the same angiogram under them
        assert np.array_equal(np.asarray(plain["ffa_early"]), np.asarray(look["ffa_early"]))
    for flags in (["--slo_look"], ["--layout", "uwf_triplets", "--real_slo_source", "--slo_look"]):
        with pytest.raises(SystemExit):
            make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "bad"), *flags])
        assert "--slo_look needs --layout uwf_triplets with a rendered source" in capsys.readouterr().err


def test_a_posterior_pole_set_into_a_uwf_frame_is_shrunk_to_uwf_scale_and_feathered():
    periphery = np.full((256, 256), 40, np.uint8)
    pole = angiogram()  # its bright vessel lies at 40 / 128 of the side, its fovea at the centre
    composite = make_angiogram_pairs.set_into_uwf(pole, periphery, np.random.default_rng(0))
    assert composite.shape == periphery.shape and composite.dtype == np.uint8
    changed = np.argwhere(composite != 40)
    extent = (changed.max(axis=0) - changed.min(axis=0)).max() / 256
    assert extent <= max(make_angiogram_pairs.UWF_POLE_SCALE)  # shrunk to a UWF frame's scale
    assert (composite[:40] == 40).all() and (composite[-40:] == 40).all()  # the periphery is kept
    assert composite.max() > 60  # the vessel, brighter than the matched background
    assert abs(np.median(composite[changed[:, 0], changed[:, 1]]) - 40) < 10  # brightness matched at the rim


def test_uwf_periphery_writes_uwf_slo_rows_of_real_anatomy_in_a_phantom_frame(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    phantom = write_phantom_dataset(tmp_path / "phantom", 2, resolution=64, modalities=["uwf_slo"],
                                    phases=["early", "mid"], num_proc=1, progress=False)
    make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "pairs"), "--resolution", "64",
                               "--uwf_periphery", str(phantom), "--lid_draws", "2"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    assert len(rows) == 8 and set(rows["modality"]) == {"uwf_slo"}  # 4 angiograms, each between 2 lid draws
    source = np.asarray(rows[0]["source_image"]).astype(float)
    assert source[..., 2].mean() < 0.2 * source[..., 1].mean()  # an SLO's pseudo-colour: no blue
    assert "phantom UWF angiogram" in (tmp_path / "pairs" / "README.md").read_text()


def test_uwf_periphery_needs_the_ffa_real_layout_and_a_phantom_with_uwf_rows(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"),
                                   "--layout", "uwf_triplets", "--uwf_periphery", str(tmp_path)])
    assert "--uwf_periphery needs --layout ffa_real, got --layout uwf_triplets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"),
                                   "--uwf_periphery", str(tmp_path / "missing")])
    assert "no such folder" in capsys.readouterr().err
    phantom = write_phantom_dataset(tmp_path / "cfp", 1, resolution=64, modalities=["cfp"], phases=["early", "mid"],
                                    num_proc=1, progress=False)
    with pytest.raises(ValueError, match="no uwf_slo rows; modalities: \\['cfp'\\]"):
        make_angiogram_pairs.load_uwf_periphery(phantom, 64, {"early"})
    with pytest.raises(ValueError, match="no column for phase\\(s\\) \\['late'\\]"):
        make_angiogram_pairs.load_uwf_periphery(phantom, 64, {"late"})
