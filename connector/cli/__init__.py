"""The operator CLI's commands beyond `peek`, `replay-poison` and `schema`: `tail`, `send`, `trigger`
and `status` (`python -m connector <command> --help`). `connector/__main__.py` only dispatches here.

Each command finds its target the same way (`target.py`): `--settings FILE` (a
`local.settings.json`-style file, Azure's settings too), else the `make run` going on this checkout
(its run file, `.devdata/run.json`), else the app settings in the environment. Expected failures
(storage or the host not answering, a missing settings file, a refused order) are one line naming
what to start or check (`errors.py`), never a traceback.
"""
