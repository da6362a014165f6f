"""The playground: a local web page where a knob changes a net and the boundary forms live, every try an MLflow run.

`state` turns the page's URL into the command line's overrides, `session` trains one try at a time through
`stages.train.train` (the project's own engine and tracking), `frames` draws what the page shows of it, `save`
writes a try as a named experiment, `app` serves the page, its events and endpoints, and `server` starts it all
(`pipeline-playground`).
"""
