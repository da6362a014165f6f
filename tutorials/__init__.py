"""The tutorials' own code, kept to compare the pipeline against: each module is one tutorial, its lines as
published, adapted only in imports (Keras 3's `keras.*`), Keras 3's renamed arguments, the seed line a
learner adds (`keras.utils.set_random_seed(SEED)` or `np.random.seed(SEED)`) and a function around it that
returns what the tutorial printed.
"""
