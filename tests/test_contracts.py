"""The tensor contracts table is the single source of the Triton configs."""

from __future__ import annotations

from sotai.contracts import PIPELINE_CONTRACTS, SOTAI, render_config
from sotai.export.repository import SOURCE_REPOSITORY


def test_committed_configs_are_the_rendered_contracts():
    for name, contract in PIPELINE_CONTRACTS.items():
        committed = (SOURCE_REPOSITORY / name / "config.pbtxt").read_text()
        assert committed == render_config(contract), (
            f"model_repository/{name}/config.pbtxt is stale: run "
            "`python -c 'from sotai.export.repository import *; write_pipeline_configs(SOURCE_REPOSITORY)'`")


def test_the_ensemble_feeds_every_step_input_from_a_known_tensor():
    available = {t.name for t in SOTAI.inputs}
    for model, inputs, outputs in SOTAI.steps:
        step = PIPELINE_CONTRACTS[model]
        required = {t.name for t in step.inputs if not t.optional}
        assert required <= set(inputs), f"{model} misses {required - set(inputs)}"
        assert set(inputs.values()) <= available, f"{model} reads a tensor produced later"
        available |= set(outputs.values())
    assert {t.name for t in SOTAI.outputs} <= available


def test_one_dtype_table_serves_configs_numpy_and_the_wire():
    import numpy as np
    import pytest

    from sotai.dtypes import NUMPY_NAMES, numpy_type, triton_dtype_of, wire_dtype

    for triton in NUMPY_NAMES:
        assert triton_dtype_of(np.zeros(1, dtype=numpy_type(triton)).dtype) == triton
        assert numpy_type("TYPE_" + triton) is numpy_type(triton)
    assert (wire_dtype("TYPE_STRING"), wire_dtype("FP16"), numpy_type("STRING")) == ("BYTES", "FP16", np.object_)
    with pytest.raises(TypeError, match="float64 has no Triton tensor type"):
        triton_dtype_of(np.float64)
