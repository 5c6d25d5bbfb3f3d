"""The audit checkpoint witness: a small signer on its own Unix socket."""
