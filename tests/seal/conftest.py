"""The `softhsm` fixture: a SoftHSM2 token store of the test's own under tmp_path (never /var/lib/softhsm),
holding one token labelled "vaultd" with user pin 1234 and SO pin 5678.

SoftHSM2 reads SOFTHSM2_CONF at C_Initialize, so the fixture sets it in os.environ (monkeypatch) for in-process
wrappers, which re-initialise the library on first use; a child process gets it from `softhsm.env`.
"""

import dataclasses
import os
import pathlib
import shutil

import pytest

from vaultd import devcluster
from vaultd.config import SealConfig

lib_path = devcluster.softhsm_lib
token_label, user_pin, so_pin = "vaultd", "1234", "5678"
pin_env = "VAULTD_HSM_PIN"


@dataclasses.dataclass(frozen=True)
class SoftHsm:
    conf: pathlib.Path  # the SOFTHSM2_CONF
    token_dir: pathlib.Path
    env: dict[str, str]  # SOFTHSM2_CONF and VAULTD_HSM_PIN, for a child process or a wrapper's `environ`
    lib: str = lib_path

    def seal_config(self, **overrides) -> SealConfig:
        """A pkcs11 SealConfig for this token: pin from VAULTD_HSM_PIN, key "vaultd-unseal", generate_key."""
        fields = {"type": "pkcs11", "lib": self.lib, "token_label": token_label, "pin_env": pin_env,
                  "key_label": "vaultd-unseal", "generate_key": True, **overrides}
        return SealConfig(**fields)


@pytest.fixture
def softhsm(tmp_path, monkeypatch) -> SoftHsm:
    if shutil.which("softhsm2-util") is None or not os.path.exists(lib_path):
        pytest.fail("softhsm2 is not installed; the seal tests use a real SoftHSM2 token (apt-get install softhsm2, "
                    "or `make system-packages` as root)")
    conf, token_dir = tmp_path / "softhsm2.conf", tmp_path / "softhsm-tokens"
    token_dir.mkdir(mode=0o700)
    devcluster.write_softhsm_conf(conf, token_dir)
    devcluster.init_softhsm_token(conf, token_label, user_pin, so_pin)
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    return SoftHsm(conf=conf, token_dir=token_dir, env={"SOFTHSM2_CONF": str(conf), pin_env: user_pin})
