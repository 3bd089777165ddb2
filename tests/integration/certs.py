"""Throwaway certificates for the TLS tests, made with the openssl command.

`Pki(dir)` makes a CA, a server certificate for 127.0.0.1/localhost signed by
it, and on demand client certificates whose common name is a device name —
signed by the CA, or by a second CA the broker does not trust.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    def __init__(self, directory: Path):
        self.dir = directory.resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert, self.ca_key = self._ca("ca", "Tributary test CA")
        self.rogue_ca_cert, self.rogue_ca_key = self._ca("rogue-ca", "Untrusted CA")
        self.server_cert, self.server_key = self._leaf(
            "server", "localhost", self.ca_cert, self.ca_key,
            extensions="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def client(self, device: str, trusted: bool = True) -> tuple[Path, Path]:
        """A client certificate naming `device`: (cert, key) paths."""
        ca_cert, ca_key = (self.ca_cert, self.ca_key) if trusted else (self.rogue_ca_cert, self.rogue_ca_key)
        name = f"client-{device}-{'trusted' if trusted else 'rogue'}"
        return self._leaf(name, device, ca_cert, ca_key, extensions="extendedKeyUsage=clientAuth\n")

    def _ca(self, name: str, subject: str) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={subject}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return cert, key

    def _leaf(self, name: str, common_name: str, ca_cert: Path, ca_key: Path,
              extensions: str) -> tuple[Path, Path]:
        cert, key, csr = (self.dir / f"{name}.crt", self.dir / f"{name}.key", self.dir / f"{name}.csr")
        ext = self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\n" + extensions)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}", cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=self.dir)
        return cert, key
