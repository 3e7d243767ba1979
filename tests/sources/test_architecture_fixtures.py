"""The tiny architecture fixtures load back as the architecture they claim to be."""

from __future__ import annotations

import pytest

from tests.fixtures.architectures import ARCHITECTURES, architecture_inputs


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_architecture_loads_back(arch, tiny_architecture):
    import inspect

    import torch
    import transformers

    folder = tiny_architecture(arch)
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    assert config.model_type == arch
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    params = inspect.signature(model.forward).parameters
    assert ("token_type_ids" in params) == ("token_type_ids" in architecture_inputs(arch))
    ids = torch.tensor([[101, 2023, 2003, 102]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert out.shape == (1, 4, 64)
    assert (folder / "tokenizer.json").is_file()
