"""Decoding ImageNet's JPEGs and the crops of training and evaluation: numpy out, no JAX.

What the streamed input path's worker processes run on each record of a prepared directory
(`records.py`): module-level functions of (jpeg bytes, a numpy Generator) with no state of their
own, so they pickle into worker processes and a crop is a function of (bytes, rng state) alone.

* `train_crop(jpeg, rng, kind="he2015"|"inception")`: uint8 [224, 224, 3] and a float32 [3]
  colour offset. "he2015" is He et al. 2015 §3.4: the shorter side drawn uniformly from [256, 480],
  a random 224 crop, a flip, AlexNet's PCA lighting (fb.resnet.torch's constants). "inception" is
  torchvision's RandomResizedCrop (area 0.08-1, aspect 3/4-4/3) and a flip. Only the crop is
  resampled, and the JPEG is decoded at the smallest DCT scale (1/8, 1/4, 1/2 or 1) that still
  gives the crop at least the resolution of the output, never less.
* `eval_crops(jpeg, crops=1|10)`: the shorter side resized to 256 and the centre 224, or He 2015's
  ten crops; a full decode with Pillow, so it equals torchvision's `Resize(256)`, `CenterCrop(224)`
  and `TenCrop(224)` of the same file.
* `normalize(images, offset)`: uint8 -> float32 `(images / 255 + offset - MEAN_RGB) / STD_RGB`, on
  numpy or jax arrays (the train step normalises on the device with it).
"""
import io
import math
from typing import NamedTuple

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from resnet_jax.data.errors import CorruptDataError

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
# AlexNet's PCA colour augmentation with fb.resnet.torch's constants ([0, 1] scale): the
# eigenvalues and eigenvectors (columns) of ImageNet's RGB covariance. He 2015 published none.
LIGHTING_STD = 0.1
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))

TRAIN_TRANSFORMS = ("he2015", "inception")
# The train crop's JPEG decoders. simplejpeg (libjpeg-turbo, any M/8 DCT scale) is the default:
# per core it decoded 1.8-2.6x as many photos as Pillow, and its crops were 1.2-1.3x Pillow's with
# draft() (benchmarks/jpeg_decode.py). Pillow decodes what simplejpeg does not (CMYK, PNG); the two
# give the same crops up to rounding.
DECODERS = ("simplejpeg", "pillow")

INCEPTION_AREA = (0.08, 1.0)
INCEPTION_ASPECT = (3 / 4, 4 / 3)
INCEPTION_TRIES = 10


class CropBox(NamedTuple):
  """One train crop's draws: the region of the original image, the flip, the colour offset."""
  box: tuple[float, float, float, float]  # (left, top, right, bottom), original pixels
  flip: bool
  offset: np.ndarray  # float32 [3], added on the [0, 1] scale


def image_size_of(jpeg: bytes) -> tuple[int, int]:
  """(width, height) from the header alone."""
  try:
    height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    return width, height
  except ValueError:  # not a JPEG simplejpeg reads (PNG, ...): Pillow reads the header too
    with _open(jpeg) as image:
      return image.size


def sample_train_crop(width: int, height: int, rng: np.random.Generator, *, kind: str,
                      image_size: int = 224,
                      scale_range: tuple[int, int] = (256, 480)) -> CropBox:
  """Draws a train crop of a width x height image; the draws in a fixed order, all from `rng`.

  "he2015": the shorter side S ~ U{scale_range} (inclusive), the longer int(S * long / short) as
  torchvision's Resize; the crop's top, then its left (uniform integers over the resized image);
  the flip; alpha ~ N(0, LIGHTING_STD) [3] and offset = EIGVEC @ (alpha * EIGVAL).
  "inception": torchvision's RandomResizedCrop.get_params (up to 10 tries of an area fraction
  U(0.08, 1) and a log-uniform aspect in [3/4, 4/3], rounded, then the top and left; else the
  centre crop at the nearest allowed aspect); then the flip; offset zeros.
  """
  if kind == "he2015":
    low, high = scale_range
    if not image_size <= low <= high:
      raise ValueError(f"scale_range {scale_range} must satisfy {image_size} <= low <= high")
    short = int(rng.integers(low, high + 1))
    if width <= height:
      new_width, new_height = short, int(short * height / width)
    else:
      new_width, new_height = int(short * width / height), short
    top = int(rng.integers(0, new_height - image_size + 1))
    left = int(rng.integers(0, new_width - image_size + 1))
    sx, sy = width / new_width, height / new_height
    box = (left * sx, top * sy, (left + image_size) * sx, (top + image_size) * sy)
    flip = bool(rng.random() < 0.5)
    alpha = rng.normal(0.0, LIGHTING_STD, 3)
    offset = (np.asarray(EIGVEC) @ (alpha * np.asarray(EIGVAL))).astype(np.float32)
    return CropBox(box, flip, offset)
  if kind == "inception":
    top, left, h, w = _random_resized_crop(width, height, rng)
    flip = bool(rng.random() < 0.5)
    return CropBox((left, top, left + w, top + h), flip, np.zeros(3, np.float32))
  raise ValueError(f"unknown train transform {kind!r}; expected one of {TRAIN_TRANSFORMS}")


def _random_resized_crop(width: int, height: int,
                         rng: np.random.Generator) -> tuple[int, int, int, int]:
  """torchvision's RandomResizedCrop.get_params: (top, left, height, width) of the crop."""
  area = width * height
  log_ratio = (math.log(INCEPTION_ASPECT[0]), math.log(INCEPTION_ASPECT[1]))
  for _ in range(INCEPTION_TRIES):
    target_area = area * rng.uniform(*INCEPTION_AREA)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  ratio = width / height
  if ratio < INCEPTION_ASPECT[0]:
    w, h = width, int(round(width / INCEPTION_ASPECT[0]))
  elif ratio > INCEPTION_ASPECT[1]:
    w, h = int(round(height * INCEPTION_ASPECT[1])), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def dct_scale(width: int, height: int, box: tuple[float, float, float, float],
              out_size: int) -> int:
  """M of the smallest DCT scale M/8 in (1/8, 1/4, 1/2, 1) at which `box` still spans `out_size`
  pixels or more on each side: the most a decode may shrink the image before the crop loses
  resolution. Only libjpeg's fast scales: the others (3/8, 5/8, ...) cost about a full decode."""
  needed = max(out_size / (box[2] - box[0]), out_size / (box[3] - box[1]))
  if min(width, height) < 8:
    return 8
  return next(m for m in (1, 2, 4, 8) if m / 8 >= needed or m == 8)


def decode_scaled(jpeg: bytes, scale: int, *,
                  decoder: str = "simplejpeg") -> tuple[np.ndarray, float]:
  """Decodes at the DCT scale scale/8, or the nearest larger one the decoder has.

  Returns:
    (uint8 [h, w, 3] RGB, f): original pixel coordinates times f are the decoded ones. Pillow has
    the scales 1/8, 1/4, 1/2, 1; simplejpeg (libjpeg-turbo) every M/8.
  """
  width, height = image_size_of(jpeg)
  if decoder == "simplejpeg" and _simplejpeg_reads(jpeg):
    if scale >= 8:
      return _simplejpeg(jpeg), 1.0
    image = _simplejpeg(jpeg, min_height=math.ceil(height * scale / 8),
                        min_width=math.ceil(width * scale / 8))
    return image, _dct_factor(width, height, image.shape)
  if decoder not in DECODERS:
    raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
  with _open(jpeg) as image:
    factor = 1.0
    if scale < 8 and image.format == "JPEG":
      shrink = next(s for s in (8, 4, 2, 1) if s * scale <= 8)
      mode_box = image.draft("RGB", (width // shrink, height // shrink))
      if mode_box is not None:
        factor = mode_box[1][2] / width  # Pillow's own box: exactly 1/s, not the rounded size
    return _to_rgb(image), factor


def train_crop(jpeg: bytes, rng: np.random.Generator, *, kind: str, image_size: int = 224,
               scale_range: tuple[int, int] = (256, 480),
               decoder: str = "simplejpeg",
               dct_scaling: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """One training crop of a JPEG; a function of (jpeg, the state of rng) alone.

  Args:
    jpeg: the encoded image (JPEG; any format Pillow reads is accepted).
    rng: the example's generator; `sample_train_crop` says what is drawn, in which order.
    kind: one of TRAIN_TRANSFORMS.
    image_size: the side of the square crop.
    scale_range: "he2015": the shorter side's range before the crop (integers, inclusive).
    decoder: one of DECODERS.
    dct_scaling: False: always decode the whole resolution (what the benchmark compares with).
  Returns:
    (uint8 [image_size, image_size, 3] RGB, float32 [3] offset on the [0, 1] scale, to be added
    by `normalize`).
  """
  width, height = image_size_of(jpeg)
  crop = sample_train_crop(width, height, rng, kind=kind, image_size=image_size,
                           scale_range=scale_range)
  scale = dct_scale(width, height, crop.box, image_size) if dct_scaling else 8
  decoded, factor = decode_scaled(jpeg, scale, decoder=decoder)
  box = tuple(c * factor for c in crop.box)
  # Pillow's bilinear (antialiased when shrinking) resize of the box alone: the same pixels as
  # resizing the whole image and cropping it, at the cost of the crop.
  pixels = Image.fromarray(decoded).resize((image_size, image_size), Image.Resampling.BILINEAR,
                                           box=box)
  if crop.flip:
    pixels = pixels.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(pixels), crop.offset


def resized_size(width: int, height: int, resize_size: int) -> tuple[int, int]:
  """(width, height) with the shorter side resize_size, the longer int(resize_size * long /
  short): torchvision's Resize(int)."""
  if width <= height:
    return resize_size, int(resize_size * height / width)
  return int(resize_size * width / height), resize_size


def eval_crops(jpeg: bytes, *, crops: int = 1, image_size: int = 224,
               resize_size: int = 256) -> np.ndarray:
  """The evaluation crops of a JPEG, as torchvision computes them from a PIL image.

  The shorter side is resized to `resize_size` (Pillow bilinear, `resized_size`), then crops=1:
  the centre crop, offsets int(round((side - image_size) / 2)) as CenterCrop; crops=10: He
  2015's ten crops in TenCrop's order: the top-left, top-right, bottom-left, bottom-right and
  centre crops, then the same five of the mirrored image (so crop 5 mirrors crop 1, the
  top-right, and crop 6 mirrors crop 0).

  Returns:
    uint8 [crops, image_size, image_size, 3].
  """
  if crops not in (1, 10):
    raise ValueError(f"crops must be 1 or 10, not {crops}")
  if resize_size < image_size:
    raise ValueError(f"resize_size {resize_size} is smaller than image_size {image_size}")
  with _open(jpeg) as image:
    rgb = _rgb_image(image)
  resized = np.asarray(rgb.resize(resized_size(*rgb.size, resize_size),
                                  Image.Resampling.BILINEAR))
  if crops == 1:
    return _center(resized, image_size)[None]
  mirrored = resized[:, ::-1]
  return np.stack(_five_crops(resized, image_size) + _five_crops(mirrored, image_size))


def _center(image: np.ndarray, size: int) -> np.ndarray:
  top = int(round((image.shape[0] - size) / 2.0))
  left = int(round((image.shape[1] - size) / 2.0))
  return image[top:top + size, left:left + size]


def _five_crops(image: np.ndarray, size: int) -> list[np.ndarray]:
  h, w = image.shape[:2]
  return [image[:size, :size], image[:size, w - size:], image[h - size:, :size],
          image[h - size:, w - size:], _center(image, size)]


def normalize(images, offset=None):
  """(images / 255 + offset - MEAN_RGB) / STD_RGB in float32, on numpy or jax arrays alike.

  Args:
    images: uint8 [..., H, W, 3].
    offset: None or float [..., 3] (one per image, `train_crop`'s), on the [0, 1] scale.
  Returns:
    float32 [..., H, W, 3].
  """
  x = images.astype(np.float32) / np.float32(255)
  if offset is not None:
    x = x + offset.astype(np.float32)[..., None, None, :]
  # Shaped to the images' rank: the tests run jax with implicit rank promotion disabled.
  shape = (1,) * (x.ndim - 1) + (3,)
  mean = np.asarray(MEAN_RGB, np.float32).reshape(shape)
  std = np.asarray(STD_RGB, np.float32).reshape(shape)
  return (x - mean) / std


def eval_transform(jpeg_bytes: bytes, image_size: int = 224,
                   resize_size: int = 256) -> np.ndarray:
  """One normalised image: float32 [image_size, image_size, 3], the centre crop of `eval_crops`."""
  return normalize(eval_crops(jpeg_bytes, crops=1, image_size=image_size,
                              resize_size=resize_size)[0])


def decode_rgb(jpeg: bytes) -> np.ndarray:
  """uint8 [H, W, 3]: the whole image in RGB, whatever its mode (grey, CMYK, palette)."""
  with _open(jpeg) as image:
    return _to_rgb(image)


def _open(data: bytes) -> Image.Image:
  try:
    return Image.open(io.BytesIO(data))
  except (UnidentifiedImageError, OSError) as err:
    raise CorruptDataError(f"not an image Pillow can read ({len(data)} bytes: {err})") from None


def _rgb_image(image: Image.Image) -> Image.Image:
  try:
    return image.convert("RGB")
  except (OSError, ValueError) as err:  # truncated or corrupt compressed data
    raise CorruptDataError(f"undecodable {image.format} image: {err}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
  return np.asarray(_rgb_image(image))


def _simplejpeg_reads(jpeg: bytes) -> bool:
  # libjpeg-turbo converts grey and YCbCr to RGB, not CMYK/YCCK; those go to Pillow.
  try:
    return simplejpeg.decode_jpeg_header(jpeg)[2] in ("Gray", "YCbCr", "RGB")
  except ValueError:
    return False


def _dct_factor(width: int, height: int, shape: tuple[int, ...]) -> float:
  """M/8 of a decode at DCT scale M/8, from its [ceil(height M/8), ceil(width M/8)] shape: exact,
  where the shape's own ratio to the original is rounded up."""
  for m in range(1, 9):
    if (math.ceil(height * m / 8), math.ceil(width * m / 8)) == tuple(shape[:2]):
      return m / 8
  raise AssertionError(f"{shape} is no DCT scale of {width}x{height}")


def _simplejpeg(jpeg: bytes, **scale) -> np.ndarray:
  try:
    return simplejpeg.decode_jpeg(jpeg, colorspace="RGB", **scale)
  except ValueError as err:
    raise CorruptDataError(f"undecodable JPEG: {err}") from None

