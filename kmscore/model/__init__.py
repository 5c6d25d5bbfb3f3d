"""Pure values of the KMS.

ARNs, keys and their states and specs, encryption contexts, ciphertext blobs,
request shapes, grants, principals and callers. Nothing here touches a store,
a file or the engine.
"""
