"""Frontends of kmscore: each decodes a request, identifies the caller, calls one
operation and encodes the answer. Installed as ``kmscore.frontends``."""
