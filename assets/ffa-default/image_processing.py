"""Turn any retinal image into the model's square input, and the model's output back into the input's framing.

Colour fundus photos are a bright disc on black, often with the top and bottom cut off; OCT en-face
images and ultra-widefield SLO fill the frame. The model sees a square centred on the field of view,
so preprocessing finds the disc, cuts (or pads) a square around it and resizes it. `Framing` records
where that square came from so `postprocess(..., output_size="input")` can put the angiogram back on
a canvas the size of the input, in the same place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.image_processor import VaeImageProcessor
from skimage.feature import hessian_matrix_eigvals
from skimage.filters import sato

ACCEPTED_TYPES = "PIL.Image.Image, numpy.ndarray, torch.Tensor, or a file path (str / os.PathLike)"
ACCEPTED_DTYPES = "uint8, uint16, bool or float in [0, 1]"
OUTPUT_TYPES = ("pil", "np", "pt")

FOV_WORKING_SIZE = 512  # the field of view is found on a copy this big: plenty for a disc, fast for 40 MP photos
FOV_MEDIAN_SIZE = 5  # median filter: removes JPEG noise and specks in the black surround, keeps the disc's edge
FOV_MIN_BRIGHTNESS = 0.04  # darkest level counted as "inside the field of view" (black surrounds sit below this)
FOV_BRIGHTNESS_FRACTION = 0.1  # ...or this fraction of the bright end of the image, if that is higher
FOV_MIN_AREA_FRACTION = 0.05  # a smaller bright blob is not a field of view: treat the whole image as one
FOV_FULL_FRAME_FRACTION = 0.95  # a blob this big is the whole frame (OCT en-face, UWF SLO)
FLOAT_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by rounding error; they are clipped
# What the condition encoder sees of the framed source (stored in its config as `input_representation`):
# "rgb": the photo itself; "grey_ridges": [CLAHE grey, dark-vessel ridges, bright-vessel ridges], the same for
# any rendering of the same anatomy (phantom or real photo, CFP or SLO), see `to_input_representation`.
INPUT_REPRESENTATIONS = ("rgb", "grey_ridges")
RIDGE_SIGMAS = (1.0, 2.0)  # Sato scales at the model's 256 px: real vessels there are 1-4 px wide
# Modalities listed in the condition encoder's `native_resolution_ridges` get their ridge maps from the source at its
# own resolution, up to this many times the model's side (768 px at 256; then area-resized): an ultra-widefield SLO
# packs a 200-degree field into the same square, so its vessels are 0.5-2 px wide at 256 px and drown in choroidal
# texture there, but stand out at 768 px. 3x keeps the Hessians near 0.3 s on 2 CPU cores.
NATIVE_RIDGE_MAX_FACTOR = 3
FIELD_EDGE_PX = 4  # ridges this close to the field of view's border are its edge, not vessels
FIELD_HOLE_PX = 41  # dark patches inside the field (OCT en-face between vessels) up to this size stay in it


@dataclass(frozen=True)
class Framing:
    """Where the model's square came from in the input image, to map outputs back."""

    input_height: int
    input_width: int
    box: tuple[int, int, int]  # (x0, y0, side) of the square in input pixels; may extend past the borders (padded)
    fov_center: tuple[float, float]  # (x, y) of the detected field of view, input pixels (pixel i spans [i, i+1))
    fov_radius: float


class FFAImageProcessor(ConfigMixin):
    """Validates retinal images, squares them around the field of view and maps model outputs back.

    Inputs (one image or a list; a 4-D tensor/array is a batch):
      - PIL images in any mode. Transparent images are composited on black; "I;16" is divided by 65535,
        "I" (32-bit int) must hold 16-bit values and is divided by 65535 too; "F" must be in [0, 1].
      - numpy arrays HxW or HxWxC (C = 1, 3 or 4; channels last), dtype uint8 (/255), uint16 (/65535),
        bool, or float in [0, 1]. A 4th channel is alpha and is composited on black.
      - torch tensors HxW or CxHxW (channels first, C = 1, 3 or 4), uint8 or float in [0, 1]
        (the diffusers convention for input images; map [-1, 1] tensors with (x + 1) / 2 first).
      - a file path, opened with PIL (its pixel count is checked before the pixels are decoded).
    Grey images are replicated to 3 channels. Nothing is ever unpickled.
    """

    config_name = "preprocessor_config.json"

    @register_to_config
    def __init__(
        self,
        resolution: int = 256,
        min_size: int = 32,
        max_pixels: int = 40_000_000,
        crop_to_field_of_view: bool = True,
    ):
        super().__init__()
        _check_resolution(resolution)
        if min_size < 1 or max_pixels < min_size * min_size:
            raise ValueError(f"need 1 <= min_size and min_size**2 <= max_pixels, got {min_size=}, {max_pixels=}")

    def to_float_rgb(self, image) -> np.ndarray:
        """Any accepted image -> HxWx3 float32 in [0, 1]. All input validation happens here."""
        if isinstance(image, (str, os.PathLike)):
            image = self._open(image)
        if isinstance(image, PIL.Image.Image):
            self._check_size(image.width, image.height)
            return self._array_to_float_rgb(_pil_to_array(image))
        if isinstance(image, torch.Tensor):
            return self._array_to_float_rgb(_tensor_to_array(image))
        if isinstance(image, np.ndarray):
            return self._array_to_float_rgb(image)
        raise TypeError(f"unsupported image type {type(image).__name__}; expected {ACCEPTED_TYPES}")

    def find_field_of_view(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float], float]:
        """Find the bright (possibly clipped) disc of a fundus photo: (bool mask, centre (x, y), radius).

        The disc is the largest bright region of a denoised, downscaled copy. Its circle comes from its
        extents along the axes that the image border doesn't cut, because photos are often clipped at
        the top and bottom. Images whose bright region fills (nearly) the frame, or that have none,
        get the whole image: centre of the image, radius half the longer side.
        """
        height, width = rgb.shape[:2]
        scale = min(1.0, FOV_WORKING_SIZE / max(height, width))
        small_width, small_height = max(1, round(width * scale)), max(1, round(height * scale))
        small = cv2.resize(rgb, (small_width, small_height), interpolation=cv2.INTER_AREA)
        brightness = cv2.medianBlur(small.max(axis=2), FOV_MEDIAN_SIZE)
        threshold = max(FOV_MIN_BRIGHTNESS, FOV_BRIGHTNESS_FRACTION * float(np.percentile(brightness, 99)))
        bright = (brightness > threshold).astype(np.uint8)
        contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return _whole_image(height, width)
        disc = np.zeros_like(bright)
        cv2.drawContours(disc, [max(contours, key=cv2.contourArea)], -1, 255, thickness=cv2.FILLED)
        area_fraction = np.count_nonzero(disc) / disc.size
        if not FOV_MIN_AREA_FRACTION <= area_fraction < FOV_FULL_FRAME_FRACTION:
            return _whole_image(height, width)

        x, y, box_width, box_height = cv2.boundingRect(disc)
        x_scale, y_scale = width / small_width, height / small_height
        left, right = x * x_scale, (x + box_width) * x_scale
        top, bottom = y * y_scale, (y + box_height) * y_scale
        radius = max(right - left, bottom - top) / 2  # a clipped axis only looks shorter than the diameter
        touches_left, touches_right = x == 0, x + box_width == small_width
        touches_top, touches_bottom = y == 0, y + box_height == small_height
        center_x = _center_on_axis(left, right, radius, touches_left, touches_right)
        center_y = _center_on_axis(top, bottom, radius, touches_top, touches_bottom)
        mask = cv2.resize(disc, (width, height), interpolation=cv2.INTER_LINEAR) > 127
        return mask, (center_x, center_y), radius

    def preprocess(self, images, resolution: int | None = None) -> tuple[torch.Tensor, list[Framing]]:
        """Images -> ([B, 3, R, R] float32 in [-1, 1], one Framing per image)."""
        rgbs, framings = self.decode_and_frame(images)
        return self.framed_pixels(rgbs, framings, resolution), framings

    def decode_and_frame(self, images) -> tuple[list[np.ndarray], list[Framing]]:
        """Images -> (each as HxWx3 float32 in [0, 1] at its own size, its Framing): the first half of `preprocess`,
        for callers that also need the decoded source (`ridge_detail`) without decoding it twice."""
        rgbs = [self.to_float_rgb(image) for image in _as_list(images)]
        return rgbs, [self.frame(rgb) for rgb in rgbs]

    def framed_pixels(self, rgbs: list[np.ndarray], framings: list[Framing],
                      resolution: int | None = None) -> torch.Tensor:
        """Decoded images and their framings (`decode_and_frame`) -> [B, 3, R, R] float32 in [-1, 1]."""
        resolution = self.config.resolution if resolution is None else resolution
        _check_resolution(resolution)
        squares = [self.apply_framing(rgb, framing, resolution) for rgb, framing in zip(rgbs, framings)]
        return VaeImageProcessor.normalize(VaeImageProcessor.numpy_to_pt(np.stack(squares)))

    def to_model_input(
        self, pixels: torch.Tensor, representation: str, details: list[np.ndarray | None] | None = None
    ) -> torch.Tensor:
        """Preprocessed [B, 3, H, W] pixels in [-1, 1] -> the same in the condition encoder's representation.

        details: per image, None or its `ridge_detail` square, for ridges at the source's own resolution.
        """
        check_input_representation(representation)
        if representation == "rgb":
            return pixels
        squares = VaeImageProcessor.pt_to_numpy(VaeImageProcessor.denormalize(pixels.float().cpu()))
        details = [None] * len(squares) if details is None else details
        if len(details) != len(squares):
            raise ValueError(f"to_model_input got {len(details)} details for {len(squares)} images")
        converted = np.stack([to_input_representation(square, representation, detail)
                              for square, detail in zip(squares, details)])
        return VaeImageProcessor.normalize(VaeImageProcessor.numpy_to_pt(converted)).to(pixels)

    def ridge_detail(self, rgb: np.ndarray, framing: Framing, resolution: int) -> np.ndarray | None:
        """`framing`'s square of an HxWx3 float image at its own resolution (`native_ridge_side`), to compute ridge
        maps on; None when the source has no more pixels than `resolution`."""
        side = native_ridge_side(framing, resolution)
        return self.apply_framing(rgb, framing, side) if side > resolution else None

    def apply_framing(self, image: np.ndarray, framing: Framing, resolution: int) -> np.ndarray:
        """Cut `framing`'s square out of an HxWxC float image (black outside it) and resize it to the resolution.

        Used on the source image itself, and by the trainer on the target registered to that source, so a
        training pair is cropped exactly as the pipeline will crop the source at inference.
        """
        x0, y0, side = framing.box
        square = np.zeros((side, side, image.shape[2]), dtype=np.float32)
        _paste(image, onto=square, x=-x0, y=-y0)
        return _resize(square, resolution, resolution)

    def postprocess(
        self,
        images: torch.Tensor,
        output_type: str = "pil",
        framings: list[Framing] | None = None,
        output_size: str | tuple[int, int] | None = None,
    ):
        """Model output [B, C, R, R] in [-1, 1] (C = 1 grey angiogram, or 3) -> images in [0, 1].

        output_size: None keeps R x R; "input" puts each image back at its input's size and framing
        (black outside the square); (height, width) resizes to that.
        Returns a list of PIL images ("L" or "RGB") for "pil"; for "np" an array [B, H, W, C], for "pt"
        a tensor [B, C, H, W], or a list of per-image arrays / tensors when the sizes differ.
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"postprocess expects a torch.Tensor [B, C, H, W], got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"postprocess expects a tensor [B, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        outputs = list(VaeImageProcessor.pt_to_numpy(VaeImageProcessor.denormalize(images.detach())))

        if output_size == "input":
            if framings is None or len(framings) != len(outputs):
                count = None if framings is None else len(framings)
                raise ValueError(f'output_size="input" needs the {len(outputs)} framings from preprocess, got {count}')
            outputs = [_unframe(output, framing) for output, framing in zip(outputs, framings)]
        elif output_size is not None:
            if not (
                isinstance(output_size, (tuple, list))
                and len(output_size) == 2
                and all(isinstance(side, int) and side > 0 for side in output_size)
            ):
                raise ValueError(f'output_size must be None, "input" or (height, width), got {output_size!r}')
            outputs = [_resize(output, *output_size) for output in outputs]

        if output_type == "pil":
            return [VaeImageProcessor.numpy_to_pil(output)[0] for output in outputs]
        if output_type == "pt":
            outputs = [torch.from_numpy(output).permute(2, 0, 1) for output in outputs]
        same_size = len({output.shape for output in outputs}) == 1
        if not same_size:
            return outputs
        return np.stack(outputs) if output_type == "np" else torch.stack(outputs)

    def _open(self, path: str | os.PathLike) -> PIL.Image.Image:
        """Open an image file, refusing oversized ones before their pixels are decoded."""
        try:
            with PIL.Image.open(path) as image:
                self._check_size(image.width, image.height)
                image.load()
                return image
        except PIL.Image.DecompressionBombError as error:
            raise ValueError(f"{os.fspath(path)!r} is refused by PIL as a decompression bomb: {error}") from error

    def _check_size(self, width: int, height: int) -> None:
        min_size, max_pixels = self.config.min_size, self.config.max_pixels
        if min(width, height) < min_size:
            raise ValueError(f"image is {width} x {height} pixels (width x height); both sides must be >= {min_size=}")
        if width * height > max_pixels:
            raise ValueError(
                f"image is {width} x {height} = {width * height:,} pixels, over the limit {max_pixels=:,} "
                "(a guard against decompression bombs); downscale it or raise max_pixels"
            )

    def _array_to_float_rgb(self, array: np.ndarray) -> np.ndarray:
        """HxW / HxWxC array of an accepted dtype -> HxWx3 float32 in [0, 1]; transparency becomes black."""
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
            raise ValueError(
                f"array images must be HxW or HxWxC with C = 1, 3 or 4 (channels last), got shape {array.shape}; "
                "transpose channels-first arrays with array.transpose(1, 2, 0)"
            )
        self._check_size(array.shape[1], array.shape[0])
        image = _to_unit_float(array)
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[2] == 4:
            image = image[..., :3] * image[..., 3:]
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return np.ascontiguousarray(image)

    def frame(self, rgb: np.ndarray) -> Framing:
        """The square (side ~ the field of view's diameter) centred on the field of view."""
        height, width = rgb.shape[:2]
        if self.config.crop_to_field_of_view:
            _, center, radius = self.find_field_of_view(rgb)
        else:
            center, radius = (width / 2, height / 2), max(height, width) / 2
        side = max(1, round(2 * radius))
        box = (round(center[0] - side / 2), round(center[1] - side / 2), side)
        center = (float(center[0]), float(center[1]))
        return Framing(input_height=height, input_width=width, box=box, fov_center=center, fov_radius=float(radius))


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey where vessels have contrast: the green channel of a colour image (RGB order), else luminance."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        image = image[..., :3]
    if is_grey(image):
        return image[..., 0]
    return image[..., 1]


def is_grey(image: np.ndarray, tolerance: float = 4.0) -> bool:
    """True when an RGB image is grey content (R~G~B), as FFA stored in RGB is."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    channels = image[..., :3].astype(np.int16)
    return float(np.abs(channels[..., 0] - channels[..., 1]).mean()) <= tolerance and float(
        np.abs(channels[..., 1] - channels[..., 2]).mean()
    ) <= tolerance


def vessel_map(gray: np.ndarray, vessels_dark: bool, sigmas: tuple[float, ...] = (1.5, 3.0)) -> np.ndarray:
    """float32 map in [0, 1] where vessels are bright, whatever their polarity in ``gray``.

    CLAHE evens out illumination; the Sato ridge filter keeps elongated structures (vessels) and weakens blobs and
    edges; clipping at the 99th percentile keeps a few very strong ridges (eyelids, laser scars) from dominating.
    """
    return _ridge_map(_equalise(gray), vessels_dark, sigmas)


def _equalise(gray: np.ndarray) -> np.ndarray:
    """uint8 grey -> CLAHE-equalised float32 in [0, 1]."""
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray).astype(np.float32) / 255.0


def _ridge_map(equalised: np.ndarray, vessels_dark: bool, sigmas: tuple[float, ...]) -> np.ndarray:
    return _scaled(sato(equalised, sigmas=list(sigmas), black_ridges=vessels_dark))


def _scaled(ridges: np.ndarray) -> np.ndarray:
    ridges = ridges.astype(np.float32)
    scale = float(np.percentile(ridges, 99)) + 1e-6
    return np.clip(ridges / scale, 0.0, 1.0)


def _dark_and_bright_ridges(equalised: np.ndarray, sigmas: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """skimage's 2-D `sato` for dark and for bright ridges from one Hessian per scale (half the time of two calls).

    Ours, from sato's definition: with Hessian eigenvalues l1 >= l2, dark ridges score sigma^2 * max(l1, 0) and bright
    ridges (sato of the negated image, whose eigenvalues are -l2 >= -l1) sigma^2 * max(-l2, 0).
    """
    dark = np.zeros_like(equalised)
    bright = np.zeros_like(equalised)
    for sigma in sigmas:
        larger, smaller = hessian_matrix_eigvals(gaussian_hessian(equalised, sigma))
        dark = np.maximum(dark, sigma**2 * np.maximum(larger, 0))
        bright = np.maximum(bright, sigma**2 * np.maximum(-smaller, 0))
    return _scaled(dark), _scaled(bright)


def gaussian_hessian(image: np.ndarray, sigma: float) -> list[np.ndarray]:
    """skimage's `hessian_matrix(image, sigma, mode="reflect", use_gaussian_derivatives=True)` ([Hrr, Hrc, Hcc]) as
    OpenCV separable filters with the same 1-D kernels, equal to float32 precision.

    Ours, for speed: skimage truncates the Gaussian at sigma <= 1 only at 100 standard deviations (143 taps at
    sigma 1), which made the ridge maps 0.1 s of a 256 px call on a 2-core CPU; the taps below 1e-12 of the peak are
    dropped here and OpenCV filters the rest in 2 ms.
    """
    scaled = sigma / np.sqrt(2)  # skimage smooths twice (a first derivative, then another) at sigma / sqrt(2)
    radius = int((8 if sigma > 1 else 100) * scaled + 0.5)  # skimage's truncation
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    smooth = np.exp(-0.5 * offsets**2 / scaled**2)
    smooth /= smooth.sum()
    first = offsets / scaled**2 * smooth  # scipy's first-derivative kernel as a correlation (cv2 correlates)
    keep = smooth > 1e-12 * smooth.max()
    smooth, first = smooth[keep].astype(np.float32), first[keep].astype(np.float32)

    def filtered(array: np.ndarray, along_columns: np.ndarray, along_rows: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(array, cv2.CV_32F, along_columns, along_rows, borderType=cv2.BORDER_REFLECT)

    image = image.astype(np.float32, copy=False)
    rows, columns = filtered(image, smooth, first), filtered(image, first, smooth)
    return [filtered(rows, smooth, first), filtered(rows, first, smooth), filtered(columns, first, smooth)]


def native_ridge_side(framing: Framing, resolution: int) -> int:
    """The side at which `framing`'s square keeps the source's own pixels for its ridge maps: the square's side in
    the source, capped at NATIVE_RIDGE_MAX_FACTOR x `resolution` and never below `resolution`."""
    return max(resolution, min(framing.box[2], NATIVE_RIDGE_MAX_FACTOR * resolution))


def check_input_representation(representation: str) -> None:
    if representation not in INPUT_REPRESENTATIONS:
        raise ValueError(f"Unknown input_representation {representation!r}; allowed: {list(INPUT_REPRESENTATIONS)}")


def to_input_representation(square: np.ndarray, representation: str, detail: np.ndarray | None = None) -> np.ndarray:
    """A framed HxWx3 float image in [0, 1] -> what the condition encoder sees (HxWx3 float32 in [0, 1]).

    "grey_ridges" (ours) keeps what a phantom and a real photo of the same eye share and drops their rendering
    (hue, illumination, vessel contrast): the CLAHE-equalised green channel (disc bright, fovea dark) and Sato
    ridge maps of dark and of bright vessels (CFP/SLO vessels are dark, OCT en-face vessels bright), each scaled
    to its own 99th percentile. A model trained on phantom photos in "rgb" draws its own vessel tree on real ones.
    `detail` (ours): the same square at a higher resolution (`FFAImageProcessor.ridge_detail`); the ridge maps are
    then computed on it, with the same sigmas in its own pixels (finer vessels), and area-resized to the square.
    """
    check_input_representation(representation)
    if representation == "rgb":
        return square.astype(np.float32)
    gray = to_gray(square)
    bright = (square.max(axis=2) > FOV_MIN_BRIGHTNESS).astype(np.uint8)
    hole = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (FIELD_HOLE_PX, FIELD_HOLE_PX))
    field = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, hole)
    field = cv2.erode(field, np.ones((2 * FIELD_EDGE_PX + 1,) * 2, np.uint8)).astype(np.float32)
    equalised = _equalise(gray)  # computed once for the grey channel and both ridge maps
    if detail is None:
        ridges = _dark_and_bright_ridges(equalised, RIDGE_SIGMAS)
    else:
        size = (square.shape[1], square.shape[0])
        ridges = [_scaled(cv2.resize(ridge, size, interpolation=cv2.INTER_AREA))
                  for ridge in _dark_and_bright_ridges(_equalise(to_gray(detail)), RIDGE_SIGMAS)]
    ridges = [ridge * field for ridge in ridges]
    return np.stack([equalised, *ridges], axis=2).astype(np.float32)


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")


def _as_list(images) -> list:
    """One image, a list/tuple of images, or a 4-D batch tensor/array -> a non-empty list of images."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise TypeError(f"got an empty {type(images).__name__}; expected at least one image: {ACCEPTED_TYPES}")
    return list(images)


def _pil_to_array(image: PIL.Image.Image) -> np.ndarray:
    """PIL image -> numpy array, keeping 16-bit and float precision and the alpha channel."""
    if image.mode.startswith("I;16") or image.mode == "F":
        return np.asarray(image)
    if image.mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f'PIL mode "I" images must hold 16-bit values 0..65535, got min {values.min()}, max {values.max()}'
            )
        return values.astype(np.uint16)
    if image.has_transparency_data:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """HxW or CxHxW tensor -> HxW or HxWxC numpy array of the same kind of dtype."""
    if not (tensor.ndim == 2 or (tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4))):
        raise ValueError(
            f"tensor images must be HxW or CxHxW with C = 1, 3 or 4 (channels first), got shape {tuple(tensor.shape)}"
        )
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim == 3:
        tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / bool / float array -> float32 in [0, 1], refusing NaN, Inf and out-of-range floats."""
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    if kind == "b":
        return array.astype(np.float32)
    if kind == "u" and itemsize in (1, 2):
        return array.astype(np.float32) / (255 if itemsize == 1 else 65535)
    if kind != "f":
        raise TypeError(f"unsupported image dtype {array.dtype}; expected {ACCEPTED_DTYPES}")
    image = array.astype(np.float32)
    finite = np.isfinite(image)
    if not finite.all():
        nan_count = int(np.isnan(image).sum())
        raise ValueError(
            f"image contains {nan_count} NaN and {image.size - int(finite.sum()) - nan_count} infinite values; "
            "expected finite floats in [0, 1]"
        )
    low, high = float(image.min()), float(image.max())
    if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
        raise ValueError(
            f"float image values must lie in [0, 1], got min {low:.4g}, max {high:.4g}; "
            "map [-1, 1] images with (image + 1) / 2 and 0..255 images with image / 255"
        )
    return np.clip(image, 0.0, 1.0)


def _whole_image(height: int, width: int) -> tuple[np.ndarray, tuple[float, float], float]:
    """The field of view of a full-frame image: all of it, in a circle around the longer side."""
    return np.ones((height, width), dtype=bool), (width / 2, height / 2), max(height, width) / 2


def _center_on_axis(start: float, end: float, radius: float, touches_start: bool, touches_end: bool) -> float:
    """Centre of a disc along one axis from its visible extent [start, end).

    A border cut on one side is moved out to the full diameter; a cut on both sides is taken as symmetric,
    as cameras frame the disc.
    """
    if touches_start and not touches_end:
        return end - radius
    if touches_end and not touches_start:
        return start + radius
    return (start + end) / 2


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC float resize: area averaging to shrink (no aliasing), bicubic to grow (clipped, it overshoots)."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return np.clip(resized.reshape(height, width, image.shape[2]), 0.0, 1.0)


def _paste(image: np.ndarray, onto: np.ndarray, x: int, y: int) -> None:
    """Copy `image` into `onto` with its top-left corner at (x, y), dropping whatever falls outside."""
    height, width = image.shape[:2]
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + width, onto.shape[1]), min(y + height, onto.shape[0])
    if left < right and top < bottom:
        onto[top:bottom, left:right] = image[top - y : bottom - y, left - x : right - x]


def _unframe(square: np.ndarray, framing: Framing) -> np.ndarray:
    """Invert the crop/pad + resize: the square goes back to its box on a black canvas of the input's size."""
    x0, y0, side = framing.box
    canvas = np.zeros((framing.input_height, framing.input_width, square.shape[2]), dtype=np.float32)
    _paste(_resize(square, side, side), onto=canvas, x=x0, y=y0)
    return canvas
