"""The config as sections of Field data (issue #24): each field declared once by the layer that
owns it, no torch to read a config, ``run --help`` from the data, the digest covering what can
change a number, and old run folders still opening."""
import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from fewshot.base.errors import ConfigError
from fewshot.run.config import (FIELDS, RUNTIME_FIELDS, SECTIONS, RunConfig, config_digest, describe_fields,
                                read_config)

SECTION_MODULES = ["fewshot.base.fields", "fewshot.data.data_config", "fewshot.models.model_config",
                   "fewshot.features.feature_config", "fewshot.protocol.protocol_config",
                   "fewshot.protocol.method_config", "fewshot.training.training_config",
                   "fewshot.merging.merge_config", "fewshot.run.runtime_config", "fewshot.run.config"]
NEW_FIELDS = {"coop_lr": 2e-3, "coop_batch_size": 32, "clip_adapter_epochs": 50, "clip_adapter_lr": 2e-3,
              "clap_epochs": 300, "clap_lr": 0.1, "taskres_lr": 2e-4, "ape_t_epochs": 20, "ape_t_lr": 1e-4,
              "lp_pp_epochs": 300}


def test_every_field_is_declared_in_exactly_one_section():
    from fewshot.data import data_config
    from fewshot.features import feature_config
    from fewshot.merging import merge_config
    from fewshot.models import model_config
    from fewshot.protocol import method_config, protocol_config
    from fewshot.run import runtime_config
    from fewshot.training import training_config

    declared = [f.name for m in (data_config, model_config, feature_config, protocol_config, method_config,
                                 training_config, merge_config, runtime_config) for f in m.FIELDS]
    assert len(declared) == len(set(declared)), sorted(n for n in declared if declared.count(n) > 1)
    names = [f.name for fields in SECTIONS.values() for f in fields]
    assert sorted(names) == sorted(declared) == sorted(f.name for f in dataclasses.fields(RunConfig)) == sorted(FIELDS)
    assert all(title and all(f.section == title for f in fields) for title, fields in SECTIONS.items())
    assert all(f.help.strip() for f in FIELDS.values())


@pytest.mark.parametrize("module", SECTION_MODULES)
def test_a_section_module_imports_no_torch_clip_or_numpy(module):
    code = (f"import sys, {module}; from fewshot.run.config import RunConfig; RunConfig(); "
            f"print(sorted(m for m in ('torch', 'clip', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{module} imported {done.stdout.strip()}"


def test_describe_fields_lists_every_field_with_its_help_under_its_section():
    text = describe_fields()
    for title, fields in SECTIONS.items():
        assert f" {title}:" in text.splitlines()
        for f in fields:
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            assert f"  {f.name} = {json.dumps(default)}: {f.help}" in text.splitlines()
    assert "Tip-Adapter-F epochs" in text and "Tip-Adapter-F AdamW learning rate" in text


def test_the_new_method_fields_default_to_the_published_constants():
    cfg = RunConfig()
    assert {k: getattr(cfg, k) for k in NEW_FIELDS} == NEW_FIELDS
    assert (cfg.epochs, cfg.lr, cfg.train_batch_size, cfg.coop_epochs) == (20, 1e-3, 256, 50)
    with pytest.raises(ConfigError, match="config field 'coop_lr' must be a finite number > 0.0"):
        RunConfig(coop_lr=0)


def test_runtime_fields_are_the_old_ones_but_decode():
    assert RUNTIME_FIELDS == {"out", "report_dir", "cache_dir", "download_root", "device", "batch_size",
                              "num_workers", "progress", "methods", "grad_checkpointing", "time_budget",
                              "report_method"}


def test_decode_and_the_device_type_change_the_digest_and_device_alone_does_not():
    cfg = RunConfig()
    assert config_digest(cfg.replace(decode="pil")) != config_digest(cfg) != config_digest(cfg.replace(decode="gpu"))
    assert config_digest(cfg.replace(device="cuda:1")) == config_digest(cfg.replace(device="cpu")) == config_digest(cfg)
    assert config_digest(cfg, "cuda") != config_digest(cfg, "cpu")  # fp16 cache products, autocast, decode=auto


def test_records_carry_the_precision_their_device_type_sets():
    from fewshot.protocol.method import Context, cache_dtype_for, precision_fields

    assert precision_fields("cpu") == {"device_type": "cpu", "cache_dtype": "float32"}
    assert precision_fields(torch.device("cuda", 1)) == {"device_type": "cuda", "cache_dtype": "float16"}
    assert cache_dtype_for("cpu") is None and cache_dtype_for("cuda:0") is torch.float16
    ctx = Context(torch.zeros(2, 3), 1.0, RunConfig(), torch.device("cpu"))
    assert ctx.cache_dtype is None


def test_a_config_json_without_the_new_fields_still_opens(tmp_path):
    from fewshot.run.rundir import RunDir

    old = {k: v for k, v in RunConfig(coop_epochs=3).to_dict().items() if k not in NEW_FIELDS}
    (tmp_path / "config.json").write_text(json.dumps(old), encoding="utf-8")
    cfg = RunDir(tmp_path).read_config()
    assert cfg == read_config(tmp_path / "config.json") == RunConfig(coop_epochs=3)
    assert cfg.coop_lr == 2e-3 and cfg.lp_pp_epochs == 300
    assert RunDir(tmp_path).digest == config_digest(cfg)  # no records yet: made on "cpu"


def _lp_data(c=3, per_class=4, d=8):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(c).repeat_interleave(per_class)
    shots = SimpleNamespace(views=torch.randn(2, len(labels), d, generator=g), labels=labels, shots=per_class,
                            seed=1, num_classes=c)
    text = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=-1)
    return shots, text


def test_a_method_reads_its_new_field_from_the_config():
    """LP++ trains ``cfg.lp_pp_epochs`` epochs (300 without a config, as published)."""
    from fewshot.methods import lp_plus_plus

    shots, text = _lp_data()
    short = lp_plus_plus.fit(shots, SimpleNamespace(text_weights=text, logit_scale=10.0, progress=False,
                                                    cfg=RunConfig(lp_pp_epochs=20)))
    full = lp_plus_plus.fit(shots, SimpleNamespace(text_weights=text, logit_scale=10.0, progress=False))
    assert short.hyperparameters["epochs"] == 20 and full.hyperparameters["epochs"] == 300
    assert [h["epoch"] for h in short.extra["history"]] == [10, 20]
    assert not torch.equal(short.state["wv"], full.state["wv"])


def test_coop_reads_its_rate_and_batch_from_the_config():
    from fewshot.methods import coop

    ctx = SimpleNamespace(cfg=RunConfig(coop_epochs=2, coop_lr=0.01, coop_batch_size=8))
    assert coop._recipe(ctx) == (2, 0.01, 8)
    assert coop._recipe(SimpleNamespace()) == (50, 2e-3, 32)
