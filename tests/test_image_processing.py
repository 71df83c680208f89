import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import retina
from skimage.feature import hessian_matrix
from skimage.filters import sato

from ffa_pipeline.image_processing import (
    FFAImageProcessor,
    Framing,
    _dark_and_bright_ridges,
    _scaled,
    gaussian_hessian,
    to_input_representation,
)

RESOLUTION = 128


def disc_image(height: int, width: int, center: tuple[float, float], radius: float, value: float = 0.7) -> np.ndarray:
    """HxWx3 float image: a flat reddish disc (a stand-in fundus photo) on black."""
    y, x = np.mgrid[:height, :width] + 0.5
    inside = (x - center[0]) ** 2 + (y - center[1]) ** 2 < radius**2
    return inside[..., None] * np.array([value, value * 0.6, value * 0.3], dtype=np.float32)


def bright_extent(image: np.ndarray) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) pixel edges of the region brighter than half the disc's red level."""
    ys, xs = np.nonzero(image[..., 0] > 0.35)
    return xs.min(), xs.max() + 1, ys.min(), ys.max() + 1


@pytest.fixture(scope="module")
def processor() -> FFAImageProcessor:
    return FFAImageProcessor(resolution=RESOLUTION)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """64x48 uint8 RGB with distinct channels, so channel mix-ups and transposes show."""
    y, x = np.mgrid[:48, :64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def accepted_inputs(rgb: np.ndarray, tmp_path) -> dict[str, tuple[object, np.ndarray]]:
    """Every accepted input kind built from one uint8 RGB image -> (input, expected HxWx3 float)."""
    colour = rgb.astype(np.float32) / 255
    grey8 = rgb[..., 0]
    grey16 = grey8.astype(np.uint16) * 257
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    alpha[:, :10] = 0
    rgba = np.dstack([rgb, alpha])
    composited = colour * (alpha[..., None] / 255)
    grey = np.repeat(grey8[..., None].astype(np.float32) / 255, 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    return {
        "pil_rgb": (Image.fromarray(rgb), colour),
        "pil_rgba": (Image.fromarray(rgba), composited),
        "pil_l": (Image.fromarray(grey8), grey),
        "pil_i16": (Image.fromarray(grey16), grey),
        "pil_i32": (Image.fromarray(grey16.astype(np.int32)), grey),
        "pil_f": (Image.fromarray(grey8.astype(np.float32) / 255), grey),
        "pil_p": (Image.fromarray(rgb).convert("P"), None),
        "pil_cmyk": (Image.fromarray(rgb).convert("CMYK"), colour),
        "numpy_uint8": (rgb, colour),
        "numpy_uint16": (rgb.astype(np.uint16) * 257, colour),
        "numpy_float": (colour, colour),
        "numpy_float64": (colour.astype(np.float64), colour),
        "numpy_hw": (grey8, grey),
        "numpy_hw1": (grey8[..., None], grey),
        "numpy_rgba": (rgba, composited),
        "numpy_bool": (grey8 > 100, np.repeat((grey8 > 100)[..., None], 3, axis=2).astype(np.float32)),
        "torch_chw": (torch.from_numpy(colour).permute(2, 0, 1), colour),
        "torch_uint8": (torch.from_numpy(rgb).permute(2, 0, 1), colour),
        "torch_hw": (torch.from_numpy(grey8.astype(np.float32) / 255), grey),
        "torch_bfloat16": (torch.from_numpy(colour).permute(2, 0, 1).bfloat16(), colour),
        "path_str": (str(tmp_path / "photo.png"), colour),
        "path_pathlike": (tmp_path / "photo.png", colour),
    }


def test_every_accepted_input_kind(processor, reference, tmp_path):
    for name, (image, expected) in accepted_inputs(reference, tmp_path).items():
        rgb = processor.to_float_rgb(image)
        assert rgb.shape == (*reference.shape[:2], 3) and rgb.dtype == np.float32, name
        assert 0 <= rgb.min() and rgb.max() <= 1, name
        if expected is not None:
            np.testing.assert_allclose(rgb, expected, atol=1 / 64 if name == "torch_bfloat16" else 1e-3, err_msg=name)
        pixels, framings = processor.preprocess([image])
        assert pixels.shape == (1, 3, RESOLUTION, RESOLUTION) and pixels.dtype == torch.float32, name
        assert -1 <= pixels.min() and pixels.max() <= 1, name
        assert framings[0].input_height == 48 and framings[0].input_width == 64, name


def test_batches_and_single_images(processor, reference):
    batch = torch.from_numpy(reference).permute(2, 0, 1).float().div(255).expand(2, 3, 48, 64)
    assert processor.preprocess(batch)[0].shape == (2, 3, RESOLUTION, RESOLUTION)
    assert processor.preprocess(np.stack([reference] * 3))[0].shape == (3, 3, RESOLUTION, RESOLUTION)
    assert processor.preprocess(reference)[0].shape == (1, 3, RESOLUTION, RESOLUTION)
    pixels, framings = processor.preprocess([reference, reference[:40]], resolution=64)
    assert pixels.shape == (2, 3, 64, 64) and [f.input_height for f in framings] == [48, 40]


@pytest.mark.parametrize(
    "make_bad, error, words",
    [
        (lambda: np.zeros((20, 40, 3), np.uint8), ValueError, ["40 x 20", "min_size=32"]),
        (lambda: Image.new("RGB", (100, 31)), ValueError, ["100 x 31", "min_size=32"]),
        (lambda: np.zeros((200, 300), np.uint8), ValueError, ["200 = 60,000", "max_pixels=50,000"]),
        (lambda: torch.full((3, 64, 64), float("nan")), ValueError, ["12288 NaN"]),
        (lambda: np.full((64, 64), np.inf, np.float32), ValueError, ["4096 infinite"]),
        (lambda: np.linspace(-1, 1, 64 * 64).reshape(64, 64), ValueError, ["min -1", "max 1", "[0, 1]"]),
        (lambda: torch.rand(3, 64, 64) * 255, ValueError, ["max 25", "[0, 1]"]),
        (lambda: np.zeros((64, 64), np.int64), TypeError, ["int64", "uint8, uint16"]),
        (lambda: torch.zeros(3, 64, 64, dtype=torch.int32), TypeError, ["int32", "uint8, uint16"]),
        (lambda: np.zeros((3, 64, 64), np.uint8), ValueError, ["(3, 64, 64)", "channels last"]),
        (lambda: torch.zeros(64, 64, 3), ValueError, ["(64, 64, 3)", "channels first"]),
        (lambda: Image.fromarray(np.full((64, 64), -5, np.int32)), ValueError, ["min -5", "0..65535"]),
        (lambda: 42, TypeError, ["int", "PIL.Image.Image, numpy.ndarray, torch.Tensor"]),
        (lambda: b"\x89PNG", TypeError, ["bytes", "PIL.Image.Image"]),
        (lambda: [[np.zeros((64, 64), np.uint8)]], TypeError, ["list", "PIL.Image.Image"]),
        (list, TypeError, ["empty list", "at least one image"]),
    ],
)
def test_bad_inputs_name_the_bad_value(make_bad, error, words):
    processor = FFAImageProcessor(resolution=64, max_pixels=50_000)
    with pytest.raises(error) as raised:
        processor.preprocess(make_bad())
    for word in words:
        assert word in str(raised.value)


def test_oversized_file_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(path)
    with pytest.raises(ValueError, match=r"400 x 300 = 120,000 pixels.*max_pixels=50,000"):
        FFAImageProcessor(max_pixels=50_000).preprocess(str(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # PIL's own bomb check fires inside Image.open
    with pytest.raises(ValueError, match=r"big\.png.*decompression bomb"):
        FFAImageProcessor().preprocess(path)


def test_bad_settings_and_postprocess_arguments(processor):
    with pytest.raises(ValueError, match="resolution must be a positive int, got 0"):
        FFAImageProcessor(resolution=0)
    with pytest.raises(ValueError, match="resolution must be a positive int, got 12.5"):
        processor.preprocess(np.zeros((64, 64), np.uint8), resolution=12.5)
    output = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="output_type must be one of .* got 'jpg'"):
        processor.postprocess(output, output_type="jpg")
    with pytest.raises(ValueError, match='output_size="input" needs the 1 framings from preprocess, got None'):
        processor.postprocess(output, output_size="input")
    with pytest.raises(ValueError, match=r"output_size must be .* got 'big'"):
        processor.postprocess(output, output_size="big")
    with pytest.raises(ValueError, match=r"C = 1 or 3, got \(1, 2, 16, 16\)"):
        processor.postprocess(torch.zeros(1, 2, 16, 16))
    with pytest.raises(TypeError, match="got ndarray"):
        processor.postprocess(np.zeros((1, 1, 16, 16)))


@pytest.mark.parametrize(
    "height, width, center, radius",
    [
        (200, 300, (180.0, 90.0), 70.0),  # landscape, disc off-centre
        (300, 200, (90.0, 170.0), 60.0),  # portrait
        (257, 257, (140.5, 120.0), 100.0),  # square, odd size
        (150, 400, (210.0, 75.0), 100.0),  # disc clipped at the top and bottom, as fundus photos often are
        (120, 90, (20.0, 60.0), 50.0),  # disc clipped on the left: the square reaches past the border
    ],
)
def test_field_of_view_and_round_trip_geometry(processor, height, width, center, radius):
    image = disc_image(height, width, center, radius)
    mask, found_center, found_radius = processor.find_field_of_view(image)
    assert np.allclose(found_center, center, atol=2) and abs(found_radius - radius) <= 2
    assert mask.shape == (height, width) and abs(mask.mean() - (image[..., 0] > 0).mean()) < 0.02

    pixels, framings = processor.preprocess(image)
    x0, y0, side = framings[0].box
    assert abs(x0 + side / 2 - center[0]) <= 1 and abs(y0 + side / 2 - center[1]) <= 1 and abs(side - 2 * radius) <= 2
    square = (pixels[0, 0].numpy() + 1) / 2
    assert square[RESOLUTION // 2, RESOLUTION // 2] > 0.6 and square[0, 0] < 0.05  # disc centred, corners black

    restored = processor.postprocess(pixels, output_type="np", framings=framings, output_size="input")
    assert restored.shape == (1, height, width, 3)
    assert np.allclose(bright_extent(restored[0]), bright_extent(image), atol=2)
    assert np.abs(restored[0] - image).mean() < 0.02


def test_round_trip_without_cropping_pads_the_short_side():
    processor = FFAImageProcessor(resolution=RESOLUTION, crop_to_field_of_view=False)
    image = disc_image(200, 300, (180.0, 90.0), 70.0)
    pixels, framings = processor.preprocess(image)
    assert framings[0].box == (0, -50, 300)
    restored = processor.postprocess(pixels, output_type="np", framings=framings, output_size="input")
    assert np.allclose(bright_extent(restored[0]), bright_extent(image), atol=2)


def test_full_frame_and_blank_images_use_the_whole_image(processor):
    rng = np.random.default_rng(0)
    oct_like = rng.uniform(0.2, 0.9, size=(180, 240, 3)).astype(np.float32)
    for image in (oct_like, np.zeros((180, 240, 3), np.float32)):
        mask, center, radius = processor.find_field_of_view(image)
        assert mask.all() and center == (120, 90) and radius == 120
        assert processor.preprocess(image)[1][0].box == (0, -30, 240)


def test_noisy_background_and_label_do_not_move_the_disc(processor):
    rng = np.random.default_rng(0)
    image = disc_image(300, 400, (220.0, 150.0), 120.0)
    image += rng.normal(0, 0.015, image.shape).astype(np.float32).clip(0)
    image[10:30, 10:80] = 1.0  # a burnt-in patient label in the black surround
    _, center, radius = processor.find_field_of_view(np.clip(image, 0, 1))
    assert np.allclose(center, (220, 150), atol=2) and abs(radius - 120) <= 2


def test_real_fundus_photo():
    photo = retina()  # 1411 x 1411 colour fundus photo; its disc spans x 8..1400, y 6..1400
    processor = FFAImageProcessor(resolution=RESOLUTION)
    mask, center, radius = processor.find_field_of_view(processor.to_float_rgb(photo))
    assert np.allclose(center, (704, 703), atol=8) and abs(radius - 696) <= 10
    assert 0.74 < mask.mean() < 0.80 and not mask[0, 0] and mask[705, 705]
    clipped = photo[300:1100]  # the same photo with top and bottom cut off
    _, clipped_center, clipped_radius = processor.find_field_of_view(processor.to_float_rgb(clipped))
    assert np.allclose(clipped_center, (center[0], center[1] - 300), atol=3) and abs(clipped_radius - radius) <= 3


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_postprocess_output_types_and_sizes(processor, channels, mode):
    output = torch.rand(2, channels, 32, 32) * 2 - 1
    pil = processor.postprocess(output)
    assert len(pil) == 2 and pil[0].mode == mode and pil[0].size == (32, 32)
    np.testing.assert_allclose(
        np.asarray(pil[1]).reshape(32, 32, channels) / 255, (output[1].permute(1, 2, 0) + 1) / 2, atol=1 / 255
    )
    as_np = processor.postprocess(output, output_type="np", output_size=(20, 48))
    assert as_np.shape == (2, 20, 48, channels) and as_np.dtype == np.float32 and 0 <= as_np.min() <= as_np.max() <= 1
    as_pt = processor.postprocess(output, output_type="pt")
    assert as_pt.shape == (2, channels, 32, 32) and torch.allclose(as_pt, (output + 1) / 2)

    framings = [
        Framing(input_height=60, input_width=80, box=(10, -10, 80), fov_center=(50.0, 30.0), fov_radius=40.0),
        Framing(input_height=40, input_width=40, box=(0, 0, 40), fov_center=(20.0, 20.0), fov_radius=20.0),
    ]
    per_image = processor.postprocess(output, output_type="pt", framings=framings, output_size="input")
    assert [tuple(t.shape) for t in per_image] == [(channels, 60, 80), (channels, 40, 40)]
    assert per_image[0][:, :, :10].abs().max() == 0  # left of the square is black
    pil_input = processor.postprocess(output, framings=framings, output_size="input")
    assert [image.size for image in pil_input] == [(80, 60), (40, 40)]


def test_config_round_trip(tmp_path):
    processor = FFAImageProcessor(resolution=512, max_pixels=1_000_000, crop_to_field_of_view=False)
    processor.save_config(tmp_path)
    loaded = FFAImageProcessor.from_config(FFAImageProcessor.load_config(tmp_path))
    assert loaded.config.resolution == 512 and loaded.config.max_pixels == 1_000_000
    assert not loaded.config.crop_to_field_of_view


def test_grey_ridges_input_is_the_same_for_dark_and_bright_vessel_renderings():
    """A dark vessel on a photo and a bright one on an OCT en-face land in the two ridge channels; rgb is identity."""
    square = disc_image(96, 96, (48, 48), 44)
    dark, bright = square.copy(), np.full((96, 96, 3), 0.2, np.float32)
    dark[:, 46:49] *= 0.4
    bright[:, 46:49] = 0.8
    assert np.array_equal(to_input_representation(dark, "rgb"), dark)
    for image, channel in ((dark, 1), (bright, 2)):
        represented = to_input_representation(image, "grey_ridges")
        assert represented.shape == (96, 96, 3) and represented.dtype == np.float32
        assert 0 <= represented.min() and represented.max() <= 1
        ridge = represented[..., channel]
        assert ridge[30:66, 46:49].mean() > 0.5 > 5 * ridge[30:66, 20:30].mean()
    represented = to_input_representation(dark, "grey_ridges")
    assert represented[2, 2, 1:].max() == 0  # nothing but black outside the field of view
    with pytest.raises(ValueError, match=r"'hsv'.*\['rgb', 'grey_ridges'\]"):
        to_input_representation(dark, "hsv")


def test_dark_and_bright_ridges_equal_two_sato_calls():
    image = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    dark, bright = _dark_and_bright_ridges(image, (1.0, 2.0))
    np.testing.assert_allclose(dark, _scaled(sato(image, sigmas=[1.0, 2.0], black_ridges=True)), atol=1e-5)
    np.testing.assert_allclose(bright, _scaled(sato(image, sigmas=[1.0, 2.0], black_ridges=False)), atol=1e-5)


@pytest.mark.parametrize("shape", [(256, 256), (48, 40), (7, 9)])
@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5, 2.0, 3.0])
def test_gaussian_hessian_equals_skimage(shape, sigma):
    """The OpenCV Hessian is skimage's (same kernels, reflected borders, also where they reach past a tiny image)."""
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    expected = hessian_matrix(image, sigma, mode="reflect", use_gaussian_derivatives=True)
    for ours, theirs in zip(gaussian_hessian(image, sigma), expected, strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-6 * max(1.0, float(np.abs(theirs).max())))


def test_native_resolution_ridges_find_vessels_too_thin_for_the_model_square():
    """A 1-px vessel at 3x the model's side (a third of a model pixel) among blobs of the model's own scale (an
    SLO's choroid at 256 px): ridges of the large square (`detail`) single the vessel out, the model square's don't."""
    processor = FFAImageProcessor(resolution=96, crop_to_field_of_view=False)
    blobs = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((288, 288)).astype(np.float32), (0, 0), 6)
    large = np.clip(0.5 + 0.1 * blobs / blobs.std(), 0, 1)
    large[:, 143] *= 0.4
    large = np.repeat(large[..., None], 3, axis=2)
    framing = processor.frame(large)
    detail = processor.ridge_detail(large, framing, 96)
    assert detail.shape == (288, 288, 3)
    square = processor.apply_framing(large, framing, 96)
    assert processor.ridge_detail(square, processor.frame(square), 96) is None  # no more pixels than the model's
    vessel = slice(47, 49)

    def vessel_contrast(represented: np.ndarray) -> float:
        dark = represented[16:80, :, 1]
        return dark[:, vessel].mean() / dark[:, np.r_[0:40, 56:96]].mean()

    plain = to_input_representation(square, "grey_ridges")
    native = to_input_representation(square, "grey_ridges", detail)
    assert np.array_equal(native[..., 0], plain[..., 0])  # the grey channel is the model square's in both
    assert vessel_contrast(plain) < 1.2 and vessel_contrast(native) > 1.5 * vessel_contrast(plain)  # 1.07, 1.95
