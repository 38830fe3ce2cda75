"""Parameter counts, for the "how big is this model?" cells of the notebooks."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table(model: nn.Module) -> str:
    """A small text table of trainable parameters per top-level child module, and the total.

    Parameters registered directly on ``model`` (not inside a child) get a row ``(own)``; frozen
    parameters are left out of the counts and mentioned on a last line. Meant for ``print()``.
    """
    rows = [(name, count_parameters(child)) for name, child in model.named_children()]
    own = sum(p.numel() for p in model.parameters(recurse=False) if p.requires_grad)
    if own:
        rows.append(("(own)", own))
    total = count_parameters(model)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)

    width = max([len("module"), len("total")] + [len(name) for name, _ in rows])
    numbers = max(len("parameters"), len(f"{total:,}"))
    rule = "-" * (width + 2 + numbers)
    lines = [f"{'module':<{width}}  {'parameters':>{numbers}}", rule]
    lines += [f"{name:<{width}}  {count:>{numbers},}" for name, count in rows]
    lines += [rule, f"{'total':<{width}}  {total:>{numbers},}"]
    if frozen:
        lines.append(f"(plus {frozen:,} frozen parameters, not counted)")
    return "\n".join(lines)
