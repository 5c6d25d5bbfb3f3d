"""kmscore: a self-hosted key management service modeled on AWS KMS."""

__version__ = "0.1.0"
