"""Distributed builds: the same map and reduce steps as the local engine, run as tasks of an
existing cluster engine (Ray), writing the same format to shared storage.

- :mod:`grouparrow.distributed.fragments` cuts a source into map tasks' inputs;
- :mod:`grouparrow.distributed.tasks` holds the map and reduce tasks (scheduler-free);
- :mod:`grouparrow.distributed.ray_engine` runs them on Ray (``ga.build(..., engine="ray")``).

See docs/distributed.md for running on a Ray cluster with S3 or GCS paths.
"""
