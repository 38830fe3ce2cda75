"""Repository-wide pytest set-up.

A plain ``pytest`` runs the unit tests in ``tests/`` and, through nbmake, every
notebook in ``notebooks/`` (see ``[tool.pytest.ini_options]`` in pyproject.toml).
Notebooks choose their size from the environment variable ``DDPM_RUN``, and
without it they would pick ``full`` on a GPU machine or ``cpu`` otherwise: a
15- to 20-minute training run per notebook. The tests are meant to run the
``ci`` preset instead, a real but tiny run of about two minutes per notebook.

nbmake starts each notebook's kernel as a child process of pytest, and child
processes inherit pytest's environment, so setting the variable here, when
pytest loads this file and before any kernel starts, is enough. ``setdefault``
keeps an explicit choice: ``DDPM_RUN=cpu pytest notebooks`` still runs the
``cpu`` preset.
"""

import os

os.environ.setdefault("DDPM_RUN", "ci")
