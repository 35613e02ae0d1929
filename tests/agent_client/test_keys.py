"""Agent keys: ids are NATS nkey user public keys; seed files are private.

Proves the id encoding agrees with the nkeys package, seeds round-trip,
seed files are written 0600 and never overwritten, and bad or exposed seed
files are refused with KeyFileError.
"""

import os
import stat

import nkeys
import pytest

from agent_client import AgentKeys, KeyFileError, is_agent_id


def test_agent_id_is_the_nkey_user_public_key():
    keys = AgentKeys.generate()
    assert keys.agent_id.startswith("U") and len(keys.agent_id) == 56
    assert nkeys.from_seed(keys.seed_text()).public_key.decode() == keys.agent_id
    assert is_agent_id(keys.agent_id)


def test_a_corrupted_agent_id_is_not_an_agent_id():
    agent_id = AgentKeys.generate().agent_id
    flipped = agent_id[:-1] + ("A" if agent_id[-1] != "A" else "B")
    assert not is_agent_id(flipped)
    assert not is_agent_id("U" + "A" * 55)
    assert not is_agent_id("not an id")


def test_seed_file_is_written_0600_and_loads_the_same_keys(tmp_path):
    keys = AgentKeys.generate()
    path = tmp_path / "agent.seed"
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AgentKeys.load(path).agent_id == keys.agent_id


def test_saving_never_overwrites_an_existing_seed(tmp_path):
    path = tmp_path / "agent.seed"
    AgentKeys.generate().save(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        AgentKeys.generate().save(path)
    assert path.read_bytes() == before


def test_a_seed_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "agent.seed"
    AgentKeys.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        AgentKeys.load(path)


@pytest.mark.parametrize("seed", ["", "SUNOTASEED", "x" * 500])
def test_garbage_seeds_are_refused(seed):
    with pytest.raises(KeyFileError):
        AgentKeys.from_seed(seed)


def test_an_account_seed_is_not_an_agent_seed():
    account_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(KeyFileError, match="user"):
        AgentKeys.from_seed(account_seed)


def test_repr_never_shows_the_seed():
    keys = AgentKeys.generate()
    assert keys.seed_text().decode() not in repr(keys)
