"""The parts of :class:`~harness.platforms.local.deploy.LocalDeployment`, one job each.

``state`` holds the fields and the host/port plumbing every part reads; ``wiring`` the deploy-time
fault wiring (proxies, partitioner, PostgreSQL's small filesystem and FUSE layer); ``observe`` the
oracle reads and readiness waits; ``bringup`` the process table and ``up()``; ``control`` the
Deployment protocol's process actions; ``teardown`` removal and ``--keep-stack``; ``adhoc`` the
conformance checks' extra instances. ``deploy.LocalDeployment`` composes them; import it from there.
"""
