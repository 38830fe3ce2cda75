"""Benchmarks of the book's training step and samplers, side by side with the usual alternatives.

Run from the repository root::

    python -m benchmarks              # the preset for this machine: `full` with CUDA, else `cpu`
    python -m benchmarks --preset ci  # a tiny run of every case, for checking the code

Each case runs in a fresh Python process (so its peak memory is its own), prints one JSON line,
and the runner prints the tables and writes ``results/<preset>/results.json`` with one Markdown
file per table beside it;
the book's page "How fast is it?" includes the Markdown of the committed runs.

Modules: ``presets`` (sizes), ``textbook`` (the loop the package is compared with), ``cases``
(what is measured), ``report`` (tables), ``__main__`` (the runner).
"""
