"""What clients and frontends share, with nothing of the server behind it.

:mod:`kmscore.wire.operations` is the table of every operation name;
:mod:`kmscore.wire.rpc` the msgpack-RPC frames of the socket daemon, used by
both the daemon and :mod:`kmscore.client.remote`.
"""
