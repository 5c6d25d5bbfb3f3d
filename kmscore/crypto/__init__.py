"""Cryptography beside the AES-GCM engine: the root key and asymmetric keys."""
