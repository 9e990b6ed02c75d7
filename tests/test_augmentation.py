"""Random shifts of encoded inputs: every plane moves together and black pixels fill in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.core import encodings
from bitnet.input import augmentation
from bitnet.training import configuration
from configs import default


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` [side, side] moved down dy and right dx, zero (black) where nothing moved in."""
    side = image.shape[0]
    out = np.zeros_like(image)
    out[max(dy, 0) : side + min(dy, 0), max(dx, 0) : side + min(dx, 0)] = image[
        max(-dy, 0) : side + min(-dy, 0), max(-dx, 0) : side + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("name", ["bipolar", "binary", "thermo2", "fixed2", "float"])
def test_each_example_is_the_encoded_image_shifted_by_at_most_max_shift(name):
    encoding = encodings.get_encoding(name)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, 8, 8)).astype(np.uint8)
    inputs = jnp.asarray(encoding(images.reshape(64, -1)))
    shift = augmentation.make_random_shift(2, encoding, inputs.shape[1])
    out = np.asarray(jax.jit(shift)(inputs, jax.random.key(0)))
    seen = set()
    for image, result in zip(images, out):
        matches = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
            if np.array_equal(encoding(_shifted(image, dy, dx).reshape(1, -1))[0], result)
        ]
        assert matches, "an output is not a shift of its input"
        seen.update(matches)
    assert len(seen) >= 15  # the offsets really vary (25 possible)


def test_zero_shift_is_off_and_non_square_inputs_are_refused():
    encoding = encodings.get_encoding("bipolar")
    assert augmentation.make_random_shift(0, encoding, 784) is None
    with pytest.raises(ValueError, match="need square images"):
        augmentation.make_random_shift(1, encoding, 780)


@pytest.mark.parametrize("bad", [-1, 9])
def test_config_refuses_bad_max_shift(bad):
    config = default.get_config()
    config.stage1.max_shift = bad
    with pytest.raises(configuration.ConfigError, match=r"config.stage1.max_shift"):
        configuration.check(config)


def test_workdirs_written_before_max_shift_existed_still_match():
    """config.json files from before the field read as max_shift = 0, so they resume and share stage 1."""
    new = configuration.config_dict(default.get_config())
    old = {**new, "stage1": {k: v for k, v in new["stage1"].items() if k != "max_shift"},
           "stage2": {k: v for k, v in new["stage2"].items() if k != "max_shift"}}
    assert configuration.config_differences(old, new) == []
    new["stage1"]["max_shift"] = 1
    assert configuration.config_differences(old, new) == ["stage1.max_shift"]
