import os
import stat

import pytest

from debuggable.errors import DebuggableError
from debuggable.studies import TokenSigner, load_or_create_secret


def test_tokens_verify_only_with_the_same_secret(tmp_path):
    secret = load_or_create_secret(tmp_path / "secret.key")
    assert stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode) == 0o600
    assert load_or_create_secret(tmp_path / "secret.key") == secret
    signer = TokenSigner(secret)
    token = signer.annotator_token("toy-001")
    assert signer.verify_annotator(token) == "toy-001"
    assert len(token.rpartition(".")[2]) == 32  # 192 bits
    other = TokenSigner(os.urandom(32))
    assert other.verify_annotator(token) is None
    forged = "toy-002." + token.rpartition(".")[2]
    assert signer.verify_annotator(forged) is None
    for bad in ("", ".", "toy-001", "toy-001.", "x" * 500, token[:-1]):
        assert signer.verify_annotator(bad) is None
    assert signer.verify_admin(signer.admin_token())
    assert not signer.verify_admin(token) and not other.verify_admin(signer.admin_token())


def test_a_damaged_secret_is_one_sentence(tmp_path):
    (tmp_path / "secret.key").write_bytes(b"short")
    with pytest.raises(DebuggableError, match="is not a study secret"):
        load_or_create_secret(tmp_path / "secret.key")
