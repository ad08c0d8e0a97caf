"""The only code that imports Ray: the endpoint shard actor, the run driver, the cluster link.

Importing this package first sets the environment that keeps a local Ray on loopback and
quiet (some of it is read when ``ray`` is imported, so it must come before): usage stats off,
token auth off, every port bound and advertised on 127.0.0.1 (PEERS.md, "Ray on this
machine"). Values already in the environment win.
"""

import os

LOCAL_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}
for _key, _value in LOCAL_ENV.items():
    os.environ.setdefault(_key, _value)
