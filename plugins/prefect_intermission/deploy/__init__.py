"""What the package deploys, and the command that deploys it.

- `catalog`: THE list of deployments (name, entry point in this package, description,
  schedules, work queue); plain data, read by `intermission deploy` and checked against
  the repository's prefect.yaml by a test.
- `register`: registers them with the Prefect API for a work pool (`intermission deploy`).
"""
