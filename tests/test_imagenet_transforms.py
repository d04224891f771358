"""The ImageNet crops (`resnet_jax.data.imagenet`) on real JPEGs: scikit-learn's china.jpg
(640x427) and re-encodings of it at other sizes and in other modes."""
import functools
import io
import math
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from resnet_jax.data import imagenet
from resnet_jax.data.errors import CorruptDataError

SIZE = 224


def _encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
  return Image.fromarray(load_sample_image("china.jpg"))


@pytest.fixture(scope="module")
def jpegs(photo) -> dict[str, bytes]:
  return {"china": _encode(photo, quality=90),
          "portrait": _encode(photo.crop((100, 0, 385, 380)).resize((375, 500)), quality=90),
          "large": _encode(photo.resize((1600, 1068)), quality=90),
          "odd": _encode(photo.resize((333, 251)), quality=90)}


@pytest.mark.parametrize("kind", imagenet.TRAIN_TRANSFORMS)
def test_train_crop_shapes_dtypes_and_ranges(jpegs, kind):
  for name, jpeg in jpegs.items():
    pixels, offset = imagenet.train_crop(jpeg, np.random.default_rng(0), kind=kind)
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8, name
    assert offset.shape == (3,) and offset.dtype == np.float32
    assert pixels.std() > 10  # a photo, not a blank
    assert (np.abs(offset).max() > 0) == (kind == "he2015")
    images = imagenet.normalize(pixels[None], offset[None])
    assert images.dtype == np.float32 and images.shape == (1, SIZE, SIZE, 3)
    low = (0 + offset - np.array(imagenet.MEAN_RGB)) / np.array(imagenet.STD_RGB)
    high = (1 + offset - np.array(imagenet.MEAN_RGB)) / np.array(imagenet.STD_RGB)
    assert np.all(images >= low - 1e-5) and np.all(images <= high + 1e-5)
  small, _ = imagenet.train_crop(jpegs["odd"], np.random.default_rng(0), kind=kind,
                                 image_size=32, scale_range=(32, 40))
  assert small.shape == (32, 32, 3)


@pytest.mark.parametrize("kind", imagenet.TRAIN_TRANSFORMS)
def test_train_crop_is_a_function_of_bytes_and_rng_state(jpegs, kind):
  crop = functools.partial(imagenet.train_crop, kind=kind)
  crop = pickle.loads(pickle.dumps(crop))  # what a grain worker process receives
  rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
  a = crop(jpegs["large"], rng_a)
  imagenet.train_crop(jpegs["china"], np.random.default_rng(9), kind=kind)  # no state between
  b = crop(jpegs["large"], rng_b)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert rng_a.bit_generator.state == rng_b.bit_generator.state  # the same draws consumed
  others = [crop(jpegs["large"], np.random.default_rng(s))[0] for s in range(6, 9)]
  assert all(not np.array_equal(a[0], o) for o in others)


def _implied_short_side(width, height, box):
  """he2015: the crop spans SIZE pixels of the resized image, so the resize factor is
  SIZE / box side and the shorter side min(width, height) * that."""
  if width <= height:
    return width * SIZE / (box[2] - box[0])
  return height * SIZE / (box[3] - box[1])


@pytest.mark.parametrize("width,height", [(500, 375), (375, 500), (640, 427)])
def test_he2015_draws_honour_the_scale_range(width, height):
  rng = np.random.default_rng(0)
  draws = [imagenet.sample_train_crop(width, height, rng, kind="he2015") for _ in range(2000)]
  shorts = np.array([_implied_short_side(width, height, d.box) for d in draws])
  assert np.all(np.abs(shorts - np.round(shorts)) < 1e-6)  # an integer S, as drawn
  shorts = np.round(shorts)
  assert shorts.min() >= 256 and shorts.max() <= 480
  assert shorts.min() < 262 and shorts.max() > 474  # the whole range is drawn
  for d, short in zip(draws, np.round(shorts).astype(int)):
    left, top, right, bottom = d.box
    assert 0 <= left and 0 <= top and right <= width + 1e-9 and bottom <= height + 1e-9
    # A SIZE x SIZE crop at integer offsets of the image resized as torchvision's Resize(S).
    new_w, new_h = imagenet.resized_size(width, height, short)
    np.testing.assert_allclose([right - left, bottom - top],
                               [SIZE * width / new_w, SIZE * height / new_h], rtol=1e-12)
    offsets = np.array([left * new_w / width, top * new_h / height])
    np.testing.assert_allclose(offsets, np.round(offsets), atol=1e-6)
  assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
  # The lighting offset is EIGVEC @ (alpha * EIGVAL) with alpha ~ N(0, 0.1).
  offsets = np.stack([d.offset for d in draws]).astype(np.float64)
  alphas = np.linalg.solve(np.array(imagenet.EIGVEC), offsets.T).T / np.array(imagenet.EIGVAL)
  np.testing.assert_allclose(alphas.std(0), imagenet.LIGHTING_STD, rtol=0.08)
  np.testing.assert_allclose(alphas.mean(0), 0, atol=0.01)


def test_inception_draws_honour_area_and_aspect():
  width, height = 500, 375
  rng = np.random.default_rng(0)
  draws = [imagenet.sample_train_crop(width, height, rng, kind="inception")
           for _ in range(2000)]
  boxes = np.array([d.box for d in draws], np.float64)
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  area, aspect = w * h / (width * height), w / h
  # w and h are rounded to integers: a relative error of 0.5 / side at most.
  slack = 0.5 / np.minimum(w, h)
  assert np.all(area >= 0.08 * (1 - 2 * slack)) and np.all(area <= 1)
  assert np.all(aspect >= 3 / 4 * (1 - 2 * slack)) and np.all(aspect <= 4 / 3 * (1 + 2 * slack))
  assert area.min() < 0.1 and area.max() > 0.9 and aspect.min() < 0.77 and aspect.max() > 1.3
  assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width) and np.all(
      boxes[:, 3] <= height)
  assert np.all(boxes == np.round(boxes))
  assert all(np.all(d.offset == 0) for d in draws)
  # No try fits a 2000x60 strip: torchvision's fallback, the centre at the widest aspect 4/3.
  fallback = imagenet.sample_train_crop(2000, 60, np.random.default_rng(0), kind="inception")
  assert fallback.box == (960, 0, 1040, 60)


def test_dct_scale_is_the_smallest_that_keeps_the_resolution():
  rng = np.random.default_rng(0)
  for _ in range(500):
    width, height = rng.integers(100, 3000, 2)
    bw, bh = rng.uniform(20, width), rng.uniform(20, height)
    m = imagenet.dct_scale(width, height, (0, 0, bw, bh), SIZE)
    assert m in (1, 2, 4, 8)
    if m < 8:
      assert min(bw, bh) * m / 8 >= SIZE
    if m > 1:
      assert min(bw, bh) * (m // 2) / 8 < SIZE  # the next smaller scale would lose pixels


@pytest.mark.parametrize("kind", imagenet.TRAIN_TRANSFORMS)
@pytest.mark.parametrize("decoder", imagenet.DECODERS)
def test_train_crop_never_decodes_below_the_crop_resolution(jpegs, monkeypatch, kind, decoder):
  seen = []
  sample, decode = imagenet.sample_train_crop, imagenet.decode_scaled

  def spy_sample(*args, **kwargs):
    seen.append(sample(*args, **kwargs))
    return seen[-1]

  def spy_decode(jpeg, scale, **kwargs):
    image, factor = decode(jpeg, scale, **kwargs)
    left, top, right, bottom = seen[-1].box
    # The crop's box in the decoded image spans at least SIZE pixels each way.
    assert (right - left) * factor >= SIZE - 1e-6 and (bottom - top) * factor >= SIZE - 1e-6
    assert image.shape[1] >= math.floor(right * factor) and image.shape[0] >= math.floor(
        bottom * factor)
    seen.append(factor)
    return image, factor

  monkeypatch.setattr(imagenet, "sample_train_crop", spy_sample)
  monkeypatch.setattr(imagenet, "decode_scaled", spy_decode)
  for seed in range(12):
    imagenet.train_crop(jpegs["large"], np.random.default_rng(seed), kind=kind, decoder=decoder)
  factors = seen[1::2]
  assert len(factors) == 12 and min(factors) < 1  # DCT scaling was used


@pytest.mark.parametrize("kind", imagenet.TRAIN_TRANSFORMS)
def test_dct_scaled_crops_match_full_decodes(jpegs, kind):
  for seed in range(6):
    crops = [imagenet.train_crop(jpegs["large"], np.random.default_rng(seed), kind=kind,
                                 decoder=decoder, dct_scaling=dct)[0].astype(np.float64)
             for decoder in imagenet.DECODERS for dct in (True, False)]
    for other in crops[1:]:
      assert np.abs(other - crops[0]).mean() < 3  # the same crop, up to resampling


def _torchvision_resized(photo: Image.Image, size: int) -> Image.Image:
  """torchvision's Resize(size) of a PIL image, written from its source."""
  w, h = photo.size
  short, long = (w, h) if w <= h else (h, w)
  new_short, new_long = size, int(size * long / short)
  new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
  return photo.resize((new_w, new_h), Image.Resampling.BILINEAR)


def _pillow_crop(image: Image.Image, top: int, left: int) -> np.ndarray:
  return np.asarray(image.crop((left, top, left + SIZE, top + SIZE)))


def _pillow_five(image: Image.Image) -> list[np.ndarray]:
  w, h = image.size
  centre = (int(round((h - SIZE) / 2.0)), int(round((w - SIZE) / 2.0)))
  return [_pillow_crop(image, *tl) for tl in ((0, 0), (0, w - SIZE), (h - SIZE, 0),
                                               (h - SIZE, w - SIZE), centre)]


@pytest.mark.parametrize("name", ["china", "portrait", "odd"])
def test_eval_crops_equal_pillows_resize_and_crops(jpegs, name):
  photo = Image.open(io.BytesIO(jpegs[name])).convert("RGB")
  resized = _torchvision_resized(photo, 256)
  assert resized.size == imagenet.resized_size(*photo.size, 256)
  five = _pillow_five(resized)
  mirrored = _pillow_five(resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
  ten = imagenet.eval_crops(jpegs[name], crops=10)
  assert ten.shape == (10, SIZE, SIZE, 3) and ten.dtype == np.uint8
  np.testing.assert_array_equal(ten, np.stack(five + mirrored))
  np.testing.assert_array_equal(ten[6], ten[0][:, ::-1])  # TenCrop: the mirror's top-left
  np.testing.assert_array_equal(ten[5], ten[1][:, ::-1])  # is the top-right, mirrored
  np.testing.assert_array_equal(imagenet.eval_crops(jpegs[name]), ten[4:5])


def test_eval_transform_equals_pillows_bilinear_resize_and_centre_crop(jpegs):
  for jpeg in jpegs.values():
    photo = Image.open(io.BytesIO(jpeg)).convert("RGB")
    resized = _torchvision_resized(photo, 256)
    w, h = resized.size
    left, top = int(round((w - SIZE) / 2.0)), int(round((h - SIZE) / 2.0))
    pixels = np.asarray(resized.crop((left, top, left + SIZE, top + SIZE)), np.float32) / 255
    expected = (pixels - np.float32(imagenet.MEAN_RGB)) / np.float32(imagenet.STD_RGB)
    got = imagenet.eval_transform(jpeg)
    assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_normalize_on_numpy_and_jax():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 4, 5, 3), np.uint8)
  offsets = rng.normal(0, 0.02, (2, 3)).astype(np.float32)
  expected = ((images / 255 + offsets[:, None, None, :] - np.array(imagenet.MEAN_RGB))
              / np.array(imagenet.STD_RGB))
  on_host = imagenet.normalize(images, offsets)
  on_device = imagenet.normalize(jnp.asarray(images), jnp.asarray(offsets))
  assert on_host.dtype == np.float32 and on_device.dtype == jnp.float32
  np.testing.assert_allclose(on_host, expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(on_device), on_host, atol=1e-6)
  np.testing.assert_allclose(imagenet.normalize(images[0]), imagenet.normalize(
      images, np.zeros((2, 3), np.float32))[0], atol=1e-7)


def test_grey_cmyk_and_png_images(photo):
  grey = _encode(photo.convert("L"), quality=90)
  for jpeg in (grey, _encode(photo.convert("CMYK"), quality=90), _encode(photo, "PNG")):
    assert imagenet.decode_rgb(jpeg).shape == (427, 640, 3)
    for kind in imagenet.TRAIN_TRANSFORMS:
      assert imagenet.train_crop(jpeg, np.random.default_rng(0), kind=kind)[0].shape == (
          SIZE, SIZE, 3)
    assert imagenet.eval_crops(jpeg, crops=10).shape == (10, SIZE, SIZE, 3)
  pixels = imagenet.train_crop(grey, np.random.default_rng(0), kind="he2015")[0]
  assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_corrupt_bytes_raise_corrupt_data_error(jpegs):
  truncated = jpegs["china"][:len(jpegs["china"]) // 2]
  for data in (b"not an image", truncated):
    with pytest.raises(CorruptDataError):
      imagenet.train_crop(data, np.random.default_rng(0), kind="he2015")
    with pytest.raises(CorruptDataError):
      imagenet.eval_crops(data)
    with pytest.raises(CorruptDataError):
      imagenet.decode_rgb(data)
