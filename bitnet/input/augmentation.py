"""Data augmentation on encoded inputs: random translations (not in the paper; off by default).

An MLP has no built-in translation invariance, so shifting each training image by a few pixels
is the classic cheap regularizer for MNIST MLPs. It acts on the encoded inputs [B, planes * P]
(every encoding is per pixel, planes concatenated plane-major), so the bitwise inference path and
the bitnet-packed-v1 format are unchanged: only training sees shifted images. Pixels shifted in
take the encoded value of a black pixel.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bitnet.core import encodings

Augment = Callable[[jax.Array, jax.Array], jax.Array]  # (batch inputs, key) -> batch inputs


def image_side(input_size: int, planes: int) -> int:
    """The side of the square images behind `input_size` encoded inputs; ValueError if not square."""
    pixels = input_size // planes
    side = math.isqrt(pixels)
    if pixels * planes != input_size or side * side != pixels:
        raise ValueError(
            f"random shifts need square images, but {input_size} inputs in {planes} plane(s) are not; set max_shift=0"
        )
    return side


def make_random_shift(max_shift: int, encoding: encodings.Encoding, input_size: int) -> Augment | None:
    """A jittable function shifting each example by up to +-max_shift pixels in x and y
    (uniform integers), or None when max_shift is 0."""
    if max_shift == 0:
        return None
    side = image_side(input_size, encoding.planes)
    background = jnp.asarray(encoding(np.zeros((1,), np.uint8)))  # [planes]: a black pixel
    padded_side = side + 2 * max_shift

    def shift(inputs: jax.Array, key: jax.Array) -> jax.Array:
        batch = inputs.shape[0]
        images = inputs.reshape(batch, encoding.planes, side, side)
        canvas = jnp.broadcast_to(background[None, :, None, None], (batch, encoding.planes, padded_side, padded_side))
        canvas = canvas.at[:, :, max_shift : max_shift + side, max_shift : max_shift + side].set(images)
        offsets = jax.random.randint(key, (batch, 2), 0, 2 * max_shift + 1)
        crop = lambda image, offset: jax.lax.dynamic_slice(image, (0, offset[0], offset[1]), (encoding.planes, side, side))
        return jax.vmap(crop)(canvas, offsets).reshape(batch, -1)

    return shift
