"""Ray actors (EndpointShard, driver). The only package that imports ray; filled by the
"Distributed test runs" issue."""
