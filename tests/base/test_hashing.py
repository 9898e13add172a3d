"""Config hashes without torch: sha256 of the canonical config, named in one module."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from fsmrun.base.hashing import ConfigHasher, canonical_json, config_hash
from fsmrun.experiments import load_experiment


def test_canonical_json_sorts_keys_without_spaces():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_config_hash_is_sha256_of_the_config_without_unhashed_fields():
    exp = load_experiment("parity")
    doc = exp.model_dump(mode="json")
    del doc["name"], doc["description"]
    for key in ("save_every", "log_every", "capture_epochs", "capture_batch_size"):
        del doc["train"][key]
    assert config_hash(exp) == hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def test_hashing_a_config_imports_no_torch():
    code = (
        "import sys; from fsmrun.base.hashing import config_hash; "
        "from fsmrun.experiments import load_experiment; "
        "config_hash(load_experiment('parity')); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_hasher_of_many_configs_gives_config_hash_for_each_seed():
    hasher = ConfigHasher()
    parity, tomita = load_experiment("parity"), load_experiment("tomita3")
    wider = parity.model.model_copy(update={"d_model": parity.model.d_model * 2})
    wide = parity.model_copy(update={"model": wider})
    for exp in (parity, tomita, wide, parity):  # parity twice: its sections' texts are reused
        seeds = [0, 7, 12345]
        expected = [config_hash(exp.model_copy(update={"seed": s})) for s in seeds]
        assert hasher.seeded(exp, seeds) == expected
        assert hasher(exp) == config_hash(exp)
    assert len(set(hasher.seeded(parity, [0, 1]) + hasher.seeded(wide, [0, 1]))) == 4
