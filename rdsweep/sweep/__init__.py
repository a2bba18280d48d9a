"""The sweep: a spec's cells as Ray Tune trials (launch.py, the only module that imports Ray), the experiment's
ledger on disk and its record schema, the live view and heartbeats of a running launch, `rdsweep status`, and
the launch's signal policy."""
