"""``python -m kmscore.bench``: the same command as ``kms bench``."""

from kmscore.bench.cli import main

if __name__ == "__main__":
    main()
