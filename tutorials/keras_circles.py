"""The make_circles tutorial: Dense(4, tanh) + Dense(1, sigmoid), SGD lr 0.5, binary cross-entropy, 15 epochs."""

import keras
from keras.layers import Dense
from keras.models import Sequential
from keras.optimizers import SGD
from sklearn.datasets import make_circles


def run(SEED: int, epochs: int = 15) -> dict:
    keras.utils.set_random_seed(SEED)

    X, y = make_circles(n_samples=1000, noise=0.1, factor=0.2, random_state=0)

    model = Sequential()
    model.add(Dense(4, input_shape=(2,), activation="tanh"))
    model.add(Dense(1, activation="sigmoid"))
    initial = model.get_weights()
    model.compile(SGD(learning_rate=0.5), "binary_crossentropy", metrics=["accuracy"])  # Keras 3: lr -> learning_rate
    history = model.fit(X, y, epochs=epochs, verbose=0)  # verbose=1 printed "accuracy: 0.6390" after epoch 1
    return {"initial": initial, "history": history.history}
