"""Start a Dask cluster on SLURM (dask-jobqueue), write its scheduler address, keep it up until interrupted.

    python deployments/dask/slurm/start_cluster.py --jobs 4 --address-file scheduler.txt &
    libs-pipeline synthesize ... --dask-address "$(cat scheduler.txt)"

Run it on a login node (or inside a small SLURM job) whose address the workers can reach.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import yaml

SPEC = Path(__file__).with_name("jobqueue.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="SLURM jobs to start (each runs `cores` workers)")
    ap.add_argument("--adapt-max-jobs", type=int, default=None, help="scale between 1 and this many jobs instead")
    ap.add_argument("--spec", type=Path, default=SPEC, help="dask-jobqueue config (default: jobqueue.yaml here)")
    ap.add_argument("--address-file", type=Path, default=None, help="write the scheduler address here")
    ap.add_argument("--scheduler-port", type=int, default=8786)
    args = ap.parse_args()

    import dask.config
    from dask_jobqueue import SLURMCluster

    dask.config.update(dask.config.config, yaml.safe_load(args.spec.read_text()), priority="new")
    cluster = SLURMCluster(scheduler_options={"port": args.scheduler_port, "dashboard_address": ":8787"})
    if args.adapt_max_jobs:
        cluster.adapt(minimum_jobs=1, maximum_jobs=args.adapt_max_jobs)
    else:
        cluster.scale(jobs=args.jobs)
    print(cluster.job_script())
    print(f"scheduler: {cluster.scheduler_address}  dashboard: {cluster.dashboard_link}", flush=True)
    if args.address_file:
        args.address_file.write_text(cluster.scheduler_address + "\n")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    cluster.close()


if __name__ == "__main__":
    main()
