"""The hand-written backprop tutorial: 3-5-1 sigmoid on XOR with a ones column, no biases, 5000 iterations."""

import numpy as np


def run(SEED: int) -> dict:
    np.random.seed(SEED)

    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    y = np.array([[0, 1, 1, 0]]).T

    syn0 = np.random.random((3, 5))
    syn1 = np.random.random((5, 1))
    initial = [syn0.copy(), syn1.copy()]

    for j in range(5000):  # noqa: B007
        l1 = 1 / (1 + np.exp(-(np.dot(X, syn0))))
        l2 = 1 / (1 + np.exp(-(np.dot(l1, syn1))))
        l2_delta = (y - l2) * (l2 * (1 - l2))
        l1_delta = l2_delta.dot(syn1.T) * (l1 * (1 - l1))
        syn1 += l1.T.dot(l2_delta)
        syn0 += X.T.dot(l1_delta)

    print(l2)
    return {"initial": initial, "outputs": l2, "final": [syn0, syn1]}  # l2: before the last update
