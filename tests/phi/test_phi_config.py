"""PHiConfig validation: bad values name their field; `build` turns them into one-line QPhiErrors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qphi import PHiConfig, QPhiError
from qphi.bottlenecks import registry
from qphi.configuration import build

# (the options, where the error is reported as the user reads it, what it says)
INVALID = [
    ({"codebook_size": 1}, "codebook_size", "greater than or equal to 2"),
    ({"bottleneck": "fsq", "fsq_levels": [4, 1]}, "fsq_levels", ">= 2"),
    ({"bottleneck": "fsq", "fsq_levels": []}, "fsq_levels", "non-empty"),
    ({"d_model": 12, "prior": {"n_heads": 5}}, "prior", "divisible by n_heads=5"),
    ({"prior": {"width": 12, "n_heads": 4}}, "prior", "must be even"),
    ({"bottleneck": "continuous", "logvar_min": 2.0, "logvar_max": 1.0}, "bottleneck", "above logvar_min"),
    ({"bottleneck": "gumble"}, "bottleneck", "unknown bottleneck 'gumble' (did you mean 'gumbel'?): choose one of"),
    ({"codebok_size": 8}, "codebok_size", "Extra inputs"),
    ({"loss": {"detach_target": True}}, "loss.detach_target", "Extra inputs"),
    # an option of another bottleneck is refused, naming the bottlenecks it belongs to
    (
        {"bottleneck": "fsq", "codebook_size": 256},
        "",
        "an option of the gumbel, vq and residual bottlenecks, not of fsq",
    ),
    ({"bottleneck": "continuous", "gumbel_logit_init": 2.0}, "", "an option of the gumbel and residual bottlenecks"),
    ({"bottleneck": "gumbel", "vq": {"ema_decay": 0.9}}, "", "an option of the vq and residual bottlenecks"),
    ({"bottleneck": "residual", "vq": {"ema_decay": 0.9}}, "bottleneck", "not an option of gumbel stages"),
    ({"bottleneck": "residual", "residual_quantizer": "vq", "rate": "kl"}, "bottleneck", "not an option of vq"),
    ({"bottleneck": {"name": "vq", "gumbel_logit_init": 2.0}}, "gumbel_logit_init", "Extra inputs"),
]


@pytest.mark.parametrize(("data", "where", "message"), INVALID)
def test_invalid_values_raise_one_validation_error_saying_what_is_wrong(data, where, message):
    with pytest.raises(ValidationError) as info:
        PHiConfig(**{"d_model": 16, **data})
    errors = info.value.errors()
    assert len(errors) == 1
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(("data", "where", "message"), INVALID)
def test_build_reports_each_problem_on_one_line_naming_the_key(data, where, message):
    with pytest.raises(QPhiError) as info:
        build(PHiConfig, {"d_model": 16, **data})
    text = str(info.value)
    assert "\n" not in text
    assert message in text or "Extra inputs" in message
    assert f"'{where}'" in text if where else text.startswith("invalid config: '")


@pytest.mark.parametrize("name", registry.names())
def test_every_bottleneck_takes_its_options_flat_nested_or_as_a_config(name):
    cls = registry.config_class(name)
    default = cls()
    options = {k: v for k, v in default.model_dump().items() if k != "name"}
    flat = PHiConfig(d_model=16, bottleneck=name, **options)
    nested = PHiConfig(d_model=16, bottleneck={"name": name, **options})
    typed = PHiConfig(d_model=16, bottleneck=default)
    assert flat == nested == typed and isinstance(flat.bottleneck, cls)
    assert PHiConfig.model_validate(flat.model_dump()) == flat  # a saved config loads back


def test_a_flat_option_changes_a_given_bottleneck_config():
    config = PHiConfig(d_model=16, bottleneck=registry.config_class("vq")(codebook_size=8), latent_dim=4)
    assert config.stage_sizes == (8,) and config.code_dim == 4


@pytest.mark.parametrize(
    ("data", "suggestion"),
    [
        ({"codebok_size": 8}, "did you mean 'codebook_size'?"),
        ({"fsq_level": [8, 5]}, "did you mean 'fsq_levels'?"),
        ({"loss": {"detach_target": True}}, "did you mean 'detach_targets'?"),
        ({"prior": {"n_head": 2}}, "did you mean 'n_heads'?"),
    ],
)
def test_typos_get_the_closest_key_suggested(data, suggestion):
    with pytest.raises(QPhiError, match="unknown key") as info:
        build(PHiConfig, {"d_model": 16, **data})
    assert suggestion in str(info.value)


def test_valid_configs_build_and_are_immutable():
    config = build(PHiConfig, {"d_model": 64, "bottleneck": "residual", "num_stages": 3, "codebook_size": 32})
    assert config.stage_sizes == (32, 32, 32)
    with pytest.raises(ValidationError):
        config.d_model = 4
    with pytest.raises(ValidationError):
        config.bottleneck.codebook_size = 4
    with pytest.raises(QPhiError, match="codebook_size"):
        config.replace(codebook_size=1)
    assert config.replace(codebook_size=16).stage_sizes == (16, 16, 16)


@pytest.mark.parametrize(
    ("data", "code_dim", "stage_sizes"),
    [
        ({"bottleneck": "continuous"}, 96, ()),
        ({"bottleneck": "continuous", "latent_dim": 8}, 8, ()),
        ({"bottleneck": "gumbel", "codebook_size": 32}, 64, (32,)),
        ({"bottleneck": "vq", "latent_dim": 16}, 16, (64,)),
        ({"bottleneck": "fsq", "fsq_levels": [8, 5, 5]}, 3, (8, 5, 5)),
        ({"bottleneck": "fsq", "fsq_levels": [8, 5, 5], "fsq_prior": "joint"}, 3, (200,)),
    ],
)
def test_derived_sizes(data, code_dim, stage_sizes):
    config = PHiConfig(d_model=96, **data)
    assert config.code_dim == code_dim
    assert config.stage_sizes == stage_sizes


def test_prior_width_is_checked_once_d_model_is_known():
    deferred = PHiConfig(prior={"n_heads": 5})  # d_model is filled in later by the model builder
    with pytest.raises(QPhiError, match="'prior': the prior's width 12 must be divisible by n_heads=5"):
        deferred.replace(d_model=12)
    with pytest.raises(ValidationError, match="divisible by n_heads=5"):
        PHiConfig(prior={"width": 12, "n_heads": 5})  # an explicit width is checked at once
    assert deferred.replace(d_model=20).prior_width == 20
