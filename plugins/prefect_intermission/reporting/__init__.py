"""What people see: progress, artifacts, the terminal, events, notifications, resources,
pause summaries and links to the Prefect UI.
"""
