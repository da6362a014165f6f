"""The sigmoid exactly as TensorFlow computes it on a tensor too small for a SIMD packet, at any tensor size.

Eigen evaluates elementwise ops in SIMD packets (8 floats with AVX) and the last `size % 8` elements
one at a time, and the two paths of `Sigmoid` differ: packets use a polynomial exp, single elements
glibc's `expf`, then e / (1 + e); `SigmoidGrad` also associates its product differently. A standalone
XOR run (4 outputs per step) only ever takes the single-element path, a stack of 1000 copies almost
only the packet one, and those last-bit differences grow to 1e-3 over 1000 Adam epochs. Nothing in
TensorFlow or Keras exposes the single-element path for a large tensor, so it is reproduced here:
glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, whose double-precision steps TF float64 ops repeat
bit for bit) and Eigen's scalar formulas, selected per element where a standalone run would use them.
"""

from __future__ import annotations

import functools
from decimal import Decimal

import numpy as np
import tensorflow as tf

# glibc's __exp2f_data table: 2^(i/32), correctly rounded to float64 (its 32 hex constants, computed here exactly).
TWO_TO_I_32 = np.array([float(Decimal(2) ** (Decimal(i) / 32)) for i in range(32)])
N = 32
INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * N
C0 = float.fromhex("0x1.c6af84b912394p-5") / N / N / N
C1 = float.fromhex("0x1.ebfce50fac4f3p-3") / N / N
C2 = float.fromhex("0x1.62e42ff0c52d6p-1") / N
EXP_HI = 16.6355324  # Eigen clamps the logistic's input here: exp(x)/(1+exp(x)) is 1 in float32 above it


def glibc_expf(x: tf.Tensor) -> tf.Tensor:
    """expf(x) as glibc computes it: x*32/ln2 = k + r, 2^(k/32) from the table, a cubic in r, in float64."""
    xd = tf.cast(tf.clip_by_value(x, -110.0, 88.0), tf.float64)  # beyond: 0 (flushed) or no sigmoid input
    z = INV_LN2_N * xd
    k = tf.round(z)  # ties to even, as glibc's shift trick
    r = z - k
    i = tf.math.floormod(k, 32.0)
    power = tf.bitcast(tf.bitwise.left_shift(tf.cast((k - i) / 32.0, tf.int64) + 1023, 52), tf.float64)
    s = tf.gather(tf.constant(TWO_TO_I_32), tf.cast(i, tf.int32)) * power
    y = (C0 * r + C1) * (r * r) + (C2 * r + 1.0)
    return tf.cast(y * s, tf.float32)


@tf.custom_gradient
def scalar_sigmoid(z: tf.Tensor):
    """Eigen's single-element sigmoid e/(1+e), e = expf(min(z, hi)); gradient (dy*y)*(1-y) as its scalar path."""
    e = glibc_expf(tf.minimum(z, EXP_HI))
    y = tf.where(tf.math.is_nan(z), z, e / (1.0 + e))
    return y, lambda dy: (dy * y) * (1.0 - y)


@functools.cache
def packet_size() -> int:
    """Elements per SIMD packet of TF's Sigmoid kernel on this machine (1 if its two paths agree)."""
    with tf.init_scope():  # eager even when first asked while a graph is traced
        probe = tf.constant(np.linspace(-7.0, 7.0, 64, dtype=np.float32))
        for size in (2, 4, 8, 16, 32, 64):
            if not np.array_equal(tf.sigmoid(probe[:size]).numpy(), scalar_sigmoid(probe[:size]).numpy()):
                return size
    return 1


@tf.autograph.experimental.do_not_convert  # its branches depend on shapes only
def standalone_sigmoid(z: tf.Tensor) -> tf.Tensor:
    """Sigmoid of stacked copies [copies, batch, units], each element computed as a run of one copy would.

    A copy's tensor has batch*units elements; its last (batch*units) % packet take the single-element
    path in a standalone run, the others the packet path.
    """
    if z.shape[0] == 1:  # one copy: the very tensor a standalone run has, so TensorFlow's own sigmoid is exact
        return tf.sigmoid(z)
    packet = packet_size()
    static = z.shape[1] is not None and z.shape[2] is not None
    per_copy = z.shape[1] * z.shape[2] if static else tf.shape(z)[1] * tf.shape(z)[2]  # mini-batches: dynamic
    vectorized = per_copy - per_copy % packet
    if static and vectorized == per_copy:
        return tf.sigmoid(z)
    if static and vectorized == 0:
        return scalar_sigmoid(z)
    flat = tf.reshape(z, [-1])
    size = tf.size(flat)
    packets = tf.sigmoid(tf.pad(flat, [[0, -size % packet]]))[:size]  # padded: the stack's own tail takes packets too
    position = tf.range(size) % per_copy
    return tf.reshape(tf.where(position < vectorized, packets, scalar_sigmoid(flat)), tf.shape(z))
