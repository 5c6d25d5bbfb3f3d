"""Frontends of kmscore, installed as ``kmscore.frontends``.

Each frontend decodes a request, identifies the caller, calls one operation and
encodes the answer.
"""
