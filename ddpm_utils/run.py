"""Run presets: one switch that sets every size in a notebook.

``DDPM_RUN`` ∈ {``full``, ``cpu``, ``ci``} picks the preset; unset, it is ``full`` when CUDA is
available and ``cpu`` otherwise.

- ``full``: what a Colab T4 GPU finishes in about 15 minutes per notebook;
- ``cpu``: 10 to 20 minutes per notebook on 2 CPU cores;
- ``ci``: about two minutes per notebook on 2 cores — a real, tiny training run that
  the test suite executes.

A notebook asks ``RUN.pick(full=…, cpu=…, ci=…)`` for each size, so the same code runs at
every size, and :func:`start_run` seeds torch's global generator and prints the header that says
what ran where. :func:`paste` hands a computed number to the book's text (myst-nb ``glue``), so
prose cannot disagree with the output beside it.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import TypeVar

import torch

PRESETS = ("full", "cpu", "ci")
T_ = TypeVar("T_")


@dataclass(frozen=True)
class Run:
    """The preset in force and the device the notebook computes on."""

    preset: str  # "full", "cpu" or "ci"
    device: torch.device  # where models and data live

    def pick(self, full: T_, cpu: T_, ci: T_) -> T_:
        """The value for the current preset."""
        return {"full": full, "cpu": cpu, "ci": ci}[self.preset]


def current_run(device: str | torch.device | None = None) -> Run:
    """Read ``DDPM_RUN`` (default: ``full`` with CUDA, else ``cpu``) and choose the device."""
    cuda = torch.cuda.is_available()
    preset = os.environ.get("DDPM_RUN", "").strip().lower() or ("full" if cuda else "cpu")
    if preset not in PRESETS:
        raise ValueError(f"DDPM_RUN must be one of {PRESETS}, got {os.environ.get('DDPM_RUN')!r}")
    return Run(preset, torch.device(device) if device is not None else torch.device("cuda" if cuda else "cpu"))


def describe_device(device: torch.device) -> str:
    """A short human description: GPU name, or CPU model and thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; elsewhere the architecture will do
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"CPU ({cpu}, {threads} thread{'s' if threads != 1 else ''})"


@dataclass
class RunReport:
    """The header a notebook shows first: preset, device, data source and wall time.

    In Jupyter the header is one display that :meth:`finish` updates in place, so the first
    output of a finished notebook gives its total wall time.
    """

    title: str
    run: Run
    data_source: str = "not loaded yet"
    started: float = field(default_factory=time.perf_counter)
    _handle: object = None

    def text(self, seconds: float | None = None) -> str:
        wall = f"{seconds / 60:.1f} min ({seconds:.0f} s)" if seconds is not None else "running…"
        return (
            f"{self.title}\n"
            f"  run preset : {self.run.preset}  (DDPM_RUN)\n"
            f"  device     : {describe_device(self.run.device)}, torch {torch.__version__}\n"
            f"  data       : {self.data_source}\n"
            f"  wall time  : {wall}"
        )

    def show(self, seconds: float | None = None) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            get_ipython = None
        if get_ipython is None or get_ipython() is None:
            print(self.text(seconds))
            return
        content = {"text/plain": self.text(seconds)}
        if self._handle is None:
            self._handle = display(content, raw=True, display_id=True)
        else:
            self._handle.update(content, raw=True)

    def set_data_source(self, source: str) -> None:
        self.data_source = source
        self.show()

    def finish(self) -> float:
        """Record the wall time in the header and return it in seconds."""
        seconds = time.perf_counter() - self.started
        self.show(seconds)
        return seconds


def start_run(title: str, device: str | torch.device | None = None, seed: int = 0) -> RunReport:
    """Choose the preset and device, seed torch's global generator, and show the run header.

    Args:
        title: the first line of the header.
        device: where the notebook computes; by default CUDA when available, else the CPU.
        seed: passed to ``torch.manual_seed`` (CPU and every CUDA device), so that every draw the
            notebook makes without its own ``torch.Generator`` (a network's initialisation, a
            ``torch.randn`` without ``generator=``) is the same at each run. This changes global
            state: code that needs its own stream passes a ``torch.Generator`` instead.

    Returns:
        The :class:`RunReport` whose header :meth:`~RunReport.set_data_source` and
        :meth:`~RunReport.finish` update.
    """
    torch.manual_seed(seed)
    report = RunReport(title, current_run(device))
    report.show()
    return report


def paste(name: str, value: T_) -> T_:
    """Record ``value`` under ``name`` for the book's ``glue:text`` roles, and return it.

    Through myst-nb's ``glue`` when it is installed (Jupyter Book, local runs); where it is not
    (Colab), the notebook runs on and the value is simply returned. Nothing is displayed. A numpy
    or torch scalar is turned into a plain Python number first, so that the book's format specs
    (``{glue:text}`name:.4f```) apply to it.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    try:
        from myst_nb import glue
    except ImportError:
        return value
    glue(name, value, display=False)
    return value
