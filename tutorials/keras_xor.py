"""The Keras XOR tutorial: Dense(16, relu) + Dense(1, sigmoid), mse, adam, 1000 epochs."""

import keras
import numpy as np
from keras.layers import Dense
from keras.models import Sequential


def run(SEED: int, epochs: int = 1000) -> dict:
    keras.utils.set_random_seed(SEED)

    # the four input combinations of XOR, and their outputs
    training_data = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32")
    target_data = np.array([[0], [1], [1], [0]], "float32")

    model = Sequential()
    model.add(Dense(16, input_dim=2, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    initial = model.get_weights()

    model.compile(loss="mean_squared_error", optimizer="adam", metrics=["binary_accuracy"])
    history = model.fit(training_data, target_data, epochs=epochs, verbose=0)  # verbose=2 prints every epoch

    print(model.predict(training_data, verbose=0).round())
    return {"initial": initial, "history": history.history}
