"""Everything that talks to MLflow: the store (`store`), runs (`runs`), models (`models`), the `watchdog`.

The stages import `runs` only when a run is tracked; nothing else in the package imports MLflow.
"""

PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"  # set by the sweep callback: runs started then are its children
