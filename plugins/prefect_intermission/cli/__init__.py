"""The `intermission` command (`commands`): pause and resume, status and report.

The read-only side (`status`, `report`) never imports the flows.
"""
