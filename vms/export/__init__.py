"""Police export packages: the request workflow, building and signing, offline verification.

`verify` needs nothing but the zip and the public key (no database, no settings), so recipients
without a running vms can check a package; everything else builds on the registry and retention
services.
"""
