"""Turn any BERT-like ``nn.Module`` into a traceable module with a known I/O contract.

The exporters need positional inputs and a flat tuple of tensors; users' models take
keyword arguments and return tensors, tuples, dicts or ``ModelOutput`` objects. The
wrapper maps between the two, and ``derive_io`` reads the contract off the model:
inputs from the forward signature, outputs (and which axes are dynamic) from two
probe calls at different batch and sequence sizes.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import UserInputError
from ..spec import BATCH_AXIS, BERT_INPUTS, SEQUENCE_AXIS, OutputSpec


def forward_inputs(module: Any) -> tuple[str, ...]:
    """BERT input names in forward order; other required parameters are an error."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError) as e:
        raise UserInputError(f"cannot read the forward signature of {type(module).__name__}: {e}") from None
    names: list[str] = []
    for p in params.values():
        if p.name in BERT_INPUTS:
            names.append(p.name)
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        elif p.default is inspect.Parameter.empty:
            raise UserInputError(
                f"{type(module).__name__}.forward requires '{p.name}', which is not a BERT input",
                hint=f"forward may take only {', '.join(BERT_INPUTS)} (others need a default)",
            )
    if "input_ids" not in names:
        raise UserInputError(
            f"{type(module).__name__}.forward takes {list(params)}, with no input_ids",
            hint=f"a BERT forward takes input_ids and optionally {', '.join(BERT_INPUTS[1:])}",
        )
    return tuple(names)


def flatten_outputs(result: Any) -> list[tuple[str, Any]]:
    """Name the tensors a forward returned: dict keys / ModelOutput fields, else output_i."""
    import torch

    if isinstance(result, torch.Tensor):
        return [("output_0", result)]
    if isinstance(result, dict) or hasattr(result, "keys") and hasattr(result, "__getitem__"):
        return [(str(k), result[k]) for k in result.keys() if isinstance(result[k], torch.Tensor)]
    if isinstance(result, (tuple, list)):
        return [(f"output_{i}", v) for i, v in enumerate(result) if isinstance(v, torch.Tensor)]
    return []


def make_wrapper(model: Any, input_names: tuple[str, ...], output_names: tuple[str, ...], call_kwargs: dict | None = None):
    """An ``nn.Module`` taking the inputs positionally, by name, and returning a tuple.

    forward gets an explicit signature (not ``*args``) because torch.export matches
    ``dynamic_shapes`` against the parameters by name.
    """
    import torch

    def _run(self, *args: torch.Tensor):
        kwargs = dict(zip(input_names, args))
        kwargs.update(call_kwargs or {})
        named = dict(flatten_outputs(self.model(**kwargs)))
        return tuple(named[n] for n in output_names)

    params = ", ".join(input_names)
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {params}):\n    return self._run({params})\n", namespace)  # noqa: S102 - names are checked BERT inputs

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)
        self.model = model

    cls = type(f"Export_{type(model).__name__}", (torch.nn.Module,), {
        "__init__": __init__, "_run": _run, "forward": namespace["forward"],
    })
    return cls().eval()


def _probe_inputs(input_names: tuple[str, ...], batch: int, seq: int, vocab_size: int):
    import torch

    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(min(5, vocab_size - 1), vocab_size, (batch, seq), generator=g)
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return {n: feeds[n] for n in input_names}


def derive_outputs(
    model: Any, input_names: tuple[str, ...], vocab_size: int, call_kwargs: dict | None = None
) -> tuple[OutputSpec, ...]:
    """Run forward at (2, 8) and (3, 11) and label each output dimension."""
    import torch

    shapes = ((2, 8), (3, 11))
    runs = []
    with torch.no_grad():
        for batch, seq in shapes:
            try:
                result = model(**_probe_inputs(input_names, batch, seq, vocab_size), **(call_kwargs or {}))
            except Exception as e:  # the user's forward failed: report it as input error
                raise UserInputError(
                    f"{type(model).__name__}.forward failed on a probe batch ({batch}x{seq}): {type(e).__name__}: {e}",
                    hint="check that the model runs on input_ids of shape (batch, sequence)",
                ) from e
            runs.append(flatten_outputs(result))
    first, second = runs
    if not first:
        raise UserInputError(
            f"{type(model).__name__}.forward returned {type(result).__name__}, with no tensors",
            hint="forward must return a tensor, a tuple of tensors, a dict of tensors or a ModelOutput",
        )
    outputs = []
    for (name, a), (_, b) in zip(first, second):
        if a.dim() != b.dim():
            raise UserInputError(f"output {name} changes rank with the input shape ({a.dim()} vs {b.dim()})")
        axes: list[str | None] = []
        for i, (da, db) in enumerate(zip(a.shape, b.shape)):
            if (da, db) == (shapes[0][0], shapes[1][0]):
                axes.append(BATCH_AXIS)
            elif (da, db) == (shapes[0][1], shapes[1][1]):
                axes.append(SEQUENCE_AXIS)
            elif da == db:
                axes.append(None)
            else:
                axes.append(f"{name}_dim{i}")
        outputs.append(OutputSpec(name, tuple(axes)))
    return tuple(outputs)
