"""The `intermission` command (`commands`): pause and resume, status and report, best.

The read-only side (`status`, `report`, `best`, which writes only its output file)
never imports the flows.
"""
