"""Prefect entrypoints of this project, referenced by prefect.yaml."""
